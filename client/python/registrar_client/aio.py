"""The asyncio client (grpc.aio): what an asyncio gateway uses.

    async with AsyncClient("127.0.0.1:50051") as client:
        thread, = await client.issue("thread", ("acme", "alice"))
        [result] = await client.validate([thread], owner=("acme", "alice"))

Create it inside the running event loop. Every call has a deadline
(ClientOptions.deadline unless `timeout` is given) covering its retries, and
follows the retry policy in registrar_client.retry. Failures raise
registrar_client.errors.RegistrarError subclasses.
"""

from __future__ import annotations

import asyncio
from typing import (AsyncIterator, Iterable, List, Mapping, Optional,
                    Sequence, Tuple)

import grpc

from registrar_client import _api, errors, pb, retry
from registrar_client.options import ClientOptions, OptionsLike, to_options


class AsyncClient:
    """A Registrar client over grpc.aio; one per process, shared by every
    task."""

    def __init__(self, target: OptionsLike = "127.0.0.1:50051",
                 **options) -> None:
        """`target`: a ClientOptions, or one or more targets with
        ClientOptions fields as keywords (ValueError for unusable ones)."""
        self.options: ClientOptions = to_options(target, options)
        credentials = self.options.channel_credentials()
        args = self.options.channel_arguments()
        channels = [
            grpc.aio.secure_channel(t, credentials, options=args)
            if credentials is not None else grpc.aio.insecure_channel(
                t, options=args) for t in self.options.targets
        ]
        self._endpoints = _api.Endpoints(channels, pb.grpc_stubs.RegistrarStub)
        self._admin = _api.Endpoints(channels, pb.admin_stubs.AdminStub)
        self._metadata = self.options.metadata()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def endpoint_states(self) -> List[Tuple[str, grpc.ChannelConnectivity]]:
        """(target, channel state) per endpoint, e.g. for a health page."""
        return [(t, c.get_state(try_to_connect=False)) for t, c in zip(
            self.options.targets, self._endpoints.channels)]

    async def close(self) -> None:
        """Closes the channels; calls in flight end CANCELLED."""
        for channel in self._endpoints.channels:
            await channel.close()

    async def _call(self, method: str, request, timeout: Optional[float],
                    endpoints: Optional[_api.Endpoints] = None):
        budget = retry.CallBudget(self.options, method, timeout,
                                  asyncio.get_running_loop().time)
        while True:
            stub = (endpoints or self._endpoints).pick()
            try:
                return await getattr(stub, method)(
                    request, timeout=budget.remaining(),
                    metadata=self._metadata)
            except grpc.aio.AioRpcError as e:
                delay = budget.failed(errors.from_rpc_error(e, method))
            await asyncio.sleep(delay)

    async def issue(self, kind: _api.KindLike, owner: _api.OwnerLike,
                    count: int = 1, *, parent_id: str = "",
                    connection_id: str = "", lease_id: str = "",
                    labels: Optional[Mapping[str, str]] = None,
                    timeout: Optional[float] = None) -> List[str]:
        """Mints `count` IDs of `kind` for `owner`; returns them (list of
        str, increasing). Retried only when throttled or never sent."""
        request = _api.issue_request(kind, owner, count, parent_id,
                                     connection_id, lease_id, labels)
        response = await self._call("Issue", request, timeout)
        return _api.issued_ids(request, response)

    async def open_context(self, owner: _api.OwnerLike, *,
                           thread_id: str = "", connection_id: str = "",
                           labels: Optional[Mapping[str, str]] = None,
                           timeout: Optional[float] = None
                           ) -> "pb.OpenContextResponse":
        """The gateway's per-message call: reuses `thread_id` if it is a
        live thread of `owner` (else mints one), then mints a run and a
        request. Retried only when throttled or never sent."""
        return await self._call(
            "OpenContext",
            _api.open_context_request(owner, thread_id, connection_id,
                                      labels), timeout)

    async def validate(self, items: Iterable[_api.ValidateItemLike], *,
                       owner: Optional[_api.OwnerLike] = None,
                       expected_kind: Optional[_api.KindLike] = None,
                       include_records: bool = False,
                       timeout: Optional[float] = None
                       ) -> Sequence["pb.ValidateResult"]:
        """One ValidateResult per item, same order. Retried."""
        response = await self._call(
            "Validate",
            _api.validate_request(items, owner, expected_kind,
                                  include_records), timeout)
        return response.results

    async def cleanup(self, owner: _api.OwnerLike, *,
                      ids: Optional[Sequence[str]] = None,
                      connection_id: Optional[str] = None,
                      all_owned: bool = False, reason: str = "",
                      timeout: Optional[float] = None
                      ) -> "pb.CleanupResponse":
        """Owner-scoped release of exactly one target: `ids`, a
        `connection_id` (with its runs and requests), or `all_owned`.
        Retried (idempotent: a retry after a lost reply reports
        already_ended)."""
        return await self._call(
            "Cleanup",
            _api.cleanup_request(owner, ids, connection_id, all_owned,
                                 reason), timeout)

    async def grant_lease(self, holder: str, ttl_seconds: int, *,
                          timeout: Optional[float] = None
                          ) -> "pb.GrantLeaseResponse":
        """A new lease. Retried only when throttled or never sent."""
        return await self._call(
            "GrantLease",
            pb.GrantLeaseRequest(holder=holder, ttl_seconds=ttl_seconds),
            timeout)

    async def keep_alive(self, lease_id: str, *,
                         timeout: Optional[float] = None
                         ) -> "pb.KeepAliveResponse":
        """Renews a lease for another TTL; NotFoundError once it expired or
        was revoked. Retried."""
        return await self._call("KeepAlive",
                                pb.KeepAliveRequest(lease_id=lease_id),
                                timeout)

    async def revoke_lease(self, lease_id: str, *,
                           timeout: Optional[float] = None
                           ) -> "pb.RevokeLeaseResponse":
        """Ends a lease and every connection bound to it. Retried only when
        throttled or never sent."""
        return await self._call("RevokeLease",
                                pb.RevokeLeaseRequest(lease_id=lease_id),
                                timeout)

    async def list_leases(self, holder: str = "", *, page_size: int = 0,
                          timeout: Optional[float] = None
                          ) -> AsyncIterator["pb.ListLeasesResponse"]:
        """Admin (registrar.v1.Admin, admin role): every page of the live
        leases of `holder` ("": every holder's), in lease ID order, each
        page one call. Retried."""
        token = ""
        while True:
            page = await self._call(
                "ListLeases", _api.list_leases_request(holder, page_size,
                                                       token),
                timeout, self._admin)
            yield page
            token = page.next_page_token
            if not token:
                return

    async def revoke_leases(self, holder: str, *,
                            timeout: Optional[float] = None
                            ) -> "pb.RevokeLeasesResponse":
        """Admin: revokes every lease of `holder` (a dead gateway's), each
        as revoke_lease would, calling again while the server says there
        are more; the replies added up (`revoked`, `released`). Retried
        only when throttled or never sent."""
        responses = []
        while True:
            response = await self._call(
                "RevokeLeases", pb.RevokeLeasesRequest(holder=holder),
                timeout, self._admin)
            responses.append(response)
            if not response.more:
                return _api.revoked_leases(responses)

    async def describe(self, id_: str, *,
                       timeout: Optional[float] = None) -> "pb.Record":
        """The full record; NotFoundError when none is held. Retried."""
        response = await self._call("Describe", pb.DescribeRequest(id=id_),
                                    timeout)
        return response.record

    async def list_owned_page(self, owner: _api.OwnerLike, *,
                              kind: Optional[_api.KindLike] = None,
                              include_ended: bool = False,
                              page_size: int = 0, page_token: str = "",
                              timeout: Optional[float] = None
                              ) -> "pb.ListOwnedResponse":
        """One page of `owner`'s records. Retried."""
        return await self._call(
            "ListOwned",
            _api.list_owned_request(owner, kind, include_ended, page_size,
                                    page_token), timeout)

    async def list_owned(self, owner: _api.OwnerLike, *,
                         kind: Optional[_api.KindLike] = None,
                         include_ended: bool = False, page_size: int = 0,
                         timeout: Optional[float] = None
                         ) -> AsyncIterator["pb.ListOwnedResponse"]:
        """Every page of `owner`'s records, in order (each page one call
        with its own deadline)."""
        token = ""
        while True:
            page = await self.list_owned_page(owner, kind=kind,
                                              include_ended=include_ended,
                                              page_size=page_size,
                                              page_token=token,
                                              timeout=timeout)
            yield page
            token = page.next_page_token
            if not token:
                return

    async def owned_records(self, owner: _api.OwnerLike,
                            **kwargs) -> List["pb.Record"]:
        """All of `owner`'s records (list_owned's pages joined)."""
        return [r async for page in self.list_owned(owner, **kwargs)
                for r in page.records]

    async def watch(self, start_revision: int = 0, tenant: str = "", *,
                    resume: bool = True
                    ) -> AsyncIterator["pb.WatchEvent"]:
        """Events in revision order from `start_revision` (0: from now).

        When the stream breaks with UNAVAILABLE (server restart, network)
        or a throttle, it reconnects after a backoff (RetryInfo honoured)
        from the last received revision + 1, so no event is lost or
        repeated; `resume=False` raises instead. (Started from 0, a break
        before the first event resumes from "now" again.) Other errors
        raise, e.g. OutOfRangeError when the start is older than the
        server's history.
        Stop by leaving the `async for` (or closing the generator)."""
        next_revision = start_revision
        resumer = retry.WatchResume(self.options, resume)
        while True:
            stub = self._endpoints.pick()
            call = stub.Watch(
                pb.WatchRequest(start_revision=next_revision, tenant=tenant),
                metadata=self._metadata)
            try:
                async for event in call:
                    resumer.ok()
                    next_revision = event.revision + 1
                    yield event
                return  # the server ended the stream with OK
            except grpc.aio.AioRpcError as e:
                delay = resumer.failed(errors.from_rpc_error(e, "Watch"))
            finally:
                call.cancel()
            await asyncio.sleep(delay)
