#ifndef REGISTRAR_SERVICE_API_API_METRICS_H_
#define REGISTRAR_SERVICE_API_API_METRICS_H_

// The API layer's own metrics, registered on the server's Prometheus
// registry (service/metrics/ exposes it):
//   registrar_validations_total{verdict}   see VerdictLabel
//   registrar_rejected_calls_total{reason} reason: RejectionName; the first
//                                          three are authentication failures
//   registrar_core_op_seconds{op}          histogram, LatencyBuckets(): one
//                                          observation per finished call of
//                                          a method with an op label
//                                          (method.h), and "tick" for the
//                                          server's expiry ticks
// Every label child is created up front, so each series is exported with
// value 0 from the start. Counting is an array index and an atomic add
// (histograms also take prometheus-cpp's per-series mutex); thread-safe.

#include <array>
#include <cstdint>
#include <string_view>

#include "absl/time/time.h"
#include "service/api/method.h"

namespace prometheus {
class Counter;
class Histogram;
class Registry;
}  // namespace prometheus

namespace registrar {

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

class ApiMetrics {
 public:
  // Registers the families on `registry`, which must outlive this object.
  explicit ApiMetrics(prometheus::Registry& registry);

  ApiMetrics(const ApiMetrics&) = delete;
  ApiMetrics& operator=(const ApiMetrics&) = delete;

  // Adds n to registrar_validations_total{verdict=VerdictLabel(verdict)};
  // values without a label (VERDICT_UNSPECIFIED, out of range) are ignored.
  void CountVerdict(int verdict, uint64_t n = 1);
  // Counts a call turned away (authentication, permission, rate, load).
  void CountRejection(Rejection r);
  // One finished call of `m` that took `d`; ignored for methods without an
  // op label (Watch) and values outside the enum.
  void ObserveCall(Method m, absl::Duration d);
  // One expiry tick of the server that took `d` (op="tick").
  void ObserveTick(absl::Duration d);

 private:
  static constexpr int kNumVerdicts = 9;  // registrar.v1.Verdict 0..8
  std::array<prometheus::Counter*, kNumVerdicts> verdicts_{};
  std::array<prometheus::Counter*, kNumRejections> rejections_{};
  std::array<prometheus::Histogram*, kNumMethods> calls_{};
  prometheus::Histogram* tick_ = nullptr;
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_API_API_METRICS_H_
