// The one write path (service/registry/shard.h) against a store whose
// commits take 5 ms and complete on its own thread, as a remote store's
// would: changes of different shards overlap in the store instead of
// queueing behind each other's commits, nothing blocks or deadlocks, and a
// commit that fails leaves no trace in memory.

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/clock.h"
#include "service/id/id_generator.h"
#include "service/id/key_ring.h"
#include "service/registry/registry.h"
#include "tests/unit/registry/test_store.h"

namespace registrar {
namespace {

using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAreArray;

class WritePathTest : public ::testing::Test {
 protected:
  WritePathTest()
      : store_(absl::Milliseconds(5)),
        keys_(KeyRing::Generate()),
        ids_(clock_, keys_, 0) {
    registry_ = std::make_unique<Registry>(RegistryOptions{}, clock_, ids_,
                                           nullptr, &store_);
    EXPECT_TRUE(registry_->Recover().ok());
  }

  static Owner OwnerN(int n) { return {"acme", absl::StrCat("user-", n)}; }

  std::vector<std::string> IssueOk(const Owner& owner, Kind kind,
                                   uint32_t count = 1,
                                   std::string_view lease = "") {
    IssueSpec spec;
    spec.kind = kind;
    spec.owner = owner;
    spec.count = count;
    spec.lease_id = lease;
    auto ids = registry_->Issue(spec);
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<std::string>{};
  }

  Verdict VerdictOf(const std::string& id, const Owner& owner) {
    return registry_->Validate(id, Kind::kUnspecified, owner, false).verdict;
  }

