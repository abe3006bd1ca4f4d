"""The generated registrar.v1 messages and enums, e.g. `pb.Owner`,
`pb.KIND_THREAD`, `pb.VERDICT_VALID` (registrar/v1/registrar.proto; the
Admin service's, e.g. `pb.ListLeasesRequest`, from admin.proto), and the
google.rpc detail messages the server sends with errors."""

# pylint: disable=wildcard-import,unused-wildcard-import
from registrar_client._gen.google.rpc import error_details_pb2 as rpc_details
from registrar_client._gen.google.rpc import status_pb2 as rpc_status
from registrar_client._gen.registrar.v1 import admin_pb2_grpc as admin_stubs
from registrar_client._gen.registrar.v1 import registrar_pb2_grpc as grpc_stubs
from registrar_client._gen.registrar.v1.admin_pb2 import *  # noqa
from registrar_client._gen.registrar.v1.registrar_pb2 import *  # noqa
