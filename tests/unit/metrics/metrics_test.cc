#include "service/metrics/metrics.h"

#include <atomic>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/unit/metrics/http_get.h"
#include "tests/unit/metrics/prometheus_text.h"

namespace registrar {
namespace {

using ::registrar::testing::FindSample;
using ::registrar::testing::HasMetric;
using ::registrar::testing::HttpGet;
using ::registrar::testing::ParsePromText;
using ::registrar::testing::PromSample;

// registrar.v1.Verdict values used below.
constexpr int kVerdictValid = 1;
constexpr int kVerdictForged = 4;
constexpr int kVerdictExpired = 8;

std::vector<PromSample> Scrape(int port) {
  absl::StatusOr<testing::HttpResponse> response =
      HttpGet("127.0.0.1", port, "/metrics");
  EXPECT_TRUE(response.ok()) << response.status();
  if (!response.ok()) return {};
  EXPECT_EQ(response->status_code, 200);
  return ParsePromText(response->body);
}

TEST(MetricsTest, ServeOnPortZeroBindsAFreePortAndReportsIt) {
  Metrics metrics;
  EXPECT_EQ(metrics.bound_port(), 0);
  const absl::Status status = metrics.Serve("127.0.0.1:0");
  ASSERT_TRUE(status.ok()) << status;
  const int port = metrics.bound_port();
  EXPECT_GT(port, 0);
  EXPECT_LT(port, 65536);
  // The reported port is the one actually serving.
  absl::StatusOr<testing::HttpResponse> response =
      HttpGet("127.0.0.1", port, "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status_code, 200);
  EXPECT_NE(response->body.find("registrar_ids_issued_total"),
            std::string::npos);
}

TEST(MetricsTest, ScrapeShowsCountersWithTheirLabelsAndValues) {
  Metrics metrics;
  ASSERT_TRUE(metrics.Serve("127.0.0.1:0").ok());

  metrics.OnIssued(Kind::kThread, 3);
  metrics.OnIssued(Kind::kThread, 4);
  metrics.OnIssued(Kind::kConnection, 1);
  metrics.OnEnded(Kind::kRun, EndCause::kCleanupOwner, 5);
  metrics.OnEnded(Kind::kRequest, EndCause::kLeaseExpired, 2);
  metrics.CountVerdict(kVerdictValid, 10);
  metrics.CountVerdict(kVerdictForged);
  metrics.OnLeaseGranted();
  metrics.OnLeaseGranted();
  metrics.OnLeaseEnded(EndCause::kLeaseRevoked);

  const std::vector<PromSample> s = Scrape(metrics.bound_port());
  EXPECT_EQ(FindSample(s, "registrar_ids_issued_total", {{"kind", "thread"}}),
            7);
  EXPECT_EQ(
      FindSample(s, "registrar_ids_issued_total", {{"kind", "connection"}}), 1);
  // Pre-created children are exported as 0 before their first use.
  EXPECT_EQ(FindSample(s, "registrar_ids_issued_total", {{"kind", "run"}}), 0);
  EXPECT_EQ(FindSample(s, "registrar_ids_issued_total", {{"kind", "request"}}),
            0);
  EXPECT_EQ(FindSample(s, "registrar_released_total",
                       {{"kind", "run"}, {"reason", "cleanup_owner"}}),
            5);
  EXPECT_EQ(FindSample(s, "registrar_released_total",
                       {{"kind", "request"}, {"reason", "lease_expired"}}),
            2);
  EXPECT_EQ(FindSample(s, "registrar_released_total",
                       {{"kind", "thread"}, {"reason", "cleanup_ids"}}),
            0);
  EXPECT_EQ(
      FindSample(s, "registrar_validations_total", {{"verdict", "valid"}}), 10);
  EXPECT_EQ(
      FindSample(s, "registrar_validations_total", {{"verdict", "forged"}}), 1);
  EXPECT_EQ(
      FindSample(s, "registrar_validations_total", {{"verdict", "expired"}}),
      0);
  EXPECT_EQ(FindSample(s, "registrar_leases_granted_total"), 2);
  EXPECT_EQ(FindSample(s, "registrar_leases_ended_total",
                       {{"reason", "lease_revoked"}}),
            1);
  EXPECT_EQ(FindSample(s, "registrar_leases_ended_total",
                       {{"reason", "lease_expired"}}),
            0);
}

TEST(MetricsTest, AllKnownLabelValuesArePreCreated) {
  Metrics metrics;
  const std::vector<PromSample> s = ParsePromText(metrics.ExpositionText());
  for (const char* verdict : {"valid", "malformed", "wrong_kind", "forged",
                              "unknown", "not_owner", "released", "expired"}) {
    EXPECT_EQ(
        FindSample(s, "registrar_validations_total", {{"verdict", verdict}}), 0)
        << verdict;
  }
  const char* const kReasons[] = {"cleanup_ids", "cleanup_connection",
                                  "cleanup_owner", "lease_revoked",
                                  "lease_expired"};
  for (const char* kind : {"thread", "run", "request", "connection"}) {
    EXPECT_EQ(FindSample(s, "registrar_ids_issued_total", {{"kind", kind}}), 0)
        << kind;
    for (const char* reason : kReasons) {
      EXPECT_EQ(FindSample(s, "registrar_released_total",
                           {{"kind", kind}, {"reason", reason}}),
                0)
          << kind << " " << reason;
    }
  }
  for (const char* reason : kReasons) {
    EXPECT_EQ(
        FindSample(s, "registrar_leases_ended_total", {{"reason", reason}}), 0)
        << reason;
  }
  for (const char* op :
       {"issue", "open_context", "validate", "cleanup", "grant_lease",
        "keep_alive", "revoke_lease", "describe", "list_owned", "tick"}) {
    EXPECT_EQ(FindSample(s, "registrar_core_op_seconds_count", {{"op", op}}), 0)
        << op;
  }
  // Exactly the eight verdicts, four kinds, nothing for ignored inputs.
  int verdict_series = 0;
  int issued_series = 0;
  for (const PromSample& sample : s) {
    verdict_series += sample.name == "registrar_validations_total";
    issued_series += sample.name == "registrar_ids_issued_total";
  }
  EXPECT_EQ(verdict_series, 8);
  EXPECT_EQ(issued_series, 4);
}

TEST(MetricsTest, OutOfRangeInputsAreIgnored) {
  Metrics metrics;
  metrics.CountVerdict(0, 5);   // VERDICT_UNSPECIFIED
  metrics.CountVerdict(9, 5);   // beyond the enum
  metrics.CountVerdict(-1, 5);  // negative
  metrics.OnIssued(Kind::kLease, 5);
  metrics.OnIssued(Kind::kUnspecified, 5);
  metrics.OnIssued(static_cast<Kind>(200), 5);
  metrics.OnEnded(Kind::kThread, static_cast<EndCause>(77), 5);
  metrics.OnLeaseEnded(static_cast<EndCause>(77));
  metrics.ObserveCoreOp(static_cast<CoreOp>(99), absl::Milliseconds(1));
  const std::vector<PromSample> s = ParsePromText(metrics.ExpositionText());
  int registrar_samples = 0;
  for (const PromSample& sample : s) {
    registrar_samples += sample.name.rfind("registrar_", 0) == 0;
  }
  // The families exist (zeroed), so the loop below checks something.
  ASSERT_GT(registrar_samples, 20);
  for (const PromSample& sample : s) {
    // Both are 1 from the start, whatever is counted.
    if (sample.name == "registrar_build_info" ||
        sample.name == "registrar_store_writable") {
      EXPECT_EQ(sample.value, 1) << sample.name;
    } else if (sample.name.rfind("registrar_", 0) == 0) {
      EXPECT_EQ(sample.value, 0) << sample.name;
    }
  }
}

TEST(MetricsTest, CoreOpHistogramBucketsTheObservation) {
  Metrics metrics;
  metrics.ObserveCoreOp(CoreOp::kIssue, absl::Microseconds(40));
  metrics.ObserveCoreOp(CoreOp::kIssue, absl::Milliseconds(3));
  metrics.ObserveCoreOp(CoreOp::kTick, absl::Seconds(2));
  const std::vector<PromSample> s = ParsePromText(metrics.ExpositionText());
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
  EXPECT_EQ(buckets, static_cast<int>(CoreOpBuckets().size()));
  EXPECT_DOUBLE_EQ(smallest, 10e-6);
  EXPECT_DOUBLE_EQ(largest, 1.0);
}

TEST(MetricsTest, ConcurrentUpdatesAreAllCounted) {
  Metrics metrics;
  constexpr int kThreads = 4;
  constexpr int kIterations = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&metrics] {
      for (int i = 0; i < kIterations; ++i) {
        metrics.OnIssued(Kind::kRequest, 2);
        metrics.CountVerdict(kVerdictExpired);
        metrics.ObserveCoreOp(CoreOp::kValidate, absl::Microseconds(i % 100));
      }
    });
  }
  // Scrapes running meanwhile must not disturb the counts.
  for (int i = 0; i < 20; ++i) (void)metrics.ExpositionText();
  for (std::thread& t : threads) t.join();
  const std::vector<PromSample> s = ParsePromText(metrics.ExpositionText());
  EXPECT_EQ(FindSample(s, "registrar_ids_issued_total", {{"kind", "request"}}),
            2.0 * kThreads * kIterations);
  EXPECT_EQ(
      FindSample(s, "registrar_validations_total", {{"verdict", "expired"}}),
      kThreads * kIterations);
  EXPECT_EQ(
      FindSample(s, "registrar_core_op_seconds_count", {{"op", "validate"}}),
      kThreads * kIterations);
}

