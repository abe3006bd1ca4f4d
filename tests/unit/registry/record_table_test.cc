#include "service/registry/record_table.h"

#include <algorithm>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace registrar {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using Ref = RecordTable::Ref;

constexpr int64_t kBaseMs = 1'700'000'000'000;

// IDs in time order: `n` milliseconds after kBaseMs.
Id128 IdAt(int64_t n, uint32_t seq = 0) {
  return PackId(IdFields{.unix_ms = kBaseMs + n, .seq = seq, .tag = 42});
}

const Owner kAlice{"acme", "alice"};
const Owner kBob{"acme", "bob"};

RecordView Rec(Id128 id, Kind kind, const Owner& owner, Id128 parent = {},
               Id128 connection = {}, Id128 lease = {}) {
  RecordView v;
  v.id = id;
  v.kind = kind;
  v.owner = owner;
  v.parent = parent;
  v.connection = connection;
  v.lease = lease;
  v.labels = EmptyLabels();
  v.state = State::kLive;
  v.revision = 1;
  return v;
}

RecordView Ended(RecordView v, int64_t ended_ms, std::string reason) {
  v.state = State::kReleased;
  v.ended_at = absl::FromUnixMillis(ended_ms);
  v.end_reason = std::move(reason);
  return v;
}

std::vector<Id128> Cascade(const RecordTable& t, Id128 root) {
  std::vector<Ref> refs;
  absl::flat_hash_set<Ref> seen;
  t.CollectCascade(t.Find(root), &refs, &seen);
  std::vector<Id128> ids;
  for (Ref r : refs) ids.push_back(t.id(r));
  return ids;
}

std::vector<Id128> Owned(const RecordTable& t, const Owner& o,
                         Id128 after = {}) {
  std::vector<Id128> ids;
  t.ForEachOwned(t.FindOwner(o), after, [&](Ref r) {
    ids.push_back(t.id(r));
    return true;
  });
  return ids;
}

auto reason = std::make_shared<const std::string>("test");

TEST(RecordTableTest, InsertFindAndViewRoundTrip) {
  RecordTable t;
  const Id128 conn = IdAt(1), thread = IdAt(2), run = IdAt(3);
  const Id128 lease = IdAt(0, 7);
  t.Insert(Rec(conn, Kind::kConnection, kAlice, {}, {}, lease));
  RecordView th = Rec(thread, Kind::kThread, kAlice, {}, conn);
  th.labels = std::make_shared<const Labels>(Labels{{"k", "v"}});
  t.Insert(th);
  t.Insert(Rec(run, Kind::kRun, kAlice, thread, conn));

  const Ref r = t.Find(run);
  ASSERT_NE(r, RecordTable::kNone);
  const RecordView v = t.View(r);
  EXPECT_EQ(v.id, run);
  EXPECT_EQ(v.kind, Kind::kRun);
  EXPECT_EQ(v.owner, kAlice);
  EXPECT_EQ(v.parent, thread);
  EXPECT_EQ(v.connection, conn);
  EXPECT_EQ(v.state, State::kLive);
  EXPECT_EQ(v.created_at, absl::FromUnixMillis(kBaseMs + 3));
  EXPECT_EQ(t.View(t.Find(conn)).lease, lease);
  EXPECT_EQ(t.lease_of(t.Find(conn)), lease);
  EXPECT_THAT(*t.View(t.Find(thread)).labels,
              ElementsAre(std::pair<std::string, std::string>{"k", "v"}));
  EXPECT_THAT(*v.labels, IsEmpty());
  EXPECT_EQ(t.Find(IdAt(99)), RecordTable::kNone);
  EXPECT_EQ(t.live_count(t.FindOwner(kAlice)), 3u);
  EXPECT_EQ(t.FindOwner(kBob), RecordTable::kNone);
}

