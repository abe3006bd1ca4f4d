// Churn by one owner cannot grow the server's memory without bound (issue
// 14: 1,089,000 records issued and released by one owner grew
// registrar_tombstones to 1,089,000 and RSS from 26 to 280 MB). With
// --owner_tombstones the owner's oldest tombstones are dropped early: the
// real server, 1M records through one owner, tombstones and RSS bounded.

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/integration/metrics_scrape.h"
#include "tests/integration/server_process.h"
#include "tests/time_scale.h"

namespace registrar {
namespace {

using testing::ScrapeValue;
using testing::ServerProcess;

constexpr uint64_t kBatch = 1000;
constexpr uint64_t kCap = 20'000;

v1::Owner Churner() {
  v1::Owner owner;
  owner.set_tenant("acme");
  owner.set_user_id("churner");
  return owner;
}

double Value(const ServerProcess& server, const std::string& name) {
  return ScrapeValue(server, name).value_or(-1);
}

// What one churn run saw.
struct Churned {
  double rss_growth = 0;  // bytes, from 100,000 records through to the end
  double table_warm = 0;  // registrar_registry_memory_bytes at 100,000
  double table_end = 0;   // and at the end
  std::string first;      // the first ID issued
  std::string latest;     // the last one
};

// Issues and releases `total` threads of one owner, kBatch a call, on a
// fresh server started with `args`.
void Churn(uint64_t total, const std::vector<std::string>& args,
           std::unique_ptr<ServerProcess>* server_out, Churned* out) {
  ServerProcess::Options options;
  options.args = args;
  auto server = ServerProcess::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions client_options;
  client_options.target = (*server)->grpc_address();
  client_options.deadline = absl::Seconds(30);
  Client client(client_options);
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = Churner();
  cleanup.set_all_owned(true);
  double rss_warm = 0;
  for (uint64_t issued = 0; issued < total; issued += kBatch) {
    auto ids = client.IssueIds(v1::KIND_THREAD, Churner(), kBatch);
    ASSERT_TRUE(ids.ok()) << issued << ": " << ids.status();
    if (out->first.empty()) out->first = ids->front();
    out->latest = ids->back();
    auto released = client.Cleanup(cleanup);
    ASSERT_TRUE(released.ok()) << issued << ": " << released.status();
    ASSERT_EQ(released->released_size(), static_cast<int>(kBatch));
    if (issued + kBatch == 100'000) {
      rss_warm = Value(**server, "process_resident_memory_bytes");
      out->table_warm = Value(**server, "registrar_registry_memory_bytes");
    }
  }
  ASSERT_GT(rss_warm, 0);
  ASSERT_GT(out->table_warm, 0);
  out->rss_growth = Value(**server, "process_resident_memory_bytes") - rss_warm;
  out->table_end = Value(**server, "registrar_registry_memory_bytes");
  *server_out = *std::move(server);
}

TEST(TombstoneChurnTest, OneOwnersChurnKeepsTombstonesAndMemoryBounded) {
  // Sanitizer builds run several times slower (and ASan's quarantine keeps
  // freed memory, so RSS says nothing there): fewer records, counts only.
  const bool sanitized = registrar::testing::SanitizerTimeScale() > 1;
  const uint64_t total = sanitized ? 200'000 : 1'000'000;
  const std::vector<std::string> common = {"--owner_quota=1000",
                                           "--durability=none"};
  std::vector<std::string> capped = common;
  capped.push_back(absl::StrCat("--owner_tombstones=", kCap));

  std::unique_ptr<ServerProcess> server;
  Churned churned;
  ASSERT_NO_FATAL_FAILURE(Churn(total, capped, &server, &churned));
  // The excess goes at the server's next ticks: wait (bounded) until the
  // owner holds no more than the cap.
  const absl::Time until =
      absl::Now() +
      absl::Seconds(30) * registrar::testing::SanitizerTimeScale();
  double tombstones = Value(*server, "registrar_tombstones");
  while (tombstones > kCap && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(50));  // the server's tick, a child
    tombstones = Value(*server, "registrar_tombstones");
  }
  EXPECT_EQ(tombstones, kCap);
  EXPECT_EQ(Value(*server, "registrar_tombstones_dropped_early_total"),
            static_cast<double>(total - kCap));
  // Only the oldest went: the newest still answer RELEASED.
  ClientOptions client_options;
  client_options.target = server->grpc_address();
  Client client(client_options);
  v1::ValidateRequest validate;
  *validate.mutable_owner() = Churner();
  validate.add_items()->set_id(churned.first);
  validate.add_items()->set_id(churned.latest);
  auto verdicts = client.Validate(validate);
  ASSERT_TRUE(verdicts.ok()) << verdicts.status();
  ASSERT_EQ(verdicts->results_size(), 2);
  EXPECT_EQ(verdicts->results(0).verdict(), v1::VERDICT_UNKNOWN);
  EXPECT_EQ(verdicts->results(1).verdict(), v1::VERDICT_RELEASED);
  // The registry's tables (registrar_registry_memory_bytes) hold no more
  // at the end than after 100,000 records: the excess is dropped at every
  // tick (a tick's worth of churn on top).
  EXPECT_LT(churned.table_end, churned.table_warm * 1.5 + (4 << 20))
      << "tables grew from " << churned.table_warm << " to "
      << churned.table_end << " bytes";
  server.reset();
  if (sanitized) return;

  // RSS also holds RocksDB's memtables (up to 4 x 64 MiB by their own
  // settings), so the same churn on a server without the bound is RSS's
  // yardstick: there the 900,000 tombstones after the warm-up point add well
  // over 100 MiB.
  std::vector<std::string> unbounded = common;
  unbounded.push_back("--owner_tombstones=0");
  Churned baseline;
  ASSERT_NO_FATAL_FAILURE(Churn(total, unbounded, &server, &baseline));
  std::printf(
      "1,000,000 records churned by one owner, from 100,000 on: RSS +%.0f MiB "
      "and tables %.0f -> %.0f MiB with --owner_tombstones=%llu; RSS +%.0f "
      "MiB and tables %.0f -> %.0f MiB without a bound\n",
      churned.rss_growth / (1 << 20), churned.table_warm / (1 << 20),
      churned.table_end / (1 << 20), static_cast<unsigned long long>(kCap),
      baseline.rss_growth / (1 << 20), baseline.table_warm / (1 << 20),
      baseline.table_end / (1 << 20));
  // Without the bound the tables grow with every record churned...
  EXPECT_GT(baseline.table_end, baseline.table_warm * 4)
      << "the yardstick did not grow: the comparison means nothing";
  // ... and RSS by more than with it, by a good part of that (the same
  // writes fill the memtables in both runs).
  EXPECT_LT(churned.rss_growth + (baseline.table_end - baseline.table_warm) / 3,
            baseline.rss_growth);
}

}  // namespace
}  // namespace registrar
