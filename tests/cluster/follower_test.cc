// Followers on one etcd prefix (service/cluster/DESIGN.md), in one process
// against a real 3-member etcd: a writer Registry on EtcdStore, and
// follower Registries each loaded from etcd and fed by FollowerFeed. A read
// on a follower after ReadBarrier::Wait sees every change the writer
// acknowledged before it (read-your-writes across replicas), also for a
// follower that loaded while the writer was busy, and each follower ends
// up holding exactly what the writer holds.

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "service/cluster/follower_feed.h"
#include "service/cluster/read_barrier.h"
#include "service/common/clock.h"
#include "service/etcd/etcd_store.h"
#include "service/id/id.h"
#include "service/id/id_generator.h"
#include "service/id/key_ring.h"
#include "service/registry/registry.h"
#include "tests/cluster/cluster_fixture.h"

namespace registrar::cluster {
namespace {

using ::registrar::testing::ClusterTest;

constexpr absl::Duration kReadTimeout = absl::Seconds(20);

// One replica: a registry over its own EtcdStore on the shared prefix;
// followers also have a feed and a barrier. Members are destroyed in
// reverse order: barrier, feed, registry, ids, store.
struct Replica {
  std::shared_ptr<etcd::Connection> conn;
  std::unique_ptr<etcd::EtcdStore> store;
  std::unique_ptr<IdGenerator> ids;
  std::unique_ptr<Registry> registry;
  std::unique_ptr<FollowerFeed> feed;
  std::unique_ptr<ReadBarrier> barrier;
};

Owner OwnerNo(int i) { return {"acme", absl::StrCat("user-", i)}; }

class FollowerTest : public ClusterTest {
 protected:
  FollowerTest() : keys_(KeyRing::Generate()) {}