TEST(RecordTableTest, HoldsAnyFindsHeldIdsOnEveryPath) {
  RecordTable t;
  const Id128 a = IdAt(5), b = IdAt(10), c = IdAt(10, 1);
  t.Insert(Rec(a, Kind::kThread, kAlice));
  t.Insert(Rec(b, Kind::kThread, kAlice));
  t.Insert(Rec(c, Kind::kThread, kBob));
  // Above everything ever added and increasing: no lookup needed.
  EXPECT_FALSE(t.HoldsAny({IdAt(11), IdAt(12)}));
  EXPECT_FALSE(t.HoldsAny({}));
  // Not above the high-water mark: looked up one by one.
  EXPECT_TRUE(t.HoldsAny({IdAt(11), b}));
  EXPECT_TRUE(t.HoldsAny({a}));
  EXPECT_TRUE(t.HoldsAny({c}));
  Id128 same_hi_other_lo = b;
  same_hi_other_lo.lo ^= 1;
  EXPECT_FALSE(t.HoldsAny({same_hi_other_lo}));
  // Not increasing, although every one is above the mark.
  EXPECT_FALSE(t.HoldsAny({IdAt(12), IdAt(11)}));
  // Removing a record does not lower the mark; the lookup then says no.
  t.Remove(t.Find(b));
  EXPECT_FALSE(t.HoldsAny({b}));
  EXPECT_TRUE(t.HoldsAny({c}));
}

TEST(RecordTableTest, FindLiveOwnedChecksKindOwnerAndState) {
  RecordTable t;
  const Id128 thread = IdAt(1);
  t.Insert(Rec(thread, Kind::kThread, kAlice));
  t.Insert(Rec(IdAt(2), Kind::kThread, kBob));
  const auto alice = t.FindOwner(kAlice), bob = t.FindOwner(kBob);
  EXPECT_NE(t.FindLiveOwned(thread, Kind::kThread, alice), RecordTable::kNone);
  EXPECT_EQ(t.FindLiveOwned(thread, Kind::kRun, alice), RecordTable::kNone);
  EXPECT_EQ(t.FindLiveOwned(thread, Kind::kThread, bob), RecordTable::kNone);
  t.End(t.Find(thread), State::kReleased, kBaseMs + 5, reason, 2);
  EXPECT_EQ(t.FindLiveOwned(thread, Kind::kThread, alice), RecordTable::kNone);
  EXPECT_EQ(t.live_count(alice), 0u);
}

TEST(RecordTableTest, CascadeFollowsParentsAndConnectionButNotThreads) {
  RecordTable t;
  const Id128 conn = IdAt(1), thread = IdAt(2), run1 = IdAt(3), req1 = IdAt(4),
              run2 = IdAt(5), req2 = IdAt(6);
  t.Insert(Rec(conn, Kind::kConnection, kAlice));
  t.Insert(Rec(thread, Kind::kThread, kAlice, {}, conn));
  t.Insert(Rec(run1, Kind::kRun, kAlice, thread, conn));
  t.Insert(Rec(req1, Kind::kRequest, kAlice, run1, conn));
  t.Insert(Rec(run2, Kind::kRun, kAlice, thread));  // not via the connection
  t.Insert(Rec(req2, Kind::kRequest, kAlice, run2));

  EXPECT_THAT(Cascade(t, conn), UnorderedElementsAre(conn, run1, req1));
  EXPECT_THAT(Cascade(t, thread),
              UnorderedElementsAre(thread, run1, req1, run2, req2));
  EXPECT_THAT(Cascade(t, run2), UnorderedElementsAre(run2, req2));
  // Ended records stop the walk.
  t.End(t.Find(run1), State::kReleased, kBaseMs + 9, reason, 2);
  EXPECT_THAT(Cascade(t, conn), UnorderedElementsAre(conn, req1));
  EXPECT_THAT(Cascade(t, run1), IsEmpty());
}

TEST(RecordTableTest, OwnedRecordsComeInIdOrderAndPageAfterAnId) {
  RecordTable t;
  // Inserted out of order; listed in ID order.
  for (int n : {5, 1, 3, 2, 4}) t.Insert(Rec(IdAt(n), Kind::kThread, kAlice));
  t.Insert(Rec(IdAt(6), Kind::kThread, kBob));
  EXPECT_THAT(Owned(t, kAlice),
              ElementsAre(IdAt(1), IdAt(2), IdAt(3), IdAt(4), IdAt(5)));
  EXPECT_THAT(Owned(t, kAlice, IdAt(3)), ElementsAre(IdAt(4), IdAt(5)));
  // `after` need not be a held ID.
  EXPECT_THAT(Owned(t, kAlice, IdAt(2, 1)),
              ElementsAre(IdAt(3), IdAt(4), IdAt(5)));
  EXPECT_THAT(Owned(t, kBob), ElementsAre(IdAt(6)));
}