  FakeClock clock_;
  testing::DelayStore store_;
  KeyRing keys_;
  IdGenerator ids_;
  std::unique_ptr<Registry> registry_;
};

// 16 callers, each its own owner (so, mostly, its own shard), each running
// Issue, OpenContext, Cleanup, GrantLease, a connection on the lease and
// RevokeLease in a loop. Were any of them to hold a lock across its commit,
// the store would only ever see one batch of that kind at a time.
TEST_F(WritePathTest, ChangesOfDifferentShardsOverlapInTheStore) {
  constexpr int kCallers = 16;
  constexpr int kRounds = 8;
  std::atomic<int> failures{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&, c] {
      const Owner owner = OwnerN(c);
      for (int round = 0; round < kRounds; ++round) {
        IssueSpec spec;
        spec.kind = Kind::kThread;
        spec.owner = owner;
        spec.count = 3;
        auto threads = registry_->Issue(spec);
        OpenContextSpec open;
        open.owner = owner;
        auto ctx = registry_->OpenContext(open);
        CleanupTarget target;
        if (threads.ok()) {
          for (const std::string& id : *threads) target.ids.push_back(id);
        }
        auto cleaned = registry_->Cleanup(owner, target, "");
        auto lease = registry_->GrantLease(absl::StrCat("gw-", c),
                                           absl::Seconds(60));
        absl::StatusOr<std::vector<std::string>> conn =
            absl::UnknownError("no lease");
        absl::StatusOr<std::vector<std::string>> revoked =
            absl::UnknownError("no lease");
        if (lease.ok()) {
          IssueSpec bound;
          bound.kind = Kind::kConnection;
          bound.owner = owner;
          bound.lease_id = lease->lease_id;
          conn = registry_->Issue(bound);
          revoked = registry_->RevokeLease(lease->lease_id);
        }
        if (!threads.ok() || !ctx.ok() || !cleaned.ok() ||
            cleaned->released.size() != 3 || !lease.ok() || !conn.ok() ||
            !revoked.ok() || revoked->size() != 1) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(failures.load(), 0);
  const testing::DelayStore::Groups g = store_.groups();
  std::cout << "[          ] " << g.groups << " groups; largest " << g.largest
            << " batches (issuing " << g.largest_issuing << ", ending "
            << g.largest_ending << ", leases " << g.largest_leases << ")\n";
  EXPECT_GT(g.largest_issuing, 1u) << "Issue commits never overlapped";
  EXPECT_GT(g.largest_ending, 1u) << "Cleanup/revoke commits never overlapped";
  EXPECT_GT(g.largest_leases, 1u) << "lease commits never overlapped";
  // Each caller's six changes a round cannot share a group (each waits for
  // the one before), so without overlap there would be at least this many.
  EXPECT_LT(g.groups, static_cast<uint64_t>(kCallers * kRounds * 6));
}

TEST_F(WritePathTest, FailedCommitsLeaveMemoryUnchanged) {
  const Owner alice = OwnerN(1);
  const std::vector<std::string> threads = IssueOk(alice, Kind::kThread, 2);
  ASSERT_THAT(threads, SizeIs(2));
  auto lease = registry_->GrantLease("gw", absl::Seconds(60));
  ASSERT_TRUE(lease.ok()) << lease.status();
  const std::vector<std::string> conns =
      IssueOk(alice, Kind::kConnection, 2, lease->lease_id);
  ASSERT_THAT(conns, SizeIs(2));
  const RegistryStats before = registry_->Stats();

  store_.FailCommits(true);
  // Issue and OpenContext: nothing recorded, nothing counted.
  IssueSpec spec;
  spec.kind = Kind::kThread;
  spec.owner = alice;
  spec.count = 5;
  EXPECT_EQ(registry_->Issue(spec).status().code(),
            absl::StatusCode::kUnavailable);
  OpenContextSpec open;
  open.owner = alice;
  open.thread_id = threads[0];
  EXPECT_EQ(registry_->OpenContext(open).status().code(),
            absl::StatusCode::kUnavailable);
  // Cleanup of everything owned: nothing ended.
  CleanupTarget all;
  all.type = CleanupTarget::Type::kAllOwned;
  EXPECT_EQ(registry_->Cleanup(alice, all, "").status().code(),
            absl::StatusCode::kUnavailable);
  // The lease: neither revoked nor its connections ended.
  EXPECT_EQ(registry_->RevokeLease(lease->lease_id).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(registry_->GrantLease("gw-2", absl::Seconds(60)).status().code(),
            absl::StatusCode::kUnavailable);

  const RegistryStats after = registry_->Stats();
  for (int k = 0; k < kNumKinds; ++k) {
    EXPECT_EQ(after.live_records[k], before.live_records[k]) << "kind " << k;
  }
  EXPECT_EQ(after.tombstones, before.tombstones);
  EXPECT_EQ(after.leases, before.leases);
  ListOwnedSpec list;
  list.owner = alice;
  list.include_ended = true;
  auto listed = registry_->ListOwned(list);
  ASSERT_TRUE(listed.ok());
  EXPECT_THAT(listed->records, SizeIs(4));
  for (const std::string& id : threads) {
    EXPECT_EQ(VerdictOf(id, alice), Verdict::kValid) << id;
  }
  for (const std::string& id : conns) {
    EXPECT_EQ(VerdictOf(id, alice), Verdict::kValid) << id;
  }
  EXPECT_TRUE(registry_->KeepAlive(lease->lease_id).ok());

  // Nothing half-done was left behind: the same changes now go through.
  store_.FailCommits(false);
  auto revoked = registry_->RevokeLease(lease->lease_id);
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_THAT(*revoked, UnorderedElementsAreArray(conns));
  auto cleaned = registry_->Cleanup(alice, all, "");
  ASSERT_TRUE(cleaned.ok()) << cleaned.status();
  EXPECT_THAT(cleaned->released, UnorderedElementsAreArray(threads));
  EXPECT_THAT(cleaned->already_ended, IsEmpty());
}

// Two Cleanups of the same connection at once: each record is reported
// released exactly once, by one of them; the other waits for that commit
// and ends nothing.
TEST_F(WritePathTest, ConcurrentCleanupsEndEachRecordOnce) {
  const Owner alice = OwnerN(2);
  for (int round = 0; round < 20; ++round) {
    const std::string conn = IssueOk(alice, Kind::kConnection)[0];
    OpenContextSpec open;
    open.owner = alice;
    open.connection_id = conn;
    ASSERT_TRUE(registry_->OpenContext(open).ok());
    CleanupTarget target;
    target.type = CleanupTarget::Type::kConnection;
    target.connection_id = conn;
    absl::StatusOr<CleanupResult> a, b;
    std::thread ta([&] { a = registry_->Cleanup(alice, target, ""); });
    std::thread tb([&] { b = registry_->Cleanup(alice, target, ""); });
    ta.join();
    tb.join();
    ASSERT_TRUE(a.ok()) << a.status();
    ASSERT_TRUE(b.ok()) << b.status();
    // conn + run + request (the thread outlives the connection).
    EXPECT_EQ(a->released.size() + b->released.size(), 3u);
    EXPECT_TRUE(a->released.empty() || b->released.empty());
    const CleanupResult& second = a->released.empty() ? *a : *b;
    EXPECT_THAT(second.already_ended, UnorderedElementsAreArray({conn}));
  }
}

}  // namespace
}  // namespace registrar
