// service/etcd's Election against a real 3-member etcd: three candidates
// on their own connections and leases agree on one leader (the first to
// campaign); when its lease is revoked the next one leads, then the last
// after a resignation; the old leader's guarded write fails in etcd.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "service/etcd/election.h"
#include "service/etcd/kv.h"
#include "service/etcd/lease.h"
#include "tests/cluster/await.h"
#include "tests/cluster/cluster_fixture.h"

namespace registrar::etcd {
namespace {

using ::registrar::testing::Call;
using ::registrar::testing::ClusterTest;
using ::registrar::testing::kAwait;

// One candidate: its connection, lease, keeper, election, and every leader
// change it observed.
struct Candidate {
  std::shared_ptr<Connection> conn;
  int64_t lease_id = 0;
  std::shared_ptr<LeaseKeeper> keeper;
  std::shared_ptr<Election> election;
  absl::Mutex mu;
  std::vector<std::string> seen ABSL_GUARDED_BY(mu);  // leader keys, "" none

  std::string Leader() {
    absl::MutexLock lock(&mu);
    return seen.empty() ? "" : seen.back();
  }
};

class EtcdElectionTest : public ClusterTest {
 protected:
  // A candidate with a fresh connection and a kept-alive lease.
  std::unique_ptr<Candidate> Join(const std::string& prefix,
                                  const std::string& value) {
    auto c = std::make_unique<Candidate>();
    c->conn = Connect();
    if (c->conn == nullptr) return nullptr;
    const absl::Time before = clock_.Now();
    Lease lease(c->conn);
    auto granted =
        Call<pb::LeaseGrantResponse>([&](auto cb) { lease.Grant(10, 0, cb); });
    if (!granted.ok()) return nullptr;
    c->lease_id = granted->id();
    LeaseKeeperOptions k;
    k.lease_id = granted->id();
    k.ttl = absl::Seconds(granted->ttl());
    k.granted_at = before;
    auto keeper = LeaseKeeper::Start(c->conn, clock_, k, nullptr);
    if (!keeper.ok()) return nullptr;
    c->keeper = *keeper;
    Candidate* raw = c.get();
    auto e = Call<std::shared_ptr<Election>>([&](auto cb) {
      Election::Campaign(
          c->conn, prefix, value, c->keeper,
          [raw](const std::optional<LeaderInfo>& l) {
            absl::MutexLock lock(&raw->mu);
            raw->seen.push_back(l.has_value() ? l->key : "");
          },
          cb);
    });
    if (!e.ok()) return nullptr;
    c->election = *e;
    return c;
  }

  // Waits (bounded) until every candidate has observed `key` as leader.
  static bool AllSee(const std::vector<Candidate*>& cs,
                     const std::string& key) {
    for (Candidate* c : cs) {
      absl::MutexLock lock(&c->mu);
      auto sees = [&]() ABSL_SHARED_LOCKS_REQUIRED(c->mu) {
        return !c->seen.empty() && c->seen.back() == key;
      };
      if (!c->mu.AwaitWithTimeout(absl::Condition(&sees), kAwait)) {
        return false;
      }
    }
    return true;
  }
  static int Leaders(const std::vector<Candidate*>& cs) {
    int n = 0;
    for (Candidate* c : cs) n += c->election->IsLeader() ? 1 : 0;
    return n;
  }
  // A write only the leader may make: guarded by its LeaderCompare.
  static absl::StatusOr<bool> GuardedWrite(Candidate& c) {
    pb::TxnRequest req;
    *req.add_compare() = c.election->LeaderCompare();
    *req.add_success() = PutOp("/election/work", c.election->key());
    Kv kv(c.conn);
    auto r = Call<pb::TxnResponse>([&](auto cb) { kv.Txn(req, cb); });
    if (!r.ok()) return r.status();
    return r->succeeded();
  }

  SystemClock clock_;
};

TEST_F(EtcdElectionTest, OneLeaderAtATimeAndTheNextAfterRevokeOrResign) {
  const std::string prefix = "/election/expirer/";
  auto c0 = Join(prefix, "c0");
  auto c1 = Join(prefix, "c1");
  auto c2 = Join(prefix, "c2");
  ASSERT_TRUE(c0 && c1 && c2);
  std::vector<Candidate*> all = {c0.get(), c1.get(), c2.get()};
  EXPECT_LT(c0->election->create_revision(), c1->election->create_revision());
  EXPECT_LT(c1->election->create_revision(), c2->election->create_revision());

  // The first to campaign leads, and everyone agrees.
  ASSERT_TRUE(AllSee(all, c0->election->key()));
  EXPECT_EQ(Leaders(all), 1);
  EXPECT_TRUE(c0->election->IsLeader());
  auto leader = c1->election->leader();
  ASSERT_TRUE(leader.has_value());
  EXPECT_EQ(leader->value, "c0");
  EXPECT_FALSE(leader->is_me);
  ASSERT_TRUE(*GuardedWrite(*c0));

  // The leader's lease is revoked (as when it expires): its key goes, the
  // next in line leads, and the old leader's guarded write fails in etcd.
  Lease lease(c1->conn);
  ASSERT_TRUE(Call<pb::LeaseRevokeResponse>([&](auto cb) {
                lease.Revoke(c0->lease_id, cb);
              }).ok());
  ASSERT_TRUE(AllSee(all, c1->election->key()));
  EXPECT_FALSE(*GuardedWrite(*c0));
  EXPECT_TRUE(*GuardedWrite(*c1));
  EXPECT_TRUE(c1->election->IsLeader());
  EXPECT_FALSE(c0->election->IsLeader());
  EXPECT_FALSE(c2->election->IsLeader());

  // The new leader resigns: the last one leads.
  ASSERT_TRUE(
      Call<absl::Status>([&](auto cb) { c1->election->Resign(cb); })->ok());
  ASSERT_TRUE(AllSee({c1.get(), c2.get()}, c2->election->key()));
  EXPECT_TRUE(c2->election->IsLeader());
  EXPECT_FALSE(c1->election->IsLeader());
  EXPECT_FALSE(*GuardedWrite(*c1));

  // Each candidate saw the leaders in line order, never one going back.
  for (Candidate* c : all) {
    absl::MutexLock lock(&c->mu);
    ASSERT_FALSE(c->seen.empty());
    std::vector<std::string> order = {c0->election->key(), c1->election->key(),
                                      c2->election->key()};
    size_t at = 0;
    for (const std::string& key : c->seen) {
      while (at < order.size() && order[at] != key) ++at;
      EXPECT_LT(at, order.size()) << "leader seen out of order: " << key;
    }
  }
  for (Candidate* c : all) c->keeper->Stop();
}

}  // namespace
}  // namespace registrar::etcd
