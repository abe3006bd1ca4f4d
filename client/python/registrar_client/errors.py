"""Typed exceptions for failed Registrar calls, with the google.rpc details
the server sends in the `grpc-status-details-bin` trailer.

Every failed call raises a RegistrarError subclass chosen by the gRPC code
(InvalidArgumentError, NotFoundError, ResourceExhaustedError, ...). Its
`details` is the parsed google.rpc.Status (or None), and `field_violations`,
`quota_violations` and `retry_delay` read the BadRequest, QuotaFailure and
RetryInfo inside it.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple, Type

import grpc

from registrar_client.pb import rpc_details, rpc_status

DETAILS_KEY = "grpc-status-details-bin"


class RegistrarError(Exception):
    """A Registrar call that failed with a non-OK gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str,
                 details: Optional[rpc_status.Status] = None,
                 method: str = "") -> None:
        super().__init__(f"{code.name}: {message}" if message else code.name)
        self.code = code
        self.message = message
        self.details = details
        self.method = method

    def _unpacked(self, message_type):
        found = []
        if self.details is None:
            return found
        for any_detail in self.details.details:
            if any_detail.Is(message_type.DESCRIPTOR):
                value = message_type()
                any_detail.Unpack(value)
                found.append(value)
        return found

    def _first(self, message_type):
        found = self._unpacked(message_type)
        return found[0] if found else None

    @property
    def bad_request(self) -> Optional[rpc_details.BadRequest]:
        """The first google.rpc.BadRequest detail (INVALID_ARGUMENT)."""
        return self._first(rpc_details.BadRequest)

    @property
    def field_violations(self) -> List[Tuple[str, str]]:
        """(field, description) of every BadRequest field violation."""
        return [(v.field, v.description)
                for b in self._unpacked(rpc_details.BadRequest)
                for v in b.field_violations]

    @property
    def quota_failure(self) -> Optional[rpc_details.QuotaFailure]:
        """The first google.rpc.QuotaFailure detail (RESOURCE_EXHAUSTED)."""
        return self._first(rpc_details.QuotaFailure)

    @property
    def quota_violations(self) -> List[Tuple[str, str]]:
        """(subject, description) of every QuotaFailure violation."""
        return [(v.subject, v.description)
                for q in self._unpacked(rpc_details.QuotaFailure)
                for v in q.violations]

    @property
    def retry_delay(self) -> Optional[float]:
        """Seconds from the first google.rpc.RetryInfo, if any (>= 0)."""
        info = self._first(rpc_details.RetryInfo)
        if info is None:
            return None
        delay = info.retry_delay
        return max(0.0, delay.seconds + delay.nanos / 1e9)

    @property
    def not_applied(self) -> bool:
        """UNAVAILABLE with google.rpc.ErrorInfo {registrar.dev,
        NOT_APPLIED}: a cluster replica did nothing with the call (it could
        not pass it on to the writer), so any call may be repeated, on this
        replica or another. A bare UNAVAILABLE is not: the server may have
        acted before the reply was lost."""
        if self.code != grpc.StatusCode.UNAVAILABLE:
            return False
        return any(i.domain == "registrar.dev" and i.reason == "NOT_APPLIED"
                   for i in self._unpacked(rpc_details.ErrorInfo))

    @property
    def throttled(self) -> bool:
        """RESOURCE_EXHAUSTED with RetryInfo: the server refused the call
        before doing anything (rate limit, overload), so any call may be
        repeated after retry_delay. Without RetryInfo (an owner's quota, a
        batch limit) the same call would fail again."""
        return (self.code == grpc.StatusCode.RESOURCE_EXHAUSTED and
                self.retry_delay is not None)


class CallCancelledError(RegistrarError):
    """CANCELLED."""


class UnknownError(RegistrarError):
    """UNKNOWN."""


class InvalidArgumentError(RegistrarError):
    """INVALID_ARGUMENT: a malformed request; field_violations names the
    field and the limit."""


class DeadlineExceededError(RegistrarError):
    """DEADLINE_EXCEEDED: the call's deadline (retries included) passed."""


class NotFoundError(RegistrarError):
    """NOT_FOUND: e.g. Describe of an unknown ID, KeepAlive of an ended
    lease."""


class AlreadyExistsError(RegistrarError):
    """ALREADY_EXISTS."""


class PermissionDeniedError(RegistrarError):
    """PERMISSION_DENIED: the caller's role or tenants do not allow it."""


class ResourceExhaustedError(RegistrarError):
    """RESOURCE_EXHAUSTED: a batch limit or quota (quota_violations), or a
    throttle (throttled, retry_delay)."""


class FailedPreconditionError(RegistrarError):
    """FAILED_PRECONDITION: e.g. a released or foreign parent or lease."""


class AbortedError(RegistrarError):
    """ABORTED."""


class OutOfRangeError(RegistrarError):
    """OUT_OF_RANGE: e.g. Watch from a revision older than the history."""


class UnimplementedError(RegistrarError):
    """UNIMPLEMENTED."""


class InternalError(RegistrarError):
    """INTERNAL."""


class UnavailableError(RegistrarError):
    """UNAVAILABLE: the server is unreachable or shutting down."""


class DataLossError(RegistrarError):
    """DATA_LOSS."""


class UnauthenticatedError(RegistrarError):
    """UNAUTHENTICATED: no or an unknown token or client certificate."""


_BY_CODE: Dict[grpc.StatusCode, Type[RegistrarError]] = {
    grpc.StatusCode.CANCELLED: CallCancelledError,
    grpc.StatusCode.UNKNOWN: UnknownError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.ABORTED: AbortedError,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRangeError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DATA_LOSS: DataLossError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
}


def make_error(code: grpc.StatusCode, message: str,
               trailing_metadata: Optional[Sequence[Tuple[str, object]]],
               method: str = "") -> RegistrarError:
    """The typed error for a status: the class for `code`, and the
    google.rpc.Status from the trailer when it is there and parses."""
    details = None
    for key, value in trailing_metadata or ():
        if key == DETAILS_KEY and isinstance(value, bytes):
            try:
                details = rpc_status.Status.FromString(value)
            except Exception:  # pylint: disable=broad-except
                details = None  # a garbled trailer: keep code and message
            break
    return _BY_CODE.get(code, RegistrarError)(code, message or "", details,
                                              method)


def from_rpc_error(error: grpc.RpcError, method: str = "") -> RegistrarError:
    """Converts a grpc (sync or aio) RpcError into a RegistrarError."""
    return make_error(error.code(), error.details(),
                      error.trailing_metadata(), method)
