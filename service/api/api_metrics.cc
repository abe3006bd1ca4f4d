#include "service/api/api_metrics.h"

#include <string>

#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "service/metrics/families.h"

namespace registrar {

std::string_view RejectionName(Rejection r) {
  switch (r) {
    case Rejection::kNoCredentials:
      return "no_credentials";
    case Rejection::kUnknownToken:
      return "unknown_token";
    case Rejection::kPermissionDenied:
      return "permission_denied";
    case Rejection::kRateLimited:
      return "rate_limited";
    case Rejection::kOverloaded:
      return "overloaded";
  }
  return "unknown";
}

std::string_view VerdictLabel(int verdict) {
  static constexpr std::string_view kLabels[] = {
      "",        "valid",     "malformed", "wrong_kind", "forged",
      "unknown", "not_owner", "released",  "expired"};
  constexpr int n = sizeof(kLabels) / sizeof(kLabels[0]);
  return verdict >= 0 && verdict < n ? kLabels[verdict] : "";
}

ApiMetrics::ApiMetrics(prometheus::Registry& registry) {
  auto& verdicts = prometheus::BuildCounter()
                       .Name("registrar_validations_total")
                       .Help("IDs validated, by verdict.")
                       .Register(registry);
  for (int v = 1; v < kNumVerdicts; ++v) {
    verdicts_[v] = &verdicts.Add({{"verdict", std::string(VerdictLabel(v))}});
  }
  auto& rejected = prometheus::BuildCounter()
                       .Name("registrar_rejected_calls_total")
                       .Help(
                           "Calls turned away before doing anything, by "
                           "reason (authentication, permission, rate "
                           "limit, overload).")
                       .Register(registry);
  for (int r = 0; r < kNumRejections; ++r) {
    rejections_[r] = &rejected.Add(
        {{"reason", std::string(RejectionName(static_cast<Rejection>(r)))}});
  }
  auto& ops = prometheus::BuildHistogram()
                  .Name("registrar_core_op_seconds")
                  .Help("Latency of registry core operations, by op.")
                  .Register(registry);
  for (const MethodInfo& m : kMethods) {
    if (m.op_label.empty()) continue;
    calls_[static_cast<int>(m.method)] =
        &ops.Add({{"op", std::string(m.op_label)}}, LatencyBuckets());
  }
  tick_ = &ops.Add({{"op", "tick"}}, LatencyBuckets());
}

void ApiMetrics::CountVerdict(int verdict, uint64_t n) {
  if (verdict < 0 || verdict >= kNumVerdicts) return;
  if (prometheus::Counter* c = verdicts_[verdict]) {
    c->Increment(static_cast<double>(n));
  }
}

void ApiMetrics::CountRejection(Rejection r) {
  const int i = static_cast<int>(r);
  if (i >= 0 && i < kNumRejections) rejections_[i]->Increment();
}

void ApiMetrics::ObserveCall(Method m, absl::Duration d) {
  const int i = static_cast<int>(m);
  if (i < 0 || i >= kNumMethods || calls_[i] == nullptr) return;
  calls_[i]->Observe(absl::ToDoubleSeconds(d));
}

void ApiMetrics::ObserveTick(absl::Duration d) {
  tick_->Observe(absl::ToDoubleSeconds(d));
}

}  // namespace registrar
