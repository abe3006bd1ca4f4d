"""What the blocking and asyncio clients share: building requests from
Python arguments, reading replies, and picking endpoints."""

from __future__ import annotations

import itertools
from typing import (Iterable, List, Mapping, Optional, Sequence, Tuple,
                    Union)

import grpc

from registrar_client import pb

OwnerLike = Union["pb.Owner", Tuple[str, str]]
KindLike = Union[int, str]
ValidateItemLike = Union["pb.ValidateItem", str]

_KINDS = {
    "thread": pb.KIND_THREAD,
    "run": pb.KIND_RUN,
    "request": pb.KIND_REQUEST,
    "req": pb.KIND_REQUEST,
    "connection": pb.KIND_CONNECTION,
    "conn": pb.KIND_CONNECTION,
}


def owner(tenant: str, user_id: str) -> "pb.Owner":
    """An Owner message."""
    return pb.Owner(tenant=tenant, user_id=user_id)


def to_owner(value: Optional[OwnerLike]) -> Optional["pb.Owner"]:
    if value is None or isinstance(value, pb.Owner):
        return value
    tenant, user_id = value
    return pb.Owner(tenant=tenant, user_id=user_id)


def to_kind(kind: Optional[KindLike]) -> int:
    """A pb.Kind value from the enum value or "thread", "run", "request",
    "connection"."""
    if kind is None:
        return pb.KIND_UNSPECIFIED
    if isinstance(kind, str):
        try:
            return _KINDS[kind.lower()]
        except KeyError:
            raise ValueError(f"unknown kind {kind!r}: one of "
                             f"{', '.join(sorted(_KINDS))}") from None
    return int(kind)


def issue_request(kind: KindLike, owner_: OwnerLike, count: int,
                  parent_id: str, connection_id: str, lease_id: str,
                  labels: Optional[Mapping[str, str]]) -> "pb.IssueRequest":
    return pb.IssueRequest(kind=to_kind(kind), owner=to_owner(owner_),
                           count=count, parent_id=parent_id,
                           connection_id=connection_id, lease_id=lease_id,
                           labels=dict(labels or {}))


def issued_ids(request: "pb.IssueRequest",
               response: "pb.IssueResponse") -> List[str]:
    expected = request.count or 1
    if len(response.ids) != expected:
        raise RuntimeError(f"Issue asked for {expected} IDs, server "
                           f"returned {len(response.ids)}")
    return list(response.ids)


def open_context_request(owner_: OwnerLike, thread_id: str,
                         connection_id: str,
                         labels: Optional[Mapping[str, str]]
                         ) -> "pb.OpenContextRequest":
    return pb.OpenContextRequest(owner=to_owner(owner_), thread_id=thread_id,
                                 connection_id=connection_id,
                                 labels=dict(labels or {}))


def validate_request(items: Iterable[ValidateItemLike],
                     owner_: Optional[OwnerLike],
                     expected_kind: Optional[KindLike],
                     include_records: bool) -> "pb.ValidateRequest":
    """Items are ValidateItem messages or ID strings (which get
    `expected_kind`, and the request's owner)."""
    built = [
        item if isinstance(item, pb.ValidateItem) else pb.ValidateItem(
            id=item, expected_kind=to_kind(expected_kind))
        for item in items
    ]
    return pb.ValidateRequest(owner=to_owner(owner_), items=built,
                              include_records=include_records)


def cleanup_request(owner_: OwnerLike, ids: Optional[Sequence[str]],
                    connection_id: Optional[str], all_owned: bool,
                    reason: str) -> "pb.CleanupRequest":
    targets = sum((ids is not None, connection_id is not None, all_owned))
    if targets != 1:
        raise ValueError("cleanup: give exactly one of ids, connection_id, "
                         "all_owned=True")
    request = pb.CleanupRequest(owner=to_owner(owner_), reason=reason)
    if ids is not None:
        request.ids.ids.extend(ids)
    elif connection_id is not None:
        request.connection_id = connection_id
    else:
        request.all_owned = True
    return request


def list_owned_request(owner_: OwnerLike, kind: Optional[KindLike],
                       include_ended: bool, page_size: int,
                       page_token: str) -> "pb.ListOwnedRequest":
    return pb.ListOwnedRequest(owner=to_owner(owner_), kind=to_kind(kind),
                               include_ended=include_ended,
                               page_size=page_size, page_token=page_token)


def list_leases_request(holder: str, page_size: int,
                        page_token: str) -> "pb.ListLeasesRequest":
    return pb.ListLeasesRequest(holder=holder, page_size=page_size,
                                page_token=page_token)


def revoked_leases(responses: Iterable["pb.RevokeLeasesResponse"]
                   ) -> "pb.RevokeLeasesResponse":
    """The RevokeLeases replies of one holder, added up."""
    total = pb.RevokeLeasesResponse()
    for response in responses:
        total.revoked.extend(response.revoked)
        total.released += response.released
    return total


class Endpoints:
    """Round-robin over one channel per target. `pick()` skips channels in
    TRANSIENT_FAILURE while another is not failing."""

    def __init__(self, channels: Sequence[object], stub_type) -> None:
        self.channels = list(channels)
        self.stubs = [stub_type(c) for c in self.channels]
        self._next = itertools.count()

    def pick(self):
        n = len(self.stubs)
        start = next(self._next) % n
        for i in range(n if n > 1 else 0):
            index = (start + i) % n
            if (_state(self.channels[index]) !=
                    grpc.ChannelConnectivity.TRANSIENT_FAILURE):
                return self.stubs[index]
        return self.stubs[start]


def _state(channel) -> Optional[grpc.ChannelConnectivity]:
    # grpc.aio channels answer directly; blocking channels have no public
    # getter, so they are treated as healthy (retries still move on).
    get_state = getattr(channel, "get_state", None)
    if get_state is None:
        return None
    return get_state(try_to_connect=False)
