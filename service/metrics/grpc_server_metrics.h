#ifndef REGISTRAR_SERVICE_METRICS_GRPC_SERVER_METRICS_H_
#define REGISTRAR_SERVICE_METRICS_GRPC_SERVER_METRICS_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "grpcpp/support/server_interceptor.h"
#include "grpcpp/support/status.h"

namespace prometheus {
class Registry;
}  // namespace prometheus

namespace registrar {

// Server-side gRPC metrics exactly as go-grpc-prometheus (server_metrics.go)
// defines them, recorded by a server interceptor, so dashboards and alerts
// written for Go services work unchanged:
//   grpc_server_started_total{grpc_type,grpc_service,grpc_method}
//   grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}
//   grpc_server_msg_received_total{grpc_type,grpc_service,grpc_method}
//   grpc_server_msg_sent_total{grpc_type,grpc_service,grpc_method}
//   grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}
// grpc_type is GrpcTypeName(), "/pkg.Service/Method" is split into
// grpc_service="pkg.Service" and grpc_method="Method" (both "unknown" if the
// name has no second '/'), grpc_code is GrpcCodeName(): Go's code names
// ("OK", "InvalidArgument", "Canceled", ...).
//
// An RPC is "started" when gRPC creates its interceptors (before the handler
// runs) and "handled" when the server sends its status; handling_seconds is
// the time between the two, in Prometheus' default buckets (what
// go-grpc-prometheus uses). A message is counted when it has been received
// (a request read) or sent (a reply written), one each for a successful
// unary call, every message of a stream.
//
// The code is the one the server finished the call with, except for a call
// the client had already cancelled or let its deadline pass: that status
// never reaches the client, and the call is counted as "Canceled" (or
// "DeadlineExceeded" once its deadline has passed), the way a Go handler
// returns its context's error. So a client closing a health Watch counts as
// Canceled, not as the UNKNOWN gRPC's own Watch reactor finishes with. A
// call that ends without any status sent (not observed in gRPC 1.51) is
// counted as Canceled when gRPC destroys its interceptors.
//
// Checked with gRPC 1.51 callback (reactor) services: generated callback
// services, CallbackGenericService, and the built-in health service. Calls
// to methods no service implements are intercepted too (as bidi_stream,
// finished with UNIMPLEMENTED), so their names come from clients: see
// kMaxDynamicGrpcMethods.

// One RPC method, for creating its series ahead of the first call.
struct GrpcMethod {
  std::string full_name;  // "/registrar.v1.Registrar/Issue"
  grpc::experimental::ServerRpcInfo::Type type =
      grpc::experimental::ServerRpcInfo::Type::UNARY;
};

// The methods of `service_full_name` (e.g. "registrar.v1.Registrar") as found
// in the generated descriptor pool, i.e. compiled into this binary; empty if
// the service is not there.
std::vector<GrpcMethod> GrpcMethodsOfService(
    std::string_view service_full_name);

// "unary", "client_stream", "server_stream", "bidi_stream".
std::string_view GrpcTypeName(grpc::experimental::ServerRpcInfo::Type type);

// Go's names (google.golang.org/grpc/codes): "OK", "Canceled", "Unknown",
// "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
// "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
// "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss",
// "Unauthenticated"; a value outside 0..16 gives "Unknown" (and is counted
// as such).
std::string_view GrpcCodeName(grpc::StatusCode code);

// Upper bounds (seconds) of grpc_server_handling_seconds: Prometheus'
// default buckets, as go-grpc-prometheus uses them: .005 .01 .025 .05 .1 .25
// .5 1 2.5 5 10. (Registrar's calls mostly fall in the first; the
// registry's own registrar_core_op_seconds resolves microseconds.)
const std::vector<double>& GrpcHandlingBuckets();

// Largest number of methods not in `known_methods` that get their own series
// (20 series and a histogram each); later ones share grpc_service="unknown",
// grpc_method="unknown". Bounds what clients calling made-up method names
// (counted with UNIMPLEMENTED) can add to the exposition.
inline constexpr int kMaxDynamicGrpcMethods = 64;

// Methods of the services gRPC itself provides: grpc.health.v1.Health (Check,
// Watch) and grpc.reflection.v1alpha.ServerReflection (ServerReflectionInfo),
// whose descriptors are usually not in the generated pool.
std::vector<GrpcMethod> GrpcHealthAndReflectionMethods();

// Returns a factory for ServerBuilder::experimental().SetInterceptorCreators()
// recording the families above in `registry` (created there if absent,
// shared with other factories on the same registry).
//
// Every method in `known_methods` has its started/msg/handling series and its
// handled series for all 17 codes created now, so they are exported as 0
// before the first call, and an RPC to it finds them in an immutable hash map
// without locking. Other methods (health, reflection, ...) get their series on
// their first call, under a mutex, and are then found under that mutex.
//
// Per RPC the cost is one hash lookup, a shared_ptr copy, two counter adds and
// one histogram observation. The factory and its interceptors keep the
// registry alive.
std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeGrpcServerMetricsInterceptorFactory(
    std::shared_ptr<prometheus::Registry> registry,
    std::vector<GrpcMethod> known_methods = {});

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_METRICS_GRPC_SERVER_METRICS_H_