TEST(RecordTableTest, TombstonesDropInEndOrderAndFreeTheOwner) {
  RecordTable t;
  const Id128 a = IdAt(1), b = IdAt(2);
  t.Insert(Rec(a, Kind::kThread, kAlice));
  t.Insert(Rec(b, Kind::kThread, kAlice));
  t.End(t.Find(b), State::kExpired, kBaseMs + 10, reason, 3);
  t.End(t.Find(a), State::kReleased, kBaseMs + 20, reason, 4);
  const RecordView vb = t.View(t.Find(b));
  EXPECT_EQ(vb.state, State::kExpired);
  EXPECT_EQ(vb.ended_at, absl::FromUnixMillis(kBaseMs + 10));
  EXPECT_EQ(vb.end_reason, "test");
  EXPECT_EQ(vb.revision, 3u);

  EXPECT_THAT(t.DueTombstones(kBaseMs + 15), ElementsAre(b));
  EXPECT_EQ(t.DropTombstones(t.DueTombstones(kBaseMs + 15)), 1u);
  EXPECT_EQ(t.Find(b), RecordTable::kNone);
  EXPECT_NE(t.Find(a), RecordTable::kNone);
  EXPECT_THAT(Owned(t, kAlice), ElementsAre(a));
  EXPECT_EQ(t.DropTombstones(t.DueTombstones(kBaseMs + 20)), 1u);
  EXPECT_EQ(t.FindOwner(kAlice), RecordTable::kNone);
  EXPECT_EQ(t.size(), 0u);
}

TEST(RecordTableTest, ThreadKeepsItsConnectionIdAfterTheConnectionIsDropped) {
  RecordTable t;
  const Id128 conn = IdAt(1), thread = IdAt(2), run = IdAt(3);
  t.Insert(Rec(conn, Kind::kConnection, kAlice));
  t.Insert(Rec(thread, Kind::kThread, kAlice, {}, conn));
  t.Insert(Rec(run, Kind::kRun, kAlice, thread, conn));
  // The connection ends with its run; the thread lives on.
  t.End(t.Find(conn), State::kReleased, kBaseMs + 10, reason, 4);
  t.End(t.Find(run), State::kReleased, kBaseMs + 10, reason, 4);
  ASSERT_EQ(t.DropTombstones(t.DueTombstones(kBaseMs + 10)), 2u);
  EXPECT_EQ(t.Find(conn), RecordTable::kNone);
  EXPECT_EQ(t.MemoryUsage().ghosts, 1u);
  EXPECT_EQ(t.View(t.Find(thread)).connection, conn);
  EXPECT_THAT(Cascade(t, thread), ElementsAre(thread));

  // When the thread goes too, so does the ghost.
  t.End(t.Find(thread), State::kReleased, kBaseMs + 20, reason, 5);
  ASSERT_EQ(t.DropTombstones(t.DueTombstones(kBaseMs + 20)), 1u);
  EXPECT_EQ(t.MemoryUsage().ghosts, 0u);
  EXPECT_EQ(t.size(), 0u);
}

TEST(RecordTableTest, FreedNodesAreReusedWithoutStaleLinks) {
  RecordTable t;
  const Id128 thread = IdAt(1), run = IdAt(2);
  t.Insert(Rec(thread, Kind::kThread, kAlice));
  t.Insert(Rec(run, Kind::kRun, kAlice, thread));
  t.End(t.Find(run), State::kReleased, kBaseMs + 5, reason, 3);
  ASSERT_EQ(t.DropTombstones(t.DueTombstones(kBaseMs + 5)), 1u);
  const uint64_t nodes = t.MemoryUsage().nodes;
  // The freed node is reused by a new record with no links of the old one.
  const Id128 other = IdAt(3);
  t.Insert(Rec(other, Kind::kThread, kBob));
  EXPECT_EQ(t.MemoryUsage().nodes, nodes);
  const RecordView v = t.View(t.Find(other));
  EXPECT_TRUE(v.parent.is_zero());
  EXPECT_TRUE(v.connection.is_zero());
  EXPECT_EQ(v.owner, kBob);
  EXPECT_THAT(Cascade(t, thread), ElementsAre(thread));
}