  void SetUp() override {
    ClusterTest::SetUp();
    prefix_ = absl::StrCat(
        "/f/", ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  // A replica loaded from etcd; a follower also starts following. conn:
  // the replica's etcd connection (default: to every member).
  std::unique_ptr<Replica> Open(
      uint32_t node_id, bool follower,
      std::shared_ptr<etcd::Connection> conn = nullptr,
      absl::Duration probe_timeout = absl::Seconds(1)) {
    auto r = std::make_unique<Replica>();
    r->conn = conn != nullptr ? std::move(conn) : Connect();
    EXPECT_NE(r->conn, nullptr);
    if (r->conn == nullptr) return nullptr;
    etcd::EtcdStoreOptions o;
    o.prefix = prefix_;
    auto store = etcd::EtcdStore::Create(r->conn, o);
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return nullptr;
    r->store = *std::move(store);
    r->ids = std::make_unique<IdGenerator>(clock_, keys_, node_id);
    RegistryOptions ro;
    ro.shards = 8;
    r->registry = std::make_unique<Registry>(ro, clock_, *r->ids, nullptr,
                                             r->store.get());
    absl::Status s = r->registry->Recover();
    EXPECT_TRUE(s.ok()) << s;
    if (!s.ok()) return nullptr;
    if (follower) {
      r->feed = std::make_unique<FollowerFeed>(
          r->conn, r->store->layout(), r->store->loaded_at(),
          r->store->LastRevision(), *r->registry);
      r->barrier = std::make_unique<ReadBarrier>(
          r->conn, r->store->layout(), *r->feed, probe_timeout);
    }
    return r;
  }

  // After the barrier, `follower` holds every record of `owners` as the
  // writer does (same state and revision) and the same counts.
  void ExpectSameAsWriter(Replica& writer, Replica& follower,
                          const std::vector<Owner>& owners) {
    absl::Status s = follower.barrier->Wait(absl::Now() + kReadTimeout);
    ASSERT_TRUE(s.ok()) << s;
    for (const Owner& owner : owners) {
      ListOwnedSpec spec;
      spec.owner = owner;
      spec.include_ended = true;
      spec.page_size = 1000;
      absl::StatusOr<ListOwnedResult> w = writer.registry->ListOwned(spec);
      absl::StatusOr<ListOwnedResult> f = follower.registry->ListOwned(spec);
      ASSERT_TRUE(w.ok()) << w.status();
      ASSERT_TRUE(f.ok()) << f.status();
      ASSERT_EQ(w->records.size(), f->records.size()) << owner.user_id;
      for (size_t i = 0; i < w->records.size(); ++i) {
        EXPECT_EQ(w->records[i].id, f->records[i].id);
        EXPECT_EQ(w->records[i].state, f->records[i].state);
        EXPECT_EQ(w->records[i].revision, f->records[i].revision);
      }
    }
    const RegistryStats ws = writer.registry->Stats();
    const RegistryStats fs = follower.registry->Stats();
    for (int k = 0; k < kNumKinds; ++k) {
      EXPECT_EQ(ws.live_records[k], fs.live_records[k]) << k;
    }
    EXPECT_EQ(ws.tombstones, fs.tombstones);
    EXPECT_EQ(ws.leases, fs.leases);
    EXPECT_EQ(follower.feed->applied(), writer.store->LastRevision());
  }

  SystemClock clock_;
  KeyRing keys_;
  std::string prefix_;
};

// Issue on the writer, then Validate and Describe on two followers at once,
// from several threads; one follower loads while the writer is busy. Every
// acknowledged ID is VALID on both with the writer's record, and a record
// released on the writer reads RELEASED on both.
TEST_F(FollowerTest, ReadYourWritesAcrossReplicas) {
  std::unique_ptr<Replica> a = Open(1, false);
  ASSERT_NE(a, nullptr);
  for (int i = 0; i < 4; ++i) {
    IssueSpec spec;
    spec.kind = Kind::kThread;
    spec.owner = OwnerNo(i);
    spec.count = 5;
    ASSERT_TRUE(a->registry->Issue(spec).ok());
  }
  std::unique_ptr<Replica> b = Open(2, true);
  ASSERT_NE(b, nullptr);

  constexpr int kThreads = 4;
  constexpr int kRounds = 100;
  std::atomic<int> failures{0};
  std::atomic<int> reads{0};
  std::unique_ptr<Replica> c;
  absl::Notification c_ready;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const Owner owner = OwnerNo(t);
      for (int round = 0; round < kRounds && failures.load() == 0; ++round) {
        IssueSpec spec;
        spec.kind = round % 2 == 0 ? Kind::kThread : Kind::kConnection;
        spec.owner = owner;
        spec.count = 1 + round % 3;
        absl::StatusOr<std::vector<std::string>> ids = a->registry->Issue(spec);
        if (!ids.ok()) {
          ADD_FAILURE() << ids.status();
          ++failures;
          return;
        }
        std::vector<Replica*> followers = {b.get()};
        if (c_ready.HasBeenNotified()) followers.push_back(c.get());
        for (Replica* f : followers) {
          absl::Status s = f->barrier->Wait(absl::Now() + kReadTimeout);
          if (!s.ok()) {
            ADD_FAILURE() << s;
            ++failures;
            return;
          }
          for (const std::string& id : *ids) {
            ValidateResult v =
                f->registry->Validate(id, spec.kind, owner, true);
            ++reads;
            if (v.verdict != Verdict::kValid || !v.record.has_value()) {
              ADD_FAILURE() << id << " on a follower: verdict "
                            << static_cast<int>(v.verdict);
              ++failures;
              return;
            }
            absl::StatusOr<RecordView> w = a->registry->Describe(id);
            if (!w.ok() || w->revision != v.record->revision ||
                w->owner != v.record->owner) {
              ADD_FAILURE() << id << ": the follower's record differs";
              ++failures;
              return;
            }
          }
        }
        if (round % 5 == 4) {
          // Release the first of this round's IDs; both followers see it.
          CleanupTarget target;
          target.ids = {(*ids)[0]};
          absl::StatusOr<CleanupResult> cleaned =
              a->registry->Cleanup(owner, target, "test");
          if (!cleaned.ok() || cleaned->released.empty()) {
            ADD_FAILURE() << "cleanup failed";
            ++failures;
            return;
          }
          for (Replica* f : followers) {
            absl::Status s = f->barrier->Wait(absl::Now() + kReadTimeout);
            ASSERT_TRUE(s.ok()) << s;
            EXPECT_EQ(f->registry->Validate((*ids)[0], spec.kind, owner, false)
                          .verdict,
                      Verdict::kReleased);
          }
        }
      }
    });
  }
  // The second follower loads while the writer is busy.
  c = Open(3, true);
  ASSERT_NE(c, nullptr);
  c_ready.Notify();
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(failures.load(), 0);

