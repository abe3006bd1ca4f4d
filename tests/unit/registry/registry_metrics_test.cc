#include "service/registry/registry_metrics.h"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "service/metrics/metrics.h"
#include "tests/unit/metrics/prometheus_text.h"

namespace registrar {
namespace {

using ::registrar::testing::FindSample;
using ::registrar::testing::HasMetric;
using ::registrar::testing::ParsePromText;
using ::registrar::testing::PromSample;

constexpr const char* kReasons[] = {"cleanup_ids", "cleanup_connection",
                                    "cleanup_owner", "lease_revoked",
                                    "lease_expired"};

// The exposer the server uses, with the registry's families on it.
struct Fixture {
  Metrics exposer;
  RegistryMetrics metrics{exposer.registry()};
  std::vector<PromSample> Samples() const {
    return ParsePromText(exposer.ExpositionText());
  }
};

TEST(RegistryMetricsTest, CountsShowWithTheirLabelsAndValues) {
  Fixture f;
  f.metrics.OnIssued(Kind::kThread, 3);
  f.metrics.OnIssued(Kind::kThread, 4);
  f.metrics.OnIssued(Kind::kConnection, 1);
  f.metrics.OnEnded(Kind::kRun, EndCause::kCleanupOwner, 5);
  f.metrics.OnEnded(Kind::kRequest, EndCause::kLeaseExpired, 2);
  f.metrics.OnLeaseGranted();
  f.metrics.OnLeaseGranted();
  f.metrics.OnLeaseEnded(EndCause::kLeaseRevoked);

  const std::vector<PromSample> s = f.Samples();
  EXPECT_EQ(FindSample(s, "registrar_ids_issued_total", {{"kind", "thread"}}),
            7);
  EXPECT_EQ(
      FindSample(s, "registrar_ids_issued_total", {{"kind", "connection"}}), 1);
  EXPECT_EQ(FindSample(s, "registrar_ids_issued_total", {{"kind", "run"}}), 0);
  EXPECT_EQ(FindSample(s, "registrar_released_total",
                       {{"kind", "run"}, {"reason", "cleanup_owner"}}),
            5);
  EXPECT_EQ(FindSample(s, "registrar_released_total",
                       {{"kind", "request"}, {"reason", "lease_expired"}}),
            2);
  EXPECT_EQ(FindSample(s, "registrar_released_total",
                       {{"kind", "thread"}, {"reason", "cleanup_ids"}}),
            0);
  EXPECT_EQ(FindSample(s, "registrar_leases_granted_total"), 2);
  EXPECT_EQ(FindSample(s, "registrar_leases_ended_total",
                       {{"reason", "lease_revoked"}}),
            1);
  EXPECT_EQ(FindSample(s, "registrar_leases_ended_total",
                       {{"reason", "lease_expired"}}),
            0);
}

TEST(RegistryMetricsTest, AllKnownLabelValuesArePreCreated) {
  Fixture f;
  const std::vector<PromSample> s = f.Samples();
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
  // Exactly the four record kinds, five reasons each.
  int issued = 0;
  int released = 0;
  for (const PromSample& sample : s) {
    issued += sample.name == "registrar_ids_issued_total";
    released += sample.name == "registrar_released_total";
  }
  EXPECT_EQ(issued, 4);
  EXPECT_EQ(released, 4 * 5);
}

TEST(RegistryMetricsTest, OutOfRangeInputsAreIgnored) {
  Fixture f;
  f.metrics.OnIssued(Kind::kLease, 5);
  f.metrics.OnIssued(Kind::kUnspecified, 5);
  f.metrics.OnIssued(static_cast<Kind>(200), 5);
  f.metrics.OnEnded(Kind::kThread, static_cast<EndCause>(77), 5);
  f.metrics.OnEnded(static_cast<Kind>(200), EndCause::kCleanupIds, 5);
  f.metrics.OnLeaseEnded(static_cast<EndCause>(77));
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
  EXPECT_GT(checked, 4 + 4 * 5);
}

TEST(RegistryMetricsTest, ConcurrentUpdatesAreAllCounted) {
  Fixture f;
  constexpr int kThreads = 4;
  constexpr int kIterations = 20000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&f] {
      for (int i = 0; i < kIterations; ++i) {
        f.metrics.OnIssued(Kind::kRequest, 2);
        f.metrics.OnEnded(Kind::kRequest, EndCause::kCleanupIds, 1);
      }
    });
  }
  // Scrapes running meanwhile must not disturb the counts.
  for (int i = 0; i < 20; ++i) (void)f.exposer.ExpositionText();
  for (std::thread& t : threads) t.join();
  const std::vector<PromSample> s = f.Samples();
  EXPECT_EQ(FindSample(s, "registrar_ids_issued_total", {{"kind", "request"}}),
            2.0 * kThreads * kIterations);
  EXPECT_EQ(FindSample(s, "registrar_released_total",
                       {{"kind", "request"}, {"reason", "cleanup_ids"}}),
            1.0 * kThreads * kIterations);
}

TEST(RegistryMetricsTest, StoreCommitsAreTimedAndFailuresCounted) {
  Fixture f;
  f.metrics.OnStoreCommit(absl::Microseconds(300), true);
  f.metrics.OnStoreCommit(absl::Milliseconds(2), false);
  const std::vector<PromSample> s = f.Samples();
  EXPECT_EQ(FindSample(s, "registrar_store_commit_seconds_count"), 2);
  EXPECT_EQ(
      FindSample(s, "registrar_store_commit_seconds_bucket", {{"le", "0.001"}}),
      1);
  EXPECT_EQ(FindSample(s, "registrar_store_commit_failures_total"), 1);
}

TEST(RegistryStatsCollectableTest, SourceIsReadAtEachScrapeAndCanBeCleared) {
  Metrics exposer;
  auto stats = std::make_shared<RegistryStatsCollectable>();
  exposer.AddCollectable(stats);

  // No source: the families are absent.
  std::vector<PromSample> s = ParsePromText(exposer.ExpositionText());
  EXPECT_FALSE(HasMetric(s, "registrar_live_records"));
  EXPECT_FALSE(HasMetric(s, "registrar_leases"));
  EXPECT_FALSE(HasMetric(s, "registrar_tombstones"));

  std::atomic<uint64_t> threads{7};
  std::atomic<int> calls{0};
  stats->SetSource([&] {
    ++calls;
    RegistryStats r;
    r.live_records[static_cast<int>(Kind::kThread)] = threads.load();
    r.live_records[static_cast<int>(Kind::kRun)] = 2;
    r.live_records[static_cast<int>(Kind::kRequest)] = 3;
    r.live_records[static_cast<int>(Kind::kConnection)] = 4;
    r.live_records[static_cast<int>(Kind::kLease)] = 99;  // not exported
    r.leases = 5;
    r.tombstones = 6;
    r.store_revision = 41;
    r.store_batches = 30;
    r.store_writes = 10;
    return r;
  });
  EXPECT_EQ(calls.load(), 0);  // not evaluated until scraped

  s = ParsePromText(exposer.ExpositionText());
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
  s = ParsePromText(exposer.ExpositionText());
  EXPECT_EQ(calls.load(), 2);
  EXPECT_EQ(FindSample(s, "registrar_live_records", {{"kind", "thread"}}), 8);

  // Cleared (as the server does before its registry goes away): no call.
  stats->SetSource(nullptr);
  s = ParsePromText(exposer.ExpositionText());
  EXPECT_EQ(calls.load(), 2);
  EXPECT_FALSE(HasMetric(s, "registrar_live_records"));
}

}  // namespace
}  // namespace registrar