TEST(MetricsTest, StatsProviderIsEvaluatedAtEachScrape) {
  Metrics metrics;
  ASSERT_TRUE(metrics.Serve("127.0.0.1:0").ok());
  const int port = metrics.bound_port();

  // No provider: the three families are absent.
  std::vector<PromSample> s = Scrape(port);
  EXPECT_FALSE(HasMetric(s, "registrar_live_records"));
  EXPECT_FALSE(HasMetric(s, "registrar_leases"));
  EXPECT_FALSE(HasMetric(s, "registrar_tombstones"));

  std::atomic<uint64_t> threads{7};
  std::atomic<int> calls{0};
  metrics.SetStatsProvider([&] {
    ++calls;
    RegistryStats stats;
    stats.live_records[static_cast<int>(Kind::kThread)] = threads.load();
    stats.live_records[static_cast<int>(Kind::kRun)] = 2;
    stats.live_records[static_cast<int>(Kind::kRequest)] = 3;
    stats.live_records[static_cast<int>(Kind::kConnection)] = 4;
    stats.live_records[static_cast<int>(Kind::kLease)] = 99;  // not exported
    stats.leases = 5;
    stats.tombstones = 6;
    stats.store_revision = 41;
    stats.store_batches = 30;
    stats.store_writes = 10;
    return stats;
  });
  EXPECT_EQ(calls.load(), 0);  // not evaluated until scraped

  s = Scrape(port);
  EXPECT_EQ(calls.load(), 1);
  EXPECT_EQ(FindSample(s, "registrar_live_records", {{"kind", "thread"}}), 7);
  EXPECT_EQ(FindSample(s, "registrar_live_records", {{"kind", "run"}}), 2);
  EXPECT_EQ(FindSample(s, "registrar_live_records", {{"kind", "request"}}), 3);
  EXPECT_EQ(FindSample(s, "registrar_live_records", {{"kind", "connection"}}),
            4);
  EXPECT_FALSE(
      FindSample(s, "registrar_live_records", {{"kind", "lease"}}).has_value());
  EXPECT_EQ(FindSample(s, "registrar_leases"), 5);
  EXPECT_EQ(FindSample(s, "registrar_tombstones"), 6);
  EXPECT_EQ(FindSample(s, "registrar_store_revision"), 41);
  EXPECT_EQ(FindSample(s, "registrar_store_batches_total"), 30);
  EXPECT_EQ(FindSample(s, "registrar_store_writes_total"), 10);

  threads = 8;
  s = Scrape(port);
  EXPECT_EQ(calls.load(), 2);
  EXPECT_EQ(FindSample(s, "registrar_live_records", {{"kind", "thread"}}), 8);

  metrics.SetStatsProvider(nullptr);
  s = Scrape(port);
  EXPECT_EQ(calls.load(), 2);
  EXPECT_FALSE(HasMetric(s, "registrar_live_records"));
}

