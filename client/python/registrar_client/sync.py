"""The blocking client: the same calls as AsyncClient (see aio.py for each
call's contract), for threads and scripts.

    with Client("127.0.0.1:50051") as client:
        thread, = client.issue("thread", ("acme", "alice"))

Thread-safe: one instance is meant to be shared by every thread.
"""

from __future__ import annotations

import time
from typing import Iterable, Iterator, List, Mapping, Optional, Sequence

import grpc

from registrar_client import _api, errors, pb, retry
from registrar_client.options import ClientOptions, OptionsLike, to_options


class Client:
    """A blocking Registrar client."""

    def __init__(self, target: OptionsLike = "127.0.0.1:50051",
                 **options) -> None:
        self.options: ClientOptions = to_options(target, options)
        credentials = self.options.channel_credentials()
        args = self.options.channel_arguments()
        channels = [
            grpc.secure_channel(t, credentials, options=args)
            if credentials is not None else grpc.insecure_channel(
                t, options=args) for t in self.options.targets
        ]
        self._endpoints = _api.Endpoints(channels, pb.grpc_stubs.RegistrarStub)
        self._admin = _api.Endpoints(channels, pb.admin_stubs.AdminStub)
        self._metadata = self.options.metadata()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for channel in self._endpoints.channels:
            channel.close()

    def _call(self, method: str, request, timeout: Optional[float],
              endpoints: Optional[_api.Endpoints] = None):
        budget = retry.CallBudget(self.options, method, timeout,
                                  time.monotonic)
        while True:
            stub = (endpoints or self._endpoints).pick()
            try:
                return getattr(stub, method)(
                    request, timeout=budget.remaining(),
                    metadata=self._metadata)
            except grpc.RpcError as e:
                delay = budget.failed(errors.from_rpc_error(e, method))
            time.sleep(delay)

    def issue(self, kind: _api.KindLike, owner: _api.OwnerLike,
              count: int = 1, *, parent_id: str = "", connection_id: str = "",
              lease_id: str = "", labels: Optional[Mapping[str, str]] = None,
              timeout: Optional[float] = None) -> List[str]:
        request = _api.issue_request(kind, owner, count, parent_id,
                                     connection_id, lease_id, labels)
        return _api.issued_ids(request, self._call("Issue", request, timeout))

    def open_context(self, owner: _api.OwnerLike, *, thread_id: str = "",
                     connection_id: str = "",
                     labels: Optional[Mapping[str, str]] = None,
                     timeout: Optional[float] = None
                     ) -> "pb.OpenContextResponse":
        return self._call(
            "OpenContext",
            _api.open_context_request(owner, thread_id, connection_id,
                                      labels), timeout)

    def validate(self, items: Iterable[_api.ValidateItemLike], *,
                 owner: Optional[_api.OwnerLike] = None,
                 expected_kind: Optional[_api.KindLike] = None,
                 include_records: bool = False,
                 timeout: Optional[float] = None
                 ) -> Sequence["pb.ValidateResult"]:
        return self._call(
            "Validate",
            _api.validate_request(items, owner, expected_kind,
                                  include_records), timeout).results

    def cleanup(self, owner: _api.OwnerLike, *,
                ids: Optional[Sequence[str]] = None,
                connection_id: Optional[str] = None, all_owned: bool = False,
                reason: str = "", timeout: Optional[float] = None
                ) -> "pb.CleanupResponse":
        return self._call(
            "Cleanup",
            _api.cleanup_request(owner, ids, connection_id, all_owned,
                                 reason), timeout)

    def grant_lease(self, holder: str, ttl_seconds: int, *,
                    timeout: Optional[float] = None
                    ) -> "pb.GrantLeaseResponse":
        return self._call(
            "GrantLease",
            pb.GrantLeaseRequest(holder=holder, ttl_seconds=ttl_seconds),
            timeout)

    def keep_alive(self, lease_id: str, *, timeout: Optional[float] = None
                   ) -> "pb.KeepAliveResponse":
        return self._call("KeepAlive", pb.KeepAliveRequest(lease_id=lease_id),
                          timeout)

    def revoke_lease(self, lease_id: str, *, timeout: Optional[float] = None
                     ) -> "pb.RevokeLeaseResponse":
        return self._call("RevokeLease",
                          pb.RevokeLeaseRequest(lease_id=lease_id), timeout)

    def list_leases(self, holder: str = "", *, page_size: int = 0,
                    timeout: Optional[float] = None
                    ) -> Iterator["pb.ListLeasesResponse"]:
        """Admin: every page of `holder`'s live leases ("": everyone's)."""
        token = ""
        while True:
            page = self._call(
                "ListLeases", _api.list_leases_request(holder, page_size,
                                                       token),
                timeout, self._admin)
            yield page
            token = page.next_page_token
            if not token:
                return

    def revoke_leases(self, holder: str, *, timeout: Optional[float] = None
                      ) -> "pb.RevokeLeasesResponse":
        """Admin: revokes every lease of `holder` (as many calls as it
        takes); the replies added up."""
        def calls():
            while True:
                response = self._call("RevokeLeases",
                                      pb.RevokeLeasesRequest(holder=holder),
                                      timeout, self._admin)
                yield response
                if not response.more:
                    return
        return _api.revoked_leases(calls())

    def describe(self, id_: str, *,
                 timeout: Optional[float] = None) -> "pb.Record":
        return self._call("Describe", pb.DescribeRequest(id=id_),
                          timeout).record

    def list_owned(self, owner: _api.OwnerLike, *,
                   kind: Optional[_api.KindLike] = None,
                   include_ended: bool = False, page_size: int = 0,
                   timeout: Optional[float] = None
                   ) -> Iterator["pb.ListOwnedResponse"]:
        """Every page of `owner`'s records (one call per page)."""
        token = ""
        while True:
            page = self._call(
                "ListOwned",
                _api.list_owned_request(owner, kind, include_ended, page_size,
                                        token), timeout)
            yield page
            token = page.next_page_token
            if not token:
                return

    def watch(self, start_revision: int = 0, tenant: str = "", *,
              resume: bool = True) -> Iterator["pb.WatchEvent"]:
        """As AsyncClient.watch; close the generator to stop."""
        next_revision = start_revision
        resumer = retry.WatchResume(self.options, resume)
        while True:
            call = self._endpoints.pick().Watch(
                pb.WatchRequest(start_revision=next_revision, tenant=tenant),
                metadata=self._metadata)
            try:
                for event in call:
                    resumer.ok()
                    next_revision = event.revision + 1
                    yield event
                return
            except grpc.RpcError as e:
                delay = resumer.failed(errors.from_rpc_error(e, "Watch"))
            finally:
                call.cancel()
            time.sleep(delay)
