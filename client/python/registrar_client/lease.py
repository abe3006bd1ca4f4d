"""LeaseKeeper: holds one lease for a gateway process from an asyncio task.

    async with LeaseKeeper(client, "gateway-0", ttl_seconds=30,
                           on_loss=close_all_websockets) as keeper:
        conn_id = await keeper.open_connection(("acme", "alice"))
        ...
    # leaving the block revokes the lease: its connections end at once

The task renews the lease every ttl/3 (sooner after a failed renewal). When
a KeepAlive answers NOT_FOUND the lease is gone (expired while the server
was unreachable, or revoked): `lost` is set, `error` holds the NotFoundError
and `on_loss(error)` is called once (a plain function or a coroutine
function). A crashed gateway cannot revoke: then the server ends the lease,
and every connection bound to it, one TTL after the last renewal.
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any, Callable, Mapping, Optional

import grpc

from registrar_client import _api, errors, pb
from registrar_client.aio import AsyncClient

LossCallback = Callable[[errors.RegistrarError], Any]


def renew_interval(ttl_seconds: int) -> float:
    """Seconds between renewals for a TTL: a third of it, at least 0.1."""
    return max(ttl_seconds / 3.0, 0.1)


class LeaseKeeper:
    """A granted lease and the task that keeps it alive."""

    def __init__(self, client: AsyncClient, holder: str, ttl_seconds: int,
                 on_loss: Optional[LossCallback] = None) -> None:
        self._client = client
        self.holder = holder
        self._asked_ttl = ttl_seconds
        self._on_loss = on_loss
        self.lease_id = ""
        # The TTL last granted or renewed (the server may adjust it).
        self.ttl_seconds = ttl_seconds
        # Set once the lease is known gone (NOT_FOUND, or close()).
        self.lost = asyncio.Event()
        self.error: Optional[errors.RegistrarError] = None
        # loop.time() of the last successful grant/renewal's send plus its
        # TTL: the server cannot have expired the lease before then.
        self.renewed_until = 0.0
        self._task: Optional[asyncio.Task] = None

    @property
    def healthy(self) -> bool:
        return bool(self.lease_id) and not self.lost.is_set()

    async def start(self, timeout: Optional[float] = None) -> "LeaseKeeper":
        """Grants the lease and starts renewing it. Raises the GrantLease
        error (then no task is started)."""
        if self._task is not None:
            raise RuntimeError("LeaseKeeper already started")
        loop = asyncio.get_running_loop()
        sent = loop.time()
        granted = await self._client.grant_lease(self.holder, self._asked_ttl,
                                                 timeout=timeout)
        self.lease_id = granted.lease_id
        self.ttl_seconds = granted.ttl_seconds or self._asked_ttl
        self.renewed_until = sent + self.ttl_seconds
        self._task = loop.create_task(self._run(),
                                      name=f"lease-keeper {self.lease_id}")
        return self

    async def __aenter__(self) -> "LeaseKeeper":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        wait = renew_interval(self.ttl_seconds)
        while True:
            await asyncio.sleep(wait)
            interval = renew_interval(self.ttl_seconds)
            sent = loop.time()
            try:
                # A renewal slower than the interval is no better than the
                # next one.
                renewed = await self._client.keep_alive(
                    self.lease_id,
                    timeout=min(self._client.options.deadline, interval))
            except errors.NotFoundError as e:
                await self._lose(e)
                return
            except errors.RegistrarError:
                # Transient (UNAVAILABLE after retries, deadline): the lease
                # may still be alive; try again sooner.
                wait = max(interval / 3, 0.1)
                continue
            if renewed.ttl_seconds:
                self.ttl_seconds = renewed.ttl_seconds
            self.renewed_until = sent + self.ttl_seconds
            wait = renew_interval(self.ttl_seconds)

    async def _lose(self, error: errors.RegistrarError) -> None:
        self.error = error
        self.lost.set()
        if self._on_loss is not None:
            result = self._on_loss(error)
            if inspect.isawaitable(result):
                await result

    async def stop(self) -> None:
        """Stops renewing without revoking (the TTL ends the lease)."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def close(self, timeout: Optional[float] = None
                    ) -> Optional["pb.RevokeLeaseResponse"]:
        """Stops renewing and revokes the lease, ending every connection
        bound to it. Returns the RevokeLease reply, or None when the lease
        was already lost or never granted; a failed revoke raises (the TTL
        then ends the lease). Afterwards `lost` is set."""
        await self.stop()
        if not self.lease_id or self.lost.is_set():
            self.lost.set()
            return None
        self.lost.set()
        return await self._client.revoke_lease(self.lease_id, timeout=timeout)

    async def open_connection(self, owner: _api.OwnerLike,
                              labels: Optional[Mapping[str, str]] = None,
                              timeout: Optional[float] = None) -> str:
        """Issues one KIND_CONNECTION ID for `owner`, bound to this lease.
        FailedPreconditionError without calling the server once the lease
        is lost."""
        if not self.healthy:
            raise errors.FailedPreconditionError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"lease {self.lease_id or '(not granted)'} is not held",
                method="Issue")
        [conn_id] = await self._client.issue(pb.KIND_CONNECTION, owner,
                                             lease_id=self.lease_id,
                                             labels=labels, timeout=timeout)
        return conn_id
