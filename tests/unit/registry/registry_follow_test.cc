// Registry::ApplyCommitted: a follower fed every batch a writer committed
// holds what the writer holds (records, states, revisions, leases, owner
// indexes), and applying a batch twice changes nothing.

#include <algorithm>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "service/common/clock.h"
#include "service/id/id.h"
#include "service/id/id_generator.h"
#include "service/id/key_ring.h"
#include "service/model/kind.h"
#include "service/registry/registry.h"
#include "tests/unit/registry/test_store.h"

namespace registrar {
namespace {

// Keeps a copy of every batch it committed, revisions assigned.
class RecordingStore final : public testing::ForwardingStore {
 public:
  absl::Status Commit(WriteBatch* batch) override {
    absl::Status s = inner_.Commit(batch);
    if (s.ok()) {
      absl::MutexLock lock(&mu_);
      committed_.push_back(*batch);
    }
    return s;
  }
  bool defers_commits() const override { return false; }
  std::string_view name() const override { return "recording"; }

  // The batches committed since the last call.
  std::vector<WriteBatch> Take() {
    absl::MutexLock lock(&mu_);
    return std::exchange(committed_, {});
  }

 private:
  absl::Mutex mu_;
  std::vector<WriteBatch> committed_ ABSL_GUARDED_BY(mu_);
};

Owner Alice() { return {"acme", "alice"}; }
Owner Bob() { return {"acme", "bob"}; }

class RegistryFollowTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kOwnerTombstones = 10;

  RegistryFollowTest()
      : keys_(KeyRing::Generate()),
        writer_ids_(clock_, keys_, 1),
        follower_ids_(clock_, keys_, 2) {
    RegistryOptions options;
    options.shards = 4;
    options.tombstone_retention = absl::Minutes(1);
    options.owner_tombstones = kOwnerTombstones;
    writer_ = std::make_unique<Registry>(options, clock_, writer_ids_, nullptr,
                                         &writer_store_);
    follower_ = std::make_unique<Registry>(options, clock_, follower_ids_,
                                           nullptr, &follower_store_);
    EXPECT_TRUE(writer_->Recover().ok());
    EXPECT_TRUE(follower_->Recover().ok());
  }

  // Applies what the writer committed since the last call; returns the
  // events applied.
  uint64_t Follow() {
    uint64_t applied = 0;
    for (const WriteBatch& b : writer_store_.Take()) {
      applied += follower_->ApplyCommitted(b);
    }
    return applied;
  }

  // Every record of `owners` on both registries, as Describe and ListOwned
  // see them.
  void ExpectSame(const std::vector<Owner>& owners) {
    for (const Owner& owner : owners) {
      ListOwnedSpec spec;
      spec.owner = owner;
      spec.include_ended = true;
      spec.page_size = 1000;
      absl::StatusOr<ListOwnedResult> w = writer_->ListOwned(spec);
      absl::StatusOr<ListOwnedResult> f = follower_->ListOwned(spec);
      ASSERT_TRUE(w.ok()) << w.status();
      ASSERT_TRUE(f.ok()) << f.status();
      ASSERT_EQ(w->records.size(), f->records.size()) << owner.user_id;
      for (size_t i = 0; i < w->records.size(); ++i) {
        const RecordView& a = w->records[i];
        const RecordView& b = f->records[i];
        EXPECT_EQ(a.id, b.id);
        EXPECT_EQ(a.state, b.state) << FormatId(a.kind, a.id);
        EXPECT_EQ(a.revision, b.revision) << FormatId(a.kind, a.id);
        EXPECT_EQ(a.parent, b.parent);
        EXPECT_EQ(a.connection, b.connection);
        EXPECT_EQ(a.lease, b.lease);
        EXPECT_EQ(a.ended_at, b.ended_at);
        EXPECT_EQ(a.end_reason, b.end_reason);
        EXPECT_EQ(*a.labels, *b.labels);
        const std::string text = FormatId(a.kind, a.id);
        EXPECT_EQ(follower_->Validate(text, a.kind, owner, false).verdict,
                  writer_->Validate(text, a.kind, owner, false).verdict);
      }
    }
    const RegistryStats ws = writer_->Stats();
    const RegistryStats fs = follower_->Stats();
    EXPECT_TRUE(std::equal(std::begin(ws.live_records),
                           std::end(ws.live_records),
                           std::begin(fs.live_records)));
    EXPECT_EQ(ws.tombstones, fs.tombstones);
    EXPECT_EQ(ws.leases, fs.leases);
  }

