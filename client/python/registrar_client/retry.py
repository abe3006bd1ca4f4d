"""The retry policy, the same as the C++ client's (client/client.h):

- UNAVAILABLE: only calls that are safe to repeat (Validate, Describe,
  ListOwned, KeepAlive, Cleanup; and Admin's ListLeases, which the C++
  client does not have) are retried. Issue, OpenContext,
  GrantLease and RevokeLease are not: a lost reply could mean the server
  already acted. One addition: UNAVAILABLE that gRPC raised because no
  connection could be made ("failed to connect to all addresses") means the
  call never left this process, so every call is retried then (the next
  attempt goes to the next endpoint).
- RESOURCE_EXHAUSTED with a RetryInfo (rate limit, overload): every call is
  retried, after at least the RetryInfo delay: the server did nothing.
- UNAVAILABLE marked NOT_APPLIED (errors.RegistrarError.not_applied: a
  cluster replica that could not pass the call on): every call is retried.
- Anything else, RESOURCE_EXHAUSTED without RetryInfo included, is not.

Backoff before attempt n+1: initial_backoff * 2^(n-1), capped at
max_backoff, jittered into [d/2, d]; never past the call's deadline (the
error at hand is returned instead of sleeping into DEADLINE_EXCEEDED).
"""

from __future__ import annotations

import random
from typing import Optional

import grpc

from registrar_client import errors
from registrar_client.errors import RegistrarError
from registrar_client.options import ClientOptions

# Methods that may be repeated after UNAVAILABLE (same outcome, or an
# idempotent one: Cleanup reports a second release as already_ended).
REPEATABLE = frozenset(
    {"Validate", "Describe", "ListOwned", "KeepAlive", "Cleanup",
     "ListLeases"})

# The status gRPC core gives a call it could not send at all: the channel
# has no connection (the pick failed before a stream was created).
_NOT_SENT_PREFIX = "failed to connect to all addresses"


def never_sent(error: RegistrarError) -> bool:
    return (error.code == grpc.StatusCode.UNAVAILABLE and
            error.message.startswith(_NOT_SENT_PREFIX))


def backoff(options: ClientOptions, attempt: int) -> float:
    """Seconds to wait after failed attempt `attempt` (>= 1), jittered."""
    nominal = options.initial_backoff
    for _ in range(1, attempt):
        if nominal >= options.max_backoff:
            break
        nominal *= 2
    nominal = min(max(nominal, 0.0), options.max_backoff)
    return random.uniform(nominal / 2, nominal) if nominal > 0 else 0.0


def retry_delay(options: ClientOptions, method: str, attempt: int,
                error: RegistrarError, remaining: float) -> Optional[float]:
    """Seconds to wait before retrying `method` after `error` on attempt
    `attempt`, or None when the call must fail with `error` now.
    `remaining`: seconds left until the call's deadline."""
    if attempt >= max(1, options.max_attempts):
        return None
    hint = error.retry_delay if error.throttled else None
    retryable = (error.throttled or error.not_applied or never_sent(error) or
                 (error.code == grpc.StatusCode.UNAVAILABLE and
                  method in REPEATABLE))
    if not retryable:
        return None
    delay = backoff(options, attempt)
    if hint is not None:
        delay = max(delay, hint)
    if delay >= remaining:
        return None
    return delay


class WatchResume:
    """When a broken Watch reconnects: only after UNAVAILABLE or a throttle
    (and only when `resume`), after a backoff that grows with the breaks in
    a row (`ok()` resets it) and is at least the RetryInfo delay."""

    def __init__(self, options: ClientOptions, resume: bool) -> None:
        self._options = options
        self._resume = resume
        self._failures = 0

    def ok(self) -> None:
        self._failures = 0

    def failed(self, error: RegistrarError) -> float:
        """The delay before reconnecting, or raises `error`."""
        if not self._resume or not (
                error.code == grpc.StatusCode.UNAVAILABLE or error.throttled):
            raise error from None  # (not chained to the grpc error)
        self._failures += 1
        delay = backoff(self._options, self._failures)
        if error.retry_delay is not None:
            delay = max(delay, error.retry_delay)
        if self._options.on_retry is not None:
            self._options.on_retry("Watch", self._failures, error, delay)
        return delay


class CallBudget:
    """One call's deadline and attempts, shared by the blocking and asyncio
    clients: `remaining()` before each attempt, `failed(error)` after a
    failed one (the delay before the next, or raises `error`)."""

    def __init__(self, options: ClientOptions, method: str,
                 timeout: Optional[float], clock) -> None:
        self._options = options
        self._method = method
        self._clock = clock
        self._deadline = clock() + (options.deadline
                                    if timeout is None else timeout)
        self._attempt = 0

    def remaining(self) -> float:
        """Seconds left for the next attempt; DeadlineExceededError when
        none are."""
        self._attempt += 1
        left = self._deadline - self._clock()
        if left <= 0:
            raise errors.DeadlineExceededError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "deadline passed before the call could be retried",
                method=self._method)
        return left

    def failed(self, error: RegistrarError) -> float:
        delay = retry_delay(self._options, self._method, self._attempt, error,
                            self._deadline - self._clock())
        if delay is None:
            raise error from None  # (not chained to the grpc error)
        if self._options.on_retry is not None:
            self._options.on_retry(self._method, self._attempt, error, delay)
        return delay