TEST(MetricsTest, ServeReportsErrorsInsteadOfThrowing) {
  Metrics first;
  ASSERT_TRUE(first.Serve("127.0.0.1:0").ok());
  const int port = first.bound_port();

  // Serving twice on one object.
  absl::Status again = first.Serve("127.0.0.1:0");
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition) << again;
  EXPECT_EQ(first.bound_port(), port);

  // The port is taken by `first`.
  Metrics second;
  absl::Status taken = second.Serve("127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(taken.code(), absl::StatusCode::kUnavailable) << taken;
  EXPECT_EQ(second.bound_port(), 0);
  // A failed Serve leaves the object able to serve elsewhere.
  ASSERT_TRUE(second.Serve("127.0.0.1:0").ok());
  EXPECT_NE(second.bound_port(), port);

  Metrics third;
  EXPECT_EQ(third.Serve("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(third.Serve("203.0.113.1:0").ok());  // not a local address
  EXPECT_EQ(third.bound_port(), 0);
}

TEST(MetricsTest, DestroyingMetricsStopsServing) {
  int port = 0;
  {
    Metrics metrics;
    ASSERT_TRUE(metrics.Serve("127.0.0.1:0").ok());
    port = metrics.bound_port();
    ASSERT_TRUE(HttpGet("127.0.0.1", port, "/metrics").ok());
  }
  EXPECT_FALSE(HttpGet("127.0.0.1", port, "/metrics", 1000).ok());
}

}  // namespace
}  // namespace registrar

namespace registrar {
namespace {

TEST(MetricsTest, StoreCommitsAreTimedAndFailuresCounted) {
  Metrics metrics;
  metrics.OnStoreCommit(absl::Microseconds(300), true);
  metrics.OnStoreCommit(absl::Milliseconds(2), false);
  const std::string text = metrics.ExpositionText();
  EXPECT_NE(text.find("registrar_store_commit_seconds_count 2"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("registrar_store_commit_failures_total 1"),
            std::string::npos)
      << text;
}

}  // namespace
}  // namespace registrar