  IssueSpec Spec(Kind kind, const Owner& owner, uint32_t count = 1) {
    IssueSpec spec;
    spec.kind = kind;
    spec.owner = owner;
    spec.count = count;
    return spec;
  }

  FakeClock clock_;
  KeyRing keys_;
  IdGenerator writer_ids_;
  IdGenerator follower_ids_;
  RecordingStore writer_store_;
  RecordingStore follower_store_;
  std::unique_ptr<Registry> writer_;
  std::unique_ptr<Registry> follower_;
};

TEST_F(RegistryFollowTest, FollowerHoldsWhatTheWriterCommitted) {
  absl::StatusOr<std::vector<std::string>> threads =
      writer_->Issue(Spec(Kind::kThread, Alice(), 3));
  ASSERT_TRUE(threads.ok()) << threads.status();
  OpenContextSpec ctx;
  ctx.owner = Alice();
  ctx.thread_id = (*threads)[0];
  ctx.labels = {{"team", "red"}};
  ASSERT_TRUE(writer_->OpenContext(ctx).ok());
  ASSERT_TRUE(writer_->Issue(Spec(Kind::kRun, Bob(), 2)).ok());
  EXPECT_GT(Follow(), 0u);
  ExpectSame({Alice(), Bob()});

  // Ends, with their cascades: the thread's run and request end too.
  CleanupTarget target;
  target.ids = {(*threads)[0], (*threads)[1]};
  absl::StatusOr<CleanupResult> cleaned =
      writer_->Cleanup(Alice(), target, "done");
  ASSERT_TRUE(cleaned.ok()) << cleaned.status();
  ASSERT_EQ(cleaned->released.size(), 4u);
  EXPECT_EQ(Follow(), 4u);
  ExpectSame({Alice(), Bob()});
  EXPECT_EQ(
      follower_->Validate((*threads)[0], Kind::kThread, Alice(), false).verdict,
      Verdict::kReleased);
}

TEST_F(RegistryFollowTest, LeasesBindAndEndOnTheFollower) {
  absl::StatusOr<LeaseGrant> lease =
      writer_->GrantLease("gateway-1", absl::Seconds(10));
  ASSERT_TRUE(lease.ok()) << lease.status();
  IssueSpec conn = Spec(Kind::kConnection, Alice(), 2);
  conn.lease_id = lease->lease_id;
  absl::StatusOr<std::vector<std::string>> conns = writer_->Issue(conn);
  ASSERT_TRUE(conns.ok()) << conns.status();
  IssueSpec run = Spec(Kind::kRun, Alice());
  run.connection_id = (*conns)[0];
  absl::StatusOr<std::vector<std::string>> runs = writer_->Issue(run);
  ASSERT_TRUE(runs.ok()) << runs.status();
  Follow();
  ExpectSame({Alice()});
  EXPECT_EQ(follower_->Stats().leases, 1u);

  // Past the lease's TTL the follower still holds it: only the writer
  // expires leases, and it renews them.
  clock_.Advance(absl::Seconds(8));
  ASSERT_TRUE(writer_->KeepAlive(lease->lease_id).ok());
  clock_.Advance(absl::Seconds(8));
  EXPECT_EQ(Follow(), 0u);  // a renewal writes nothing
  ExpectSame({Alice()});

  // Revoking ends both connections and the run opened through one.
  absl::StatusOr<std::vector<std::string>> ended =
      writer_->RevokeLease(lease->lease_id);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->size(), 3u);
  EXPECT_EQ(Follow(), 3u);
  ExpectSame({Alice()});
  EXPECT_EQ(follower_->Stats().leases, 0u);
  EXPECT_EQ(follower_->Validate((*runs)[0], Kind::kRun, Alice(), false).verdict,
            writer_->Validate((*runs)[0], Kind::kRun, Alice(), false).verdict);
}

