// Churn by one owner cannot grow the server's memory without bound (issue
// 14: 1,089,000 records issued and released by one owner grew
// registrar_tombstones to 1,089,000 and RSS from 26 to 280 MB). With
// --owner_tombstones the owner's oldest tombstones are dropped early: the
// real server, 1M records through one owner, tombstones and RSS bounded.

#include <cstdint>
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

double Value(const ServerProcess& server, const std::string& name) {
  return ScrapeValue(server, name).value_or(-1);
}

TEST(TombstoneChurnTest, OneOwnersChurnKeepsTombstonesAndMemoryBounded) {
  // Sanitizer builds run several times slower (and ASan's quarantine keeps
  // freed memory, so RSS says nothing there): fewer records, counts only.
  const bool sanitized = registrar::testing::SanitizerTimeScale() > 1;
  const uint64_t total = sanitized ? 200'000 : 1'000'000;

  ServerProcess::Options options;
  options.args = {"--owner_quota=1000",
                  absl::StrCat("--owner_tombstones=", kCap),
                  "--durability=none"};
  auto server = ServerProcess::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions client_options;
  client_options.target = (*server)->grpc_address();
  client_options.deadline = absl::Seconds(30);
  Client client(client_options);
  v1::Owner owner;
  owner.set_tenant("acme");
  owner.set_user_id("churner");
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = owner;
  cleanup.set_all_owned(true);

  double rss_warm = 0;
  std::string first;   // the first ID issued
  std::string latest;  // the last one
  for (uint64_t issued = 0; issued < total; issued += kBatch) {
    auto ids = client.IssueIds(v1::KIND_THREAD, owner, kBatch);
    ASSERT_TRUE(ids.ok()) << issued << ": " << ids.status();
    if (first.empty()) first = ids->front();
    latest = ids->back();
    auto released = client.Cleanup(cleanup);
    ASSERT_TRUE(released.ok()) << issued << ": " << released.status();
    ASSERT_EQ(released->released_size(), static_cast<int>(kBatch));
    if (issued + kBatch == 100'000) {
      rss_warm = Value(**server, "process_resident_memory_bytes");
    }
  }

  // The excess goes at the server's next ticks: wait (bounded) until the
  // owner holds no more than the cap.
  const absl::Time until =
      absl::Now() +
      absl::Seconds(30) * registrar::testing::SanitizerTimeScale();
  double tombstones = Value(**server, "registrar_tombstones");
  while (tombstones > kCap && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(50));  // the server's tick, a child
    tombstones = Value(**server, "registrar_tombstones");
  }
  EXPECT_EQ(tombstones, kCap);
  EXPECT_EQ(Value(**server, "registrar_tombstones_dropped_early_total"),
            static_cast<double>(total - kCap));
  // Only the oldest went: the newest still answer RELEASED.
  v1::ValidateRequest validate;
  *validate.mutable_owner() = owner;
  validate.add_items()->set_id(first);
  validate.add_items()->set_id(latest);
  auto verdicts = client.Validate(validate);
  ASSERT_TRUE(verdicts.ok()) << verdicts.status();
  ASSERT_EQ(verdicts->results_size(), 2);
  EXPECT_EQ(verdicts->results(0).verdict(), v1::VERDICT_UNKNOWN);
  EXPECT_EQ(verdicts->results(1).verdict(), v1::VERDICT_RELEASED);

  if (!sanitized) {
    const double rss_end = Value(**server, "process_resident_memory_bytes");
    ASSERT_GT(rss_warm, 0);
    // Unbounded, the 900,000 records after the warm-up point would hold
    // about 250 bytes each as tombstones (over 200 MB); bounded, memory
    // stays near what it was with 100,000 through.
    EXPECT_LT(rss_end - rss_warm, 48.0 * 1024 * 1024)
        << "RSS grew from " << rss_warm << " to " << rss_end << " bytes";
  }
}

}  // namespace
}  // namespace registrar
