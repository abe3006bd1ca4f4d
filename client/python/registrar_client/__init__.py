"""registrar_client: a thin Python client for the registrar.v1.Registrar
gRPC service, generated at build time from proto/registrar/v1/registrar.proto.

- AsyncClient (grpc.aio) and Client (blocking): issue, open_context,
  validate, cleanup, grant_lease / keep_alive / revoke_lease, describe,
  list_owned (pages), watch (resumes after a disconnect); for operators
  (registrar.v1.Admin, admin role) list_leases and revoke_leases;
- errors: RegistrarError subclasses carrying the google.rpc details;
- LeaseKeeper: a lease kept alive by an asyncio task;
- pb: the generated messages and enums (pb.Owner, pb.KIND_THREAD, ...).
"""

from registrar_client import pb
from registrar_client._api import owner
from registrar_client.aio import AsyncClient
from registrar_client.errors import (
    AbortedError, AlreadyExistsError, CallCancelledError, DataLossError,
    DeadlineExceededError, FailedPreconditionError, InternalError,
    InvalidArgumentError, NotFoundError, OutOfRangeError,
    PermissionDeniedError, RegistrarError, ResourceExhaustedError,
    UnauthenticatedError, UnavailableError, UnimplementedError, UnknownError)
from registrar_client.lease import LeaseKeeper
from registrar_client.options import ClientOptions
from registrar_client.sync import Client

__all__ = [
    "AbortedError", "AlreadyExistsError", "AsyncClient",
    "CallCancelledError", "Client", "ClientOptions", "DataLossError",
    "DeadlineExceededError", "FailedPreconditionError", "InternalError",
    "InvalidArgumentError", "LeaseKeeper", "NotFoundError",
    "OutOfRangeError", "PermissionDeniedError", "RegistrarError",
    "ResourceExhaustedError", "UnauthenticatedError", "UnavailableError",
    "UnimplementedError", "UnknownError", "owner", "pb",
]
__version__ = "0.1.0"