TEST(RecordTableTest, RestoreLinksChildrenLoadedBeforeTheirParents) {
  RecordTable t;
  const Id128 conn = IdAt(1), thread = IdAt(2), run = IdAt(3), req = IdAt(4);
  // Any load order works: links are resolved at the end.
  t.Restore(Rec(req, Kind::kRequest, kAlice, run, conn));
  t.Restore(Rec(run, Kind::kRun, kAlice, thread, conn));
  t.Restore(Rec(conn, Kind::kConnection, kAlice));
  t.Restore(Rec(thread, Kind::kThread, kAlice, {}, conn));
  t.FinishRestore();
  EXPECT_THAT(Cascade(t, conn), UnorderedElementsAre(conn, run, req));
  EXPECT_THAT(Cascade(t, thread), UnorderedElementsAre(thread, run, req));
  EXPECT_EQ(t.View(t.Find(req)).parent, run);
  EXPECT_EQ(t.MemoryUsage().ghosts, 0u);
}

TEST(RecordTableTest, RestoreKeepsReferencesToRecordsNoLongerStored) {
  RecordTable t;
  const Id128 gone_conn = IdAt(1), thread = IdAt(2);
  t.Restore(Rec(thread, Kind::kThread, kAlice, {}, gone_conn));
  t.FinishRestore();
  EXPECT_EQ(t.Find(gone_conn), RecordTable::kNone);
  EXPECT_EQ(t.View(t.Find(thread)).connection, gone_conn);
  EXPECT_EQ(t.MemoryUsage().ghosts, 1u);
}

TEST(RecordTableTest, RestoredTombstonesDropInEndOrder) {
  RecordTable t;
  const Id128 a = IdAt(1), b = IdAt(2), c = IdAt(3);
  t.Restore(Ended(Rec(a, Kind::kThread, kAlice), kBaseMs + 30, "x"));
  t.Restore(Ended(Rec(b, Kind::kThread, kAlice), kBaseMs + 10, "x"));
  t.Restore(Rec(c, Kind::kThread, kAlice));
  t.FinishRestore();
  EXPECT_EQ(t.live_count(t.FindOwner(kAlice)), 1u);
  EXPECT_EQ(t.View(t.Find(a)).end_reason, "x");
  EXPECT_THAT(t.DueTombstones(kBaseMs + 20), ElementsAre(b));
  EXPECT_THAT(t.DueTombstones(kBaseMs + 30), ElementsAre(b, a));
}

TEST(RecordTableTest, LeasedConnectionsAreListedWhileLive) {
  RecordTable t;
  const Id128 lease = IdAt(0, 9);
  t.Insert(Rec(IdAt(1), Kind::kConnection, kAlice, {}, {}, lease));
  t.Insert(Rec(IdAt(2), Kind::kConnection, kAlice));
  t.Insert(Rec(IdAt(3), Kind::kConnection, kBob, {}, {}, lease));
  t.End(t.Find(IdAt(3)), State::kExpired, kBaseMs + 5, reason, 2);
  std::vector<Id128> seen;
  t.ForEachLeasedConnection([&](Ref r, Id128 l) {
    EXPECT_EQ(l, lease);
    seen.push_back(t.id(r));
  });
  EXPECT_THAT(seen, ElementsAre(IdAt(1)));
}

// Many records: the index, owner B-trees and free lists stay consistent
// through interleaved inserts, ends and drops.
TEST(RecordTableTest, ChurnKeepsIndexAndOwnersConsistent) {
  RecordTable t;
  std::vector<Id128> live;
  int64_t ms = 0;
  for (int round = 0; round < 20; ++round) {
    for (int i = 0; i < 500; ++i) {
      const Id128 id = IdAt(++ms);
      t.Insert(Rec(id, Kind::kThread, i % 2 ? kAlice : kBob));
      live.push_back(id);
    }
    // End every third live record, then drop all tombstones.
    std::vector<Id128> keep;
    for (size_t i = 0; i < live.size(); ++i) {
      if (i % 3 == 0) {
        t.End(t.Find(live[i]), State::kReleased, kBaseMs + ms, reason, 2);
      } else {
        keep.push_back(live[i]);
      }
    }
    t.DropTombstones(t.DueTombstones(kBaseMs + ms));
    live = keep;
    ASSERT_EQ(t.size(), live.size());
  }
  for (const Id128& id : live) ASSERT_NE(t.Find(id), RecordTable::kNone);
  std::vector<Id128> owned = Owned(t, kAlice);
  const std::vector<Id128> bob = Owned(t, kBob);
  owned.insert(owned.end(), bob.begin(), bob.end());
  std::sort(owned.begin(), owned.end());
  EXPECT_EQ(owned, live);
  EXPECT_EQ(t.live_count(t.FindOwner(kAlice)) + t.live_count(t.FindOwner(kBob)),
            live.size());
}

