#ifndef REGISTRAR_SERVICE_METRICS_METRICS_H_
#define REGISTRAR_SERVICE_METRICS_METRICS_H_

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/metrics/grpc_server_metrics.h"
#include "service/registry/observer.h"

namespace prometheus {
class Collectable;
class Counter;
class Exposer;
class Gauge;
class Histogram;
class Registry;
}  // namespace prometheus

namespace registrar {

// Operations of the registry core whose latency is recorded in
// registrar_core_op_seconds{op}. The label is CoreOpName(op).
enum class CoreOp : uint8_t {
  kIssue = 0,
  kOpenContext = 1,
  kValidate = 2,
  kCleanup = 3,
  kGrantLease = 4,
  kKeepAlive = 5,
  kRevokeLease = 6,
  kDescribe = 7,
  kListOwned = 8,
  kTick = 9,
};
inline constexpr int kNumCoreOps = 10;

// Metric label of an op: "issue", "open_context", "validate", "cleanup",
// "grant_lease", "keep_alive", "revoke_lease", "describe", "list_owned",
// "tick"; "unknown" for a value outside the enum.
std::string_view CoreOpName(CoreOp op);

// Why a call was turned away before it did anything.
enum class Rejection : uint8_t {
  kNoCredentials = 0,     // auth on, no token or known certificate
  kUnknownToken = 1,      // a bearer token no caller has
  kPermissionDenied = 2,  // role or tenant does not allow it
  kRateLimited = 3,       // the caller's request rate
  kOverloaded = 4,        // the server's in-flight bound
};
inline constexpr int kNumRejections = 5;
// "no_credentials", "unknown_token", "permission_denied", "rate_limited",
// "overloaded".
std::string_view RejectionName(Rejection r);

// Label of a registrar.v1.Verdict value in registrar_validations_total:
// "valid", "malformed", "wrong_kind", "forged", "unknown", "not_owner",
// "released", "expired" for 1..8; "" for anything else (not counted).
std::string_view VerdictLabel(int verdict);

// Upper bounds (seconds) of registrar_core_op_seconds: 10us .. 1s in 1-2.5-5
// steps.
const std::vector<double>& CoreOpBuckets();

// All of Registrar's Prometheus metrics, and the HTTP endpoint serving them.
//
// Families (every label child is created in the constructor, so each series
// is exported from the start with value 0):
//   registrar_ids_issued_total{kind}            kind: thread|run|request|
//                                                     connection
//   registrar_validations_total{verdict}        see VerdictLabel
//   registrar_released_total{kind,reason}       reason: EndCauseName
//   registrar_leases_granted_total
//   registrar_leases_ended_total{reason}        reason: EndCauseName
//   registrar_core_op_seconds{op}               histogram, CoreOpBuckets()
//   registrar_rejected_calls_total{reason}      reason: RejectionName; the
//                                               first three are the
//                                               authentication failures
// Read at scrape time from the stats provider (absent until one is set):
//   registrar_live_records{kind}                gauge, the four record kinds
//   registrar_leases                            gauge
//   registrar_tombstones                        gauge
//   registrar_build_info{version,revision}      gauge, always 1: BuildVersion()
//                                               and BuildRevision()
//   registrar_store_writable                    gauge, 1 while the store can
//                                               write, 0 while it cannot
//                                               (SetStoreWritable)
//   process_*                                   this process, from /proc
//                                               (process_metrics.h)
// gRPC server families (grpc_server_*) appear once
// MakeServerInterceptorFactory has been called; see grpc_server_metrics.h.
//
// Thread safety: every method may be called concurrently, except that the
// destructor must not race with anything. The counting methods (the
// RegistryObserver overrides, CountVerdict, ObserveCoreOp) do no allocation,
// no map lookup and take no Metrics-wide lock: an array index plus an atomic
// add (histograms additionally take prometheus-cpp's per-series mutex).
//
// The registry uses this class as its RegistryObserver, so Metrics must
// outlive the registry it observes. Interceptor factories need not be
// outlived: they share ownership of the prometheus::Registry.
class Metrics : public RegistryObserver {
 public:
  Metrics();
  ~Metrics() override;

  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // RegistryObserver. Kinds other than thread, run, request and connection,
  // and causes outside EndCause, are ignored.
  void OnIssued(Kind kind, uint64_t count) override;
  void OnEnded(Kind kind, EndCause cause, uint64_t count) override;
  void OnLeaseGranted() override;
  void OnLeaseEnded(EndCause cause) override;
  void OnStoreCommit(absl::Duration took, bool ok) override;

  // Adds n to registrar_validations_total{verdict=VerdictLabel(verdict)};
  // `verdict` is a registrar.v1.Verdict value. Values without a label
  // (VERDICT_UNSPECIFIED, out of range) are ignored.
  void CountVerdict(int verdict, uint64_t n = 1);

  // Counts a call turned away (authentication, permission, rate, load).
  void CountRejection(Rejection r);

  // Sets registrar_store_writable (1 from the start).
  void SetStoreWritable(bool writable);

  // Records one observation of `op` taking `d` in registrar_core_op_seconds.
  void ObserveCoreOp(CoreOp op, absl::Duration d);

  // Sets the function called at every scrape to fill registrar_live_records,
  // registrar_leases and registrar_tombstones. It is called on an HTTP server
  // thread with no Metrics lock held, possibly concurrently with itself if
  // scrapes overlap; it must be thread-safe and must not call back into
  // SetStatsProvider. Replacing it is safe at any time; an empty function
  // removes the three families from the output.
  void SetStatsProvider(std::function<RegistryStats()> provider);

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
  class StatsCollectable;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<StatsCollectable> stats_;

  // Hot-path children; nullptr where no series exists (ignored input).
  std::array<prometheus::Counter*, kNumKinds> issued_{};
  std::array<std::array<prometheus::Counter*, kNumEndCauses>, kNumKinds>
      released_{};
  std::array<prometheus::Counter*, 9> verdicts_{};  // by Verdict value
  prometheus::Counter* leases_granted_ = nullptr;
  std::array<prometheus::Counter*, kNumRejections> rejections_{};
  prometheus::Histogram* store_commit_ = nullptr;
  prometheus::Gauge* store_writable_ = nullptr;
  prometheus::Counter* store_commit_failures_ = nullptr;
  std::array<prometheus::Counter*, kNumEndCauses> leases_ended_{};
  std::array<prometheus::Histogram*, kNumCoreOps> core_op_{};

  mutable absl::Mutex exposer_mu_;
  // Besides registry_ and stats_: served and in ExpositionText().
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables_
      ABSL_GUARDED_BY(exposer_mu_);
  std::unique_ptr<prometheus::Exposer> exposer_ ABSL_GUARDED_BY(exposer_mu_);
  int bound_port_ ABSL_GUARDED_BY(exposer_mu_) = 0;
  // The address that reaches the HTTP listener from here (StopExposer).
  std::string wake_host_ ABSL_GUARDED_BY(exposer_mu_);
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_METRICS_METRICS_H_