  std::vector<Owner> owners;
  for (int i = 0; i < kThreads; ++i) owners.push_back(OwnerNo(i));
  ExpectSameAsWriter(*a, *b, owners);
  ExpectSameAsWriter(*a, *c, owners);
  // How much the barrier's probes were shared.
  std::printf("%d follower reads; probes: b %llu, c %llu\n", reads.load(),
              static_cast<unsigned long long>(b->barrier->probes()),
              static_cast<unsigned long long>(c->barrier->probes()));
}

// Leases granted, bound, renewed and revoked on the writer: the followers
// bind and end the same connections, with the cascade through them.
TEST_F(FollowerTest, LeasesAndCascadesFollow) {
  std::unique_ptr<Replica> a = Open(1, false);
  ASSERT_NE(a, nullptr);
  std::unique_ptr<Replica> b = Open(2, true);
  ASSERT_NE(b, nullptr);
  const Owner owner = OwnerNo(7);

  absl::StatusOr<LeaseGrant> lease =
      a->registry->GrantLease("gateway-1", absl::Seconds(30));
  ASSERT_TRUE(lease.ok()) << lease.status();
  IssueSpec conn;
  conn.kind = Kind::kConnection;
  conn.owner = owner;
  conn.count = 3;
  conn.lease_id = lease->lease_id;
  absl::StatusOr<std::vector<std::string>> conns = a->registry->Issue(conn);
  ASSERT_TRUE(conns.ok()) << conns.status();
  OpenContextSpec ctx;
  ctx.owner = owner;
  ctx.connection_id = (*conns)[0];
  absl::StatusOr<OpenContextResult> opened = a->registry->OpenContext(ctx);
  ASSERT_TRUE(opened.ok()) << opened.status();
  ExpectSameAsWriter(*a, *b, {owner});
  EXPECT_EQ(b->registry->Stats().leases, 1u);

  absl::StatusOr<std::vector<std::string>> ended =
      a->registry->RevokeLease(lease->lease_id);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->size(), 5u);  // 3 connections, a run, a request
  ExpectSameAsWriter(*a, *b, {owner});
  EXPECT_EQ(b->registry->Stats().leases, 0u);
  EXPECT_EQ(
      b->registry->Validate(opened->run_id, Kind::kRun, owner, false).verdict,
      a->registry->Validate(opened->run_id, Kind::kRun, owner, false).verdict);
  EXPECT_EQ(
      b->registry->Validate(opened->thread_id, Kind::kThread, owner, false)
          .verdict,
      Verdict::kValid);  // threads outlive connections
}

// A read probe taken by a member whose leader then stops answering: the
// member fails it ("leader changed") once it notices, or answers only
// after etcd's request timeout (5 s + 2 election timeouts = 7 s here),
// with a call deadline longer than that. The barrier gives up on a member
// after the probe timeout, asks the other, and asks again after a pause
// until the two have elected a leader (election timeout 1 s): the read
// answers within seconds. Before, the failed probe failed the read.
TEST_F(FollowerTest, ProbeLostWithItsLeaderIsAskedAgainAfterTheProbeTimeout) {
  std::unique_ptr<Replica> writer = Open(0, /*follower=*/false);
  ASSERT_NE(writer, nullptr);
  absl::StatusOr<int> leader = cluster_->Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  etcd::ConnectionOptions co;
  co.endpoints = {cluster_->client_endpoint((*leader + 1) % 3),
                  cluster_->client_endpoint((*leader + 2) % 3)};
  co.call_timeout = absl::Seconds(60);  // only the probe timeout helps
  absl::StatusOr<std::shared_ptr<etcd::Connection>> conn =
      etcd::Connection::Create(co);
  ASSERT_TRUE(conn.ok()) << conn.status();
  std::unique_ptr<Replica> follower =
      Open(1, /*follower=*/true, *conn, absl::Milliseconds(500));
  ASSERT_NE(follower, nullptr);
  IssueSpec spec;
  spec.kind = Kind::kThread;
  spec.owner = OwnerNo(1);
  spec.count = 2;
  ASSERT_TRUE(writer->registry->Issue(spec).ok());
  ASSERT_TRUE(follower->barrier->Wait(absl::Now() + kReadTimeout).ok());

  ASSERT_TRUE(cluster_->Pause(*leader).ok());
  const absl::Time start = absl::Now();
  const absl::Status s = follower->barrier->Wait(absl::Now() + kReadTimeout);
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(cluster_->Resume(*leader).ok());
  ASSERT_TRUE(s.ok()) << s;
  std::printf("a read barrier with the etcd leader paused took %s\n",
              absl::FormatDuration(took).c_str());
  // Election (1 s, up to 2 with its randomisation) plus a probe timeout on
  // each member and the pauses; etcd's own answer would take 7 s.
  EXPECT_LT(took, absl::Seconds(5));
  EXPECT_GE(follower->feed->applied(), writer->store->LastRevision());
}

}  // namespace
}  // namespace registrar::cluster
