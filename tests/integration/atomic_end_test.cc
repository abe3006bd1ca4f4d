// A lease's end is one atomic change: kill -9 while RevokeLease of 4,000
// connections over 2,000 owners is being written leaves, after a restart,
// either every connection released and the lease gone, or none released
// and the lease alive. (Before the one write path the lease was ended shard
// by shard: 234-2,074 of 4,000 were found released, the lease alive.)

#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/integration/data_dir.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_util.h"

namespace registrar {
namespace {

namespace v1 = ::registrar::v1;
using testing::KillNine;
using testing::MakeOwner;
using testing::OptionsFor;
using testing::StartOrFail;
using testing::StatusText;
using testing::TestDir;

constexpr int kOwners = 2000;
constexpr int kPerOwner = 2;
constexpr int kSetupThreads = 8;

v1::Owner OwnerN(int n) { return MakeOwner("atomic", absl::StrCat("u", n)); }

// Bytes in the data dir's RocksDB write-ahead logs.
uint64_t WalBytes(const std::string& data_dir) {
  uint64_t total = 0;
  for (const auto& entry : std::filesystem::directory_iterator(data_dir)) {
    if (entry.path().extension() == ".log") total += entry.file_size();
  }
  return total;
}

// One attempt: the kill lands once the WAL has grown by `kill_after` bytes
// since the revocation was sent (0: at its first byte).
void RevokeAndKill(uint64_t kill_after) {
  SCOPED_TRACE(absl::StrCat("kill after ", kill_after, " WAL bytes"));
  TestDir dir(absl::StrCat("atomic-end-", kill_after));
  auto server = StartOrFail(OptionsFor(dir));
  ASSERT_NE(server, nullptr);
  auto client = testing::MakeClient(*server, absl::Seconds(30));
  v1::GrantLeaseRequest grant;
  grant.set_holder("gw-doomed");
  grant.set_ttl_seconds(3600);
  auto lease = client->GrantLease(grant);
  ASSERT_TRUE(lease.ok()) << StatusText(lease.status());

  std::vector<std::vector<std::string>> conns(kOwners);
  std::atomic<int> failed{0};
  std::vector<std::thread> setup;
  for (int t = 0; t < kSetupThreads; ++t) {
    setup.emplace_back([&, t] {
      auto c = testing::MakeClient(*server, absl::Seconds(30));
      IssueOptions bind;
      bind.lease_id = lease->lease_id();
      for (int o = t; o < kOwners; o += kSetupThreads) {
        auto ids = c->IssueIds(v1::KIND_CONNECTION, OwnerN(o), kPerOwner, bind);
        if (!ids.ok()) {
          ++failed;
          return;
        }
        conns[o] = *ids;
      }
    });
  }
  for (std::thread& t : setup) t.join();
  ASSERT_EQ(failed.load(), 0);

  // The revocation, and the kill while it is being written.
  const uint64_t wal_before = WalBytes(dir.data_dir());
  std::thread revoker([&] {
    v1::RevokeLeaseRequest revoke;
    revoke.set_lease_id(lease->lease_id());
    (void)client->RevokeLease(revoke);  // killed meanwhile, or answered
  });
  // A real child's file: polled, with a bound.
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (WalBytes(dir.data_dir()) <= wal_before + kill_after &&
         absl::Now() < deadline) {
    std::this_thread::yield();
  }
  ASSERT_NO_FATAL_FAILURE(KillNine(*server));
  revoker.join();

  server = StartOrFail(OptionsFor(dir));
  ASSERT_NE(server, nullptr);
  client = testing::MakeClient(*server, absl::Seconds(30));
  v1::KeepAliveRequest keep;
  keep.set_lease_id(lease->lease_id());
  const absl::StatusCode lease_after = client->KeepAlive(keep).status().code();
  int live = 0, released = 0, other = 0;
  for (int o = 0; o < kOwners; ++o) {
    ASSERT_EQ(conns[o].size(), static_cast<size_t>(kPerOwner));
    for (const std::string& id : conns[o]) {
      const v1::Verdict v = testing::VerdictOf(*client, id, OwnerN(o));
      live += v == v1::VERDICT_VALID;
      released += v == v1::VERDICT_RELEASED;
      other += v != v1::VERDICT_VALID && v != v1::VERDICT_RELEASED;
    }
  }
  std::cout << "[          ] killed after " << kill_after
            << " WAL bytes: " << released << " released, " << live
            << " live, lease " << absl::StatusCodeToString(lease_after)
            << "\n";
  EXPECT_EQ(other, 0);
  if (lease_after == absl::StatusCode::kOk) {
    EXPECT_EQ(live, kOwners * kPerOwner) << "lease alive, some released";
  } else {
    EXPECT_EQ(lease_after, absl::StatusCode::kNotFound);
    EXPECT_EQ(released, kOwners * kPerOwner) << "lease gone, some live";
  }
  EXPECT_EQ(testing::StopServer(*server), 0) << server->Log();
}

TEST(AtomicEndTest, KillNineDuringRevokeLeaseLeavesAllOrNothing) {
  RevokeAndKill(0);
  RevokeAndKill(64 << 10);
}

}  // namespace
}  // namespace registrar
