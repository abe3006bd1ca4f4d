// service/etcd's Lease and LeaseKeeper against a real 3-member etcd: grant,
// TTL, revoke (deleting the lease's keys); a keeper holds a lease past its
// TTL and through a leader kill; it reports loss when the lease is revoked,
// and, on the injected clock, once TTL - margin has passed since the last
// answered keep-alive was sent.

#include <functional>
#include <memory>
#include <optional>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "service/etcd/kv.h"
#include "service/etcd/lease.h"
#include "service/etcd/lease_keeper.h"
#include "tests/cluster/await.h"
#include "tests/cluster/cluster_fixture.h"

namespace registrar::etcd {
namespace {

using ::registrar::testing::Await;
using ::registrar::testing::Call;
using ::registrar::testing::ClusterTest;
using ::registrar::testing::kAwait;
using ::registrar::testing::WaitFor;

class EtcdLeaseTest : public ClusterTest {
 protected:
  void SetUp() override {
    ClusterTest::SetUp();
    conn_ = Connect();
    ASSERT_NE(conn_, nullptr);
    kv_ = std::make_unique<Kv>(conn_);
    lease_ = std::make_unique<Lease>(conn_);
  }

  absl::StatusOr<pb::LeaseGrantResponse> Grant(int64_t ttl) {
    return Call<pb::LeaseGrantResponse>(
        [&](auto cb) { lease_->Grant(ttl, 0, cb); });
  }
  absl::StatusOr<int64_t> RemainingTtl(int64_t id) {
    auto r = Call<pb::LeaseTimeToLiveResponse>(
        [&](auto cb) { lease_->TimeToLive(id, false, cb); });
    if (!r.ok()) return r.status();
    return r->ttl();
  }
  absl::StatusOr<int> KeysAt(const std::string& key) {
    pb::RangeRequest req;
    req.set_key(key);
    auto r = Call<pb::RangeResponse>([&](auto cb) { kv_->Range(req, cb); });
    if (!r.ok()) return r.status();
    return r->kvs_size();
  }
  static bool WaitAnswered(const LeaseKeeper& k, int64_t n) {
    return WaitFor([&] { return k.answered() >= n; });
  }