TEST_F(RegistryFollowTest, ExpiryAndTombstoneDropsFollow) {
  absl::StatusOr<LeaseGrant> lease =
      writer_->GrantLease("gateway-1", absl::Seconds(5));
  ASSERT_TRUE(lease.ok()) << lease.status();
  IssueSpec conn = Spec(Kind::kConnection, Bob());
  conn.lease_id = lease->lease_id;
  absl::StatusOr<std::vector<std::string>> conns = writer_->Issue(conn);
  ASSERT_TRUE(conns.ok()) << conns.status();
  ASSERT_TRUE(writer_->Issue(Spec(Kind::kThread, Bob(), 5)).ok());
  Follow();

  clock_.Advance(absl::Seconds(6));
  EXPECT_EQ(writer_->Tick().size(), 1u);
  EXPECT_EQ(Follow(), 1u);
  ExpectSame({Bob()});
  EXPECT_EQ(
      follower_->Validate((*conns)[0], Kind::kConnection, Bob(), false).verdict,
      Verdict::kExpired);

  // Past retention the writer drops the tombstone; so does the follower.
  clock_.Advance(absl::Minutes(2));
  writer_->Tick();
  Follow();
  ExpectSame({Bob()});
  EXPECT_EQ(follower_->Stats().tombstones, 0u);
  EXPECT_EQ(
      follower_->Validate((*conns)[0], Kind::kConnection, Bob(), false).verdict,
      writer_->Validate((*conns)[0], Kind::kConnection, Bob(), false).verdict);
}

TEST_F(RegistryFollowTest, ApplyingTwiceChangesNothing) {
  absl::StatusOr<LeaseGrant> lease =
      writer_->GrantLease("gateway-1", absl::Seconds(10));
  ASSERT_TRUE(lease.ok()) << lease.status();
  IssueSpec conn = Spec(Kind::kConnection, Alice());
  conn.lease_id = lease->lease_id;
  absl::StatusOr<std::vector<std::string>> conns = writer_->Issue(conn);
  ASSERT_TRUE(conns.ok()) << conns.status();
  CleanupTarget target;
  target.type = CleanupTarget::Type::kConnection;
  target.connection_id = (*conns)[0];
  ASSERT_TRUE(writer_->Cleanup(Alice(), target, "").ok());
  std::vector<WriteBatch> batches = writer_store_.Take();
  uint64_t first = 0;
  for (const WriteBatch& b : batches) first += follower_->ApplyCommitted(b);
  EXPECT_EQ(first, 2u);
  uint64_t again = 0;
  for (const WriteBatch& b : batches) again += follower_->ApplyCommitted(b);
  EXPECT_EQ(again, 0u);
  ExpectSame({Alice()});
}

TEST_F(RegistryFollowTest, EarlyTombstoneDropsFollow) {
  // Bob churns 30 threads, past the 10 tombstones an owner may keep; Alice
  // ends 3. At the next tick the writer drops Bob's 20 oldest tombstones,
  // long before retention; so does the follower.
  absl::StatusOr<std::vector<std::string>> bob =
      writer_->Issue(Spec(Kind::kThread, Bob(), 30));
  ASSERT_TRUE(bob.ok()) << bob.status();
  absl::StatusOr<std::vector<std::string>> alice =
      writer_->Issue(Spec(Kind::kThread, Alice(), 3));
  ASSERT_TRUE(alice.ok()) << alice.status();
  CleanupTarget all;
  all.type = CleanupTarget::Type::kAllOwned;
  ASSERT_TRUE(writer_->Cleanup(Bob(), all, "").ok());
  ASSERT_TRUE(writer_->Cleanup(Alice(), all, "").ok());
  Follow();
  EXPECT_EQ(writer_->Stats().tombstones, 33u);

  writer_->Tick();  // no time passed: only the excess goes
  Follow();
  ExpectSame({Alice(), Bob()});
  EXPECT_EQ(writer_->Stats().tombstones, 13u);
  EXPECT_EQ(writer_->Stats().tombstones_dropped_early, 20u);
  EXPECT_EQ(follower_->Stats().tombstones, 13u);
  for (int i = 0; i < 30; ++i) {
    const Verdict expected = i < 20 ? Verdict::kUnknown : Verdict::kReleased;
    EXPECT_EQ(writer_->Validate((*bob)[i], Kind::kThread, Bob(), false).verdict,
              expected)
        << i;
  }
  for (const std::string& id : *alice) {
    EXPECT_EQ(writer_->Validate(id, Kind::kThread, Alice(), false).verdict,
              Verdict::kReleased);
  }
  // Nothing more to drop until retention.
  writer_->Tick();
  EXPECT_EQ(writer_->Stats().tombstones_dropped_early, 20u);
}

}  // namespace
}  // namespace registrar
