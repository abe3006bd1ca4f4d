#include "service/api/api_metrics.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "service/metrics/families.h"
#include "service/metrics/metrics.h"
#include "tests/unit/metrics/prometheus_text.h"

namespace registrar {
namespace {

using ::registrar::testing::FindSample;
using ::registrar::testing::ParsePromText;
using ::registrar::testing::PromSample;

// registrar.v1.Verdict values used below.
constexpr int kVerdictValid = 1;
constexpr int kVerdictForged = 4;
constexpr int kVerdictExpired = 8;

constexpr const char* kOps[] = {"issue",        "open_context",  "validate",
                                "cleanup",      "grant_lease",   "keep_alive",
                                "revoke_lease", "describe",      "list_owned",
                                "list_leases",  "revoke_leases", "tick"};

struct Fixture {
  Metrics exposer;
  ApiMetrics metrics{exposer.registry()};
  std::vector<PromSample> Samples() const {
    return ParsePromText(exposer.ExpositionText());
  }
};

TEST(ApiMetricsTest, VerdictsAndRejectionsAreCountedByLabel) {
  Fixture f;
  f.metrics.CountVerdict(kVerdictValid, 10);
  f.metrics.CountVerdict(kVerdictForged);
  f.metrics.CountRejection(Rejection::kRateLimited);
  f.metrics.CountRejection(Rejection::kRateLimited);
  f.metrics.CountRejection(Rejection::kNoCredentials);
  const std::vector<PromSample> s = f.Samples();
  EXPECT_EQ(
      FindSample(s, "registrar_validations_total", {{"verdict", "valid"}}), 10);
  EXPECT_EQ(
      FindSample(s, "registrar_validations_total", {{"verdict", "forged"}}), 1);
  EXPECT_EQ(
      FindSample(s, "registrar_validations_total", {{"verdict", "expired"}}),
      0);
  EXPECT_EQ(FindSample(s, "registrar_rejected_calls_total",
                       {{"reason", "rate_limited"}}),
            2);
  EXPECT_EQ(FindSample(s, "registrar_rejected_calls_total",
                       {{"reason", "no_credentials"}}),
            1);
  EXPECT_EQ(FindSample(s, "registrar_rejected_calls_total",
                       {{"reason", "overloaded"}}),
            0);
}

TEST(ApiMetricsTest, AllKnownLabelValuesArePreCreated) {
  Fixture f;
  const std::vector<PromSample> s = f.Samples();
  for (const char* verdict : {"valid", "malformed", "wrong_kind", "forged",
                              "unknown", "not_owner", "released", "expired"}) {
    EXPECT_EQ(
        FindSample(s, "registrar_validations_total", {{"verdict", verdict}}), 0)
        << verdict;
  }
  for (const char* reason :
       {"no_credentials", "unknown_token", "permission_denied", "rate_limited",
        "overloaded"}) {
    EXPECT_EQ(
        FindSample(s, "registrar_rejected_calls_total", {{"reason", reason}}),
        0)
        << reason;
  }
  for (const char* op : kOps) {
    EXPECT_EQ(FindSample(s, "registrar_core_op_seconds_count", {{"op", op}}), 0)
        << op;
  }
  // Exactly those: eight verdicts, five reasons, twelve ops (Watch and
  // Backup have none).
  int verdicts = 0, reasons = 0, ops = 0;
  for (const PromSample& sample : s) {
    verdicts += sample.name == "registrar_validations_total";
    reasons += sample.name == "registrar_rejected_calls_total";
    ops += sample.name == "registrar_core_op_seconds_count";
  }
  EXPECT_EQ(verdicts, 8);
  EXPECT_EQ(reasons, 5);
  EXPECT_EQ(ops, 12);
}

TEST(ApiMetricsTest, OutOfRangeInputsAreIgnored) {
  Fixture f;
  f.metrics.CountVerdict(0, 5);   // VERDICT_UNSPECIFIED
  f.metrics.CountVerdict(9, 5);   // beyond the enum
  f.metrics.CountVerdict(-1, 5);  // negative
  f.metrics.CountRejection(static_cast<Rejection>(42));
  f.metrics.ObserveCall(static_cast<Method>(99), absl::Milliseconds(1));
  f.metrics.ObserveCall(Method::kWatch, absl::Milliseconds(1));  // no label
  const std::vector<PromSample> s = f.Samples();
  int checked = 0;
  for (const PromSample& sample : s) {
    if (sample.name.rfind("registrar_", 0) != 0 ||
        sample.name == "registrar_build_info") {
      continue;
    }
    EXPECT_EQ(sample.value, 0) << sample.name;
    ++checked;
  }
  EXPECT_GT(checked, 8 + 5 + 10);
}

TEST(ApiMetricsTest, CallAndTickLatencyIsBucketed) {
  Fixture f;
  f.metrics.ObserveCall(Method::kIssue, absl::Microseconds(40));
  f.metrics.ObserveCall(Method::kIssue, absl::Milliseconds(3));
  f.metrics.ObserveTick(absl::Seconds(2));
  const std::vector<PromSample> s = f.Samples();
  EXPECT_EQ(FindSample(s, "registrar_core_op_seconds_count", {{"op", "issue"}}),
            2);
  const std::optional<double> sum =
      FindSample(s, "registrar_core_op_seconds_sum", {{"op", "issue"}});
  ASSERT_TRUE(sum.has_value());
  EXPECT_NEAR(*sum, 0.00304, 1e-9);
  EXPECT_EQ(FindSample(s, "registrar_core_op_seconds_count", {{"op", "tick"}}),
            1);
  EXPECT_EQ(FindSample(s, "registrar_core_op_seconds_bucket",
                       {{"op", "tick"}, {"le", "+Inf"}}),
            1);
  EXPECT_EQ(FindSample(s, "registrar_core_op_seconds_bucket",
                       {{"op", "tick"}, {"le", "1"}}),
            0);

  // Buckets from 10us to 1s; each cumulative count matches the two issue
  // observations (40us, 3ms).
  int buckets = 0;
  double smallest = 1e9;
  double largest = 0;
  for (const PromSample& sample : s) {
    if (sample.name != "registrar_core_op_seconds_bucket" ||
        sample.labels.at("op") != "issue" || sample.labels.at("le") == "+Inf") {
      continue;
    }
    ++buckets;
    const double le = std::strtod(sample.labels.at("le").c_str(), nullptr);
    smallest = std::min(smallest, le);
    largest = std::max(largest, le);
    const double expected = (le >= 40e-6 ? 1 : 0) + (le >= 3e-3 ? 1 : 0);
    EXPECT_EQ(sample.value, expected) << "le=" << le;
  }
  EXPECT_EQ(buckets, static_cast<int>(LatencyBuckets().size()));
  EXPECT_DOUBLE_EQ(smallest, 10e-6);
  EXPECT_DOUBLE_EQ(largest, 1.0);
}

TEST(ApiMetricsTest, ConcurrentUpdatesAreAllCounted) {
  Fixture f;
  constexpr int kThreads = 4;
  constexpr int kIterations = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&f] {
      for (int i = 0; i < kIterations; ++i) {
        f.metrics.CountVerdict(kVerdictExpired);
        f.metrics.ObserveCall(Method::kValidate, absl::Microseconds(i % 100));
      }
    });
  }
  for (int i = 0; i < 20; ++i) (void)f.exposer.ExpositionText();
  for (std::thread& t : threads) t.join();
  const std::vector<PromSample> s = f.Samples();
  EXPECT_EQ(
      FindSample(s, "registrar_validations_total", {{"verdict", "expired"}}),
      kThreads * kIterations);
  EXPECT_EQ(
      FindSample(s, "registrar_core_op_seconds_count", {{"op", "validate"}}),
      kThreads * kIterations);
}

}  // namespace
}  // namespace registrar
