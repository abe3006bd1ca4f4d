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

// Server-side gRPC metrics in the shape of go-grpc-prometheus, recorded by a
// server interceptor:
//   grpc_server_started_total{grpc_type,grpc_service,grpc_method}
//   grpc_server_handled_total{grpc_type,grpc_service,grpc_method,grpc_code}
//   grpc_server_handling_seconds{grpc_type,grpc_service,grpc_method}
// grpc_type is GrpcTypeName(), "/pkg.Service/Method" is split into
// grpc_service="pkg.Service" and grpc_method="Method" (both "unknown" if the
// name has no second '/'), grpc_code is GrpcCodeName() of the status sent.
// Difference from go-grpc-prometheus: grpc_code uses the canonical upper-case
// names of the gRPC spec ("NOT_FOUND"), where Go prints "NotFound".
//
// An RPC is "started" when gRPC creates its interceptors (the call has been
// matched to a registered method, before the handler runs) and "handled" when
// the server sends its status; handling_seconds is the time between the two.
// A call that ends without the server sending a status (not seen with
// gRPC 1.51, where a cancelled call still sends one) is counted as handled
// with CANCELLED when gRPC destroys its interceptors.
//
// Works for sync, async and callback (reactor) services alike, and for
// gRPC's built-in health and reflection services, which are callback
// services in gRPC 1.51.

// One RPC method, for creating its series ahead of the first call.
struct GrpcMethod {
  std::string full_name;  // "/registrar.v1.Registrar/Issue"
  grpc::experimental::ServerRpcInfo::Type type =
      grpc::experimental::ServerRpcInfo::Type::UNARY;
};

// The methods of `service_full_name` (e.g. "registrar.v1.Registrar") as found
// in the generated descriptor pool, i.e. compiled into this binary; empty if
// the service is not there.
std::vector<GrpcMethod> GrpcMethodsOfService(std::string_view service_full_name);

// "unary", "client_stream", "server_stream", "bidi_stream".
std::string_view GrpcTypeName(grpc::experimental::ServerRpcInfo::Type type);

// "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
// "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
// "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
// "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"; a value outside
// 0..16 gives "UNKNOWN" (and is counted as such).
std::string_view GrpcCodeName(grpc::StatusCode code);

// Upper bounds (seconds) of grpc_server_handling_seconds: 100us, 250us,
// 500us, 1ms, 2.5ms, then go-grpc-prometheus' defaults .005 .01 .025 .05 .1
// .25 .5 1 2.5 5 10. Registrar's unary calls take well under 5 ms, so the
// default buckets alone would put nearly every call in the first one; the
// extra low buckets resolve them, and every default bound is kept so
// dashboards written for the defaults still work.
const std::vector<double>& GrpcHandlingBuckets();

// Largest number of methods not in `known_methods` that get their own series;
// later unknown methods (only possible with a generic service, whose method
// names come from clients) share grpc_service="unknown",
// grpc_method="unknown".
inline constexpr int kMaxDynamicGrpcMethods = 256;

// Returns a factory for ServerBuilder::experimental().SetInterceptorCreators()
// recording the families above in `registry` (created there if absent,
// shared with other factories on the same registry).
//
// Every method in `known_methods` has its started/handling series and its
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
