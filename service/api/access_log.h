#ifndef REGISTRAR_SERVICE_API_ACCESS_LOG_H_
#define REGISTRAR_SERVICE_API_ACCESS_LOG_H_

// The access log (--access_log, --access_log_sample): one line per sampled
// call, written when the server sends the call's status, with
//   method, code (Go's names, as grpc_server_handled_total's grpc_code),
//   duration_ms, caller (its name; "-" without authentication or before
//   it), tenant (the request's first; "-" when it names none or was not
//   read), peer, and the caller's `traceparent` and `x-request-id`
//   metadata when present.
// Every value that a client chose is escaped and bounded (LogSafe).
//   text: [2026-12-02 10:40:26.123] [access]
//   method=/registrar.v1.Registrar/Issue code=OK duration_ms=0.412 caller=gw-a
//   tenant="acme" peer="ipv4:127.0.0.1:5555" traceparent="00-..."
//   x_request_id="r-1" json:
//   {"ts":"2026-12-02T10:40:26.123456Z","level":"info","msg":"access","method":...,"code":"OK","duration_ms":0.412,...}
//
// A gRPC server interceptor sees the method, metadata, peer and status; the
// service tells it who called for which tenant (Note), once it knows.

#include <memory>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/server_interceptor.h"

namespace spdlog {
class logger;
}  // namespace spdlog

namespace registrar {

class AccessLog {
 public:
  struct Options {
    std::string destination;  // a file path (appended to), or "stderr"
    double sample = 1.0;      // fraction of calls logged, 0..1
    bool json = false;
  };

  // Opens the destination; FailedPrecondition naming --access_log when it
  // cannot be written.
  static absl::StatusOr<std::unique_ptr<AccessLog>> Open(
      const Options& options);
  ~AccessLog();

  // A factory for ServerBuilder::experimental().SetInterceptorCreators(); it
  // refers to this log, which must outlive the server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
  MakeInterceptorFactory();

  // Who calls (`caller`, empty: unauthenticated) and for which tenant (asked
  // only when this call is sampled). Thread-safe.
  void Note(const grpc::ServerContextBase* ctx, std::string_view caller,
            absl::FunctionRef<std::string()> tenant);

 private:
  class Interceptor;
  class Factory;
  struct Who {
    std::string caller;
    std::string tenant;
  };

  explicit AccessLog(const Options& options,
                     std::shared_ptr<spdlog::logger> logger)
      : options_(options), logger_(std::move(logger)) {}

  bool Sampled();
  void Begin(const grpc::ServerContextBase* ctx);
  Who End(const grpc::ServerContextBase* ctx);
  void Write(std::string_view method, grpc::StatusCode code,
             absl::Duration duration, const Who& who,
             const grpc::ServerContextBase& ctx);

  const Options options_;
  const std::shared_ptr<spdlog::logger> logger_;
  absl::Mutex mu_;
  // Sampled calls in progress.
  absl::flat_hash_map<const grpc::ServerContextBase*, Who> calls_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_API_ACCESS_LOG_H_