TEST(RecordTableTest, OwnerPastTheTombstoneCapListsItsOldestAsExcess) {
  RecordTable t;
  t.set_owner_tombstone_cap(3);
  std::vector<Id128> alice;
  for (int i = 1; i <= 6; ++i) {
    alice.push_back(IdAt(i));
    t.Insert(Rec(alice.back(), Kind::kThread, kAlice));
  }
  t.Insert(Rec(IdAt(10), Kind::kThread, kBob));
  t.End(t.Find(IdAt(10)), State::kReleased, kBaseMs + 100, reason, 9);
  // Ended newest ID first: the oldest by ID go first all the same.
  for (int i = 5; i >= 0; --i) {
    t.End(t.Find(alice[i]), State::kReleased, kBaseMs + 105 - i, reason, 9);
  }
  // A live record of alice's does not count.
  t.Insert(Rec(IdAt(20), Kind::kThread, kAlice));
  EXPECT_EQ(t.tombstone_count(t.FindOwner(kAlice)), 6u);
  EXPECT_THAT(t.ExcessTombstones(kBaseMs),
              ElementsAre(alice[0], alice[1], alice[2]));
  // Those due by time anyway (alice[1] and alice[2] ended at or before
  // +104) are counted, not listed twice.
  EXPECT_THAT(t.ExcessTombstones(kBaseMs + 104), ElementsAre(alice[0]));

  const std::vector<Id128> excess = t.ExcessTombstones(kBaseMs);
  EXPECT_EQ(t.DropTombstones(absl::MakeConstSpan(excess)), 3u);
  EXPECT_EQ(t.tombstone_count(t.FindOwner(kAlice)), 3u);
  EXPECT_THAT(t.ExcessTombstones(kBaseMs), IsEmpty());
  EXPECT_EQ(t.Find(alice[0]), RecordTable::kNone);
  EXPECT_NE(t.Find(alice[3]), RecordTable::kNone);
  // Retention still drops the rest in end order, skipping the ones gone.
  EXPECT_THAT(t.DueTombstones(kBaseMs + 101),
              ElementsAre(IdAt(10), alice[5], alice[4]));
  EXPECT_EQ(t.DropTombstones(t.DueTombstones(kBaseMs + 1000)), 4u);
  EXPECT_EQ(t.size(), 1u);  // alice's live one
  // Dropping what is not a tombstone does nothing.
  const Id128 unknown = IdAt(99);
  const Id128 live = IdAt(20);
  EXPECT_EQ(
      t.DropTombstones(absl::MakeConstSpan(std::vector<Id128>{unknown, live})),
      0u);
  EXPECT_NE(t.Find(live), RecordTable::kNone);
}

TEST(RecordTableTest, ChurnByOneOwnerStaysBoundedByTheCap) {
  RecordTable t;
  constexpr uint64_t kCap = 100;
  t.set_owner_tombstone_cap(kCap);
  uint64_t peak_queue = 0;
  uint64_t peak_size = 0;
  uint32_t seq = 0;
  // 20,000 records issued and ended, the excess dropped every 50 (as the
  // registry's Tick does), retention never reached.
  for (int round = 0; round < 400; ++round) {
    for (int i = 0; i < 50; ++i) {
      const Id128 id = IdAt(round, ++seq);
      t.Insert(Rec(id, Kind::kRun, kAlice));
      t.End(t.Find(id), State::kReleased, kBaseMs + round, reason, 2);
    }
    const std::vector<Id128> excess = t.ExcessTombstones(kBaseMs - 1);
    t.DropTombstones(absl::MakeConstSpan(excess));
    peak_queue = std::max(peak_queue, t.MemoryUsage().tombstones);
    peak_size = std::max<uint64_t>(peak_size, t.size());
  }
  EXPECT_EQ(t.tombstone_count(t.FindOwner(kAlice)), kCap);
  EXPECT_LE(peak_size, kCap + 50);
  // The end-order queue keeps stale entries of early drops only boundedly.
  EXPECT_LE(peak_queue,
            (2 * (kCap + 50) + 1024 + 50) * sizeof(std::pair<int64_t, Ref>));
}

}  // namespace
}  // namespace registrar
