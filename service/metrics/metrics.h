#ifndef REGISTRAR_SERVICE_METRICS_METRICS_H_
#define REGISTRAR_SERVICE_METRICS_METRICS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "service/metrics/grpc_server_metrics.h"

namespace prometheus {
class Collectable;
class Exposer;
class Registry;
}  // namespace prometheus

namespace registrar {

// The Prometheus endpoint of the process: one prometheus::Registry that
// each component registers its own families on (api/api_metrics.h,
// registry/registry_metrics.h, the store's collectables), scrape-time
// collectables added with AddCollectable, and the HTTP server serving them.
//
// Families of its own:
//   registrar_build_info{version,revision}  gauge, always 1: BuildVersion()
//                                           and BuildRevision()
//   process_*                               this process, from /proc
//                                           (process_metrics.h)
// gRPC server families (grpc_server_*) appear once
// MakeServerInterceptorFactory has been called; see grpc_server_metrics.h.
//
// Thread safety: every method may be called concurrently, except that the
// destructor must not race with anything. Interceptor factories need not be
// outlived: they share ownership of the prometheus::Registry.
class Metrics {
 public:
  Metrics();
  ~Metrics();

  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Starts serving the Prometheus text format at http://<listen_address>/
  // metrics on two background threads (civetweb). listen_address is
  // "host:port" or "port": "127.0.0.1:9464", "0.0.0.0:9464", "9464" (all
  // interfaces); port 0 picks a free port, see bound_port(). (An IPv6 literal
  // such as "[::1]:0" did not bind with Debian's civetweb.)
  // Returns InvalidArgument for an empty address, FailedPrecondition if
  // already serving, Unavailable if the address cannot be bound (port taken,
  // address not local, unparsable); a failed call leaves the object as it
  // was. Never throws. Serving stops when Metrics is destroyed, which then
  // blocks up to about 2 s (civetweb's stop waits out its poll interval once
  // it has served a request).
  absl::Status Serve(const std::string& listen_address);

  // The TCP port Serve() bound (the real one when asked for port 0), or 0
  // when not serving.
  int bound_port() const;

  // Adds families collected at every scrape (e.g. MakeDataDirCollectable),
  // served at /metrics and included in ExpositionText() from now on. The
  // collectable must be thread-safe.
  void AddCollectable(std::shared_ptr<prometheus::Collectable> collectable);

  // Returns a server interceptor factory that records the grpc_server_*
  // families (grpc_server_metrics.h) in this object's registry, for
  // ServerBuilder::experimental().
  // SetInterceptorCreators(). `known_methods` get their series (all 17 codes)
  // created up front and are looked up without locks; see
  // grpc_server_metrics.h. May be called more than once (the families and
  // series are shared). The factory holds a reference to the
  // prometheus::Registry, so it may outlive this object.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
  MakeServerInterceptorFactory(std::vector<GrpcMethod> known_methods = {});

  // Everything /metrics would return right now, in the Prometheus text
  // format (for tests, debugging and a "dump metrics" log line).
  std::string ExpositionText() const;

  // The registry holding every family except the scrape-time gauges, for
  // components that add their own metrics (e.g. store latency histograms).
  // Families added here are served at /metrics too.
  prometheus::Registry& registry() { return *registry_; }
  std::shared_ptr<prometheus::Registry> shared_registry() { return registry_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;

  mutable absl::Mutex exposer_mu_;
  // Besides registry_: served and in ExpositionText().
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_
      ABSL_GUARDED_BY(exposer_mu_);
  std::unique_ptr<prometheus::Exposer> exposer_ ABSL_GUARDED_BY(exposer_mu_);
  int bound_port_ ABSL_GUARDED_BY(exposer_mu_) = 0;
  // The address that reaches the HTTP listener from here (StopExposer).
  std::string wake_host_ ABSL_GUARDED_BY(exposer_mu_);
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_METRICS_METRICS_H_