  std::shared_ptr<Connection> conn_;
  std::unique_ptr<Kv> kv_;
  std::unique_ptr<Lease> lease_;
  SystemClock clock_;
};

// Records on_lost.
struct LossLog {
  absl::Mutex mu;
  std::optional<absl::Status> lost ABSL_GUARDED_BY(mu);
  int calls ABSL_GUARDED_BY(mu) = 0;
  std::function<void(const absl::Status&)> Callback(
      std::shared_ptr<LossLog> self) {
    return [self](const absl::Status& s) {
      absl::MutexLock lock(&self->mu);
      ++self->calls;
      self->lost = s;
    };
  }
  std::optional<absl::Status> Wait() {
    absl::MutexLock lock(&mu);
    auto has = [&]()
                   ABSL_SHARED_LOCKS_REQUIRED(mu) { return lost.has_value(); };
    mu.AwaitWithTimeout(absl::Condition(&has), kAwait);
    return lost;
  }
};

TEST_F(EtcdLeaseTest, GrantTimeToLiveAndRevokeDeletesItsKeys) {
  auto granted = Grant(30);
  ASSERT_TRUE(granted.ok()) << granted.status();
  EXPECT_EQ(granted->ttl(), 30);
  auto ttl = RemainingTtl(granted->id());
  ASSERT_TRUE(ttl.ok());
  EXPECT_GT(*ttl, 0);
  EXPECT_LE(*ttl, 30);
  ASSERT_TRUE(Call<pb::PutResponse>([&](auto cb) {
                kv_->Put("/lease/key", "v", granted->id(), cb);
              }).ok());
  ASSERT_EQ(*KeysAt("/lease/key"), 1);

  auto revoked = Call<pb::LeaseRevokeResponse>(
      [&](auto cb) { lease_->Revoke(granted->id(), cb); });
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_EQ(*KeysAt("/lease/key"), 0);
  ttl = RemainingTtl(granted->id());
  ASSERT_TRUE(ttl.ok());
  EXPECT_EQ(*ttl, -1);
  // Revoking again: the lease is gone.
  auto again = Call<pb::LeaseRevokeResponse>(
      [&](auto cb) { lease_->Revoke(granted->id(), cb); });
  EXPECT_TRUE(absl::IsNotFound(again.status())) << again.status();
}

TEST_F(EtcdLeaseTest, KeeperHoldsTheLeasePastItsTtlAndThroughALeaderKill) {
  // Long enough to ride out an election (1 s timeout, then a vote) with
  // the fencing margin; keep-alives every 250 ms.
  constexpr int64_t kTtl = 4;
  const absl::Time before = clock_.Now();
  auto granted = Grant(kTtl);
  ASSERT_TRUE(granted.ok()) << granted.status();
  ASSERT_TRUE(Call<pb::PutResponse>([&](auto cb) {
                kv_->Put("/lease/kept", "v", granted->id(), cb);
              }).ok());
  auto lost = std::make_shared<LossLog>();
  LeaseKeeperOptions o;
  o.lease_id = granted->id();
  o.ttl = absl::Seconds(kTtl);
  o.granted_at = before;
  o.margin = absl::Milliseconds(300);
  o.interval = absl::Milliseconds(250);
  auto keeper = LeaseKeeper::Start(conn_, clock_, o, lost->Callback(lost));
  ASSERT_TRUE(keeper.ok()) << keeper.status();
  LeaseKeeper& k = **keeper;
  ASSERT_TRUE(WaitAnswered(k, 1));

  auto leader = cluster_->Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  const absl::Time killed_at = clock_.Now();
  ASSERT_TRUE(cluster_->Kill(*leader).ok());
  // Keep-alives go on through the election, until more than a TTL after
  // the kill (or the keeper gives up).
  const int64_t answered = k.answered();
  ASSERT_TRUE(WaitFor([&] {
    return !k.Alive() || (k.answered() >= answered + 3 &&
                          clock_.Now() - killed_at > absl::Seconds(kTtl));
  }));
  EXPECT_TRUE(k.Alive());
  EXPECT_GT(clock_.Now() - before, absl::Seconds(kTtl));
  auto ttl = RemainingTtl(granted->id());
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_GT(*ttl, 0);
  EXPECT_EQ(*KeysAt("/lease/kept"), 1);
  {
    absl::MutexLock lock(&lost->mu);
    EXPECT_EQ(lost->calls, 0) << lost->lost.value_or(absl::OkStatus());
  }
  k.Stop();
  ASSERT_TRUE(cluster_->Restart(*leader).ok());
}

TEST_F(EtcdLeaseTest, KeeperReportsLossWhenTheLeaseIsRevoked) {
  const absl::Time before = clock_.Now();
  auto granted = Grant(3);
  ASSERT_TRUE(granted.ok()) << granted.status();
  auto lost = std::make_shared<LossLog>();
  LeaseKeeperOptions o;
  o.lease_id = granted->id();
  o.ttl = absl::Seconds(3);
  o.granted_at = before;
  o.interval = absl::Milliseconds(200);
  auto keeper = LeaseKeeper::Start(conn_, clock_, o, lost->Callback(lost));
  ASSERT_TRUE(keeper.ok());
  ASSERT_TRUE(WaitAnswered(**keeper, 1));
  ASSERT_TRUE(Call<pb::LeaseRevokeResponse>([&](auto cb) {
                lease_->Revoke(granted->id(), cb);
              }).ok());
  auto why = lost->Wait();
  ASSERT_TRUE(why.has_value());
  EXPECT_TRUE(absl::IsNotFound(*why)) << *why;
  EXPECT_FALSE((*keeper)->Alive());
}

TEST_F(EtcdLeaseTest, FencingCountsFromTheSendTimeOnTheInjectedClock) {
  FakeClock clock;
  const absl::Time granted_at = clock.Now();
  auto granted = Grant(10);
  ASSERT_TRUE(granted.ok());
  auto lost = std::make_shared<LossLog>();
  LeaseKeeperOptions o;
  o.lease_id = granted->id();
  o.ttl = absl::Seconds(10);
  o.granted_at = granted_at;
  o.margin = absl::Seconds(2);
  o.tick = absl::ZeroDuration();  // this test drives Tick
  auto keeper = LeaseKeeper::Start(conn_, clock, o, lost->Callback(lost));
  ASSERT_TRUE(keeper.ok());
  // Start sent a keep-alive at granted_at; etcd answers it (TTL 10).
  ASSERT_TRUE(WaitAnswered(**keeper, 1));
  EXPECT_EQ((*keeper)->valid_until(), granted_at + absl::Seconds(8));

  // 5 s later (past the 10/3 s interval) a keep-alive goes out at +5 s.
  clock.Advance(absl::Seconds(5));
  (*keeper)->Tick();
  ASSERT_TRUE(WaitAnswered(**keeper, 2));
  const absl::Time valid_until = granted_at + absl::Seconds(5 + 8);
  EXPECT_EQ((*keeper)->valid_until(), valid_until);

  // etcd still holds the lease, but no keep-alive is answered any more
  // (none is sent: nobody ticks). Alive() turns false exactly at
  // valid_until, before any network reply says so.
  clock.Set(valid_until - absl::Milliseconds(1));
  EXPECT_TRUE((*keeper)->Alive());
  clock.Set(valid_until);
  EXPECT_FALSE((*keeper)->Alive());
  {
    absl::MutexLock lock(&lost->mu);
    EXPECT_EQ(lost->calls, 0) << "reported on the next Tick";
  }
  (*keeper)->Tick();
  auto why = lost->Wait();
  ASSERT_TRUE(why.has_value());
  EXPECT_TRUE(absl::IsDeadlineExceeded(*why)) << *why;
  auto ttl = RemainingTtl(granted->id());
  ASSERT_TRUE(ttl.ok());
  EXPECT_GT(*ttl, 0) << "etcd has not expired it: we stopped first";
  (*keeper)->Stop();
  ASSERT_TRUE(Call<pb::LeaseRevokeResponse>([&](auto cb) {
                lease_->Revoke(granted->id(), cb);
              }).ok());
}

}  // namespace
}  // namespace registrar::etcd
