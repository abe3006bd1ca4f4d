// service/etcd's KV client against a real 3-member etcd: round trip, Txn
// compare failure, paged Range at one revision, failover after the member
// the client talks to is killed.

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "service/etcd/kv.h"
#include "tests/cluster/await.h"
#include "tests/cluster/cluster_fixture.h"

namespace registrar::etcd {
namespace {

using ::registrar::testing::Await;
using ::registrar::testing::Call;
using ::registrar::testing::ClusterTest;

class EtcdKvTest : public ClusterTest {
 protected:
  void SetUp() override {
    ClusterTest::SetUp();
    ASSERT_TRUE(Reconnect({}));
  }

  // Talks to the members in this order from now on (the first is current).
  bool Reconnect(const std::vector<int>& order) {
    conn_ = Connect(order);
    kv_ = std::make_unique<Kv>(conn_);
    return conn_ != nullptr;
  }
  // A setup write: retried (bounded) while the cluster settles after a
  // restart in an earlier test.
  bool PutEventually(const std::string& k, const std::string& v) {
    const absl::Time deadline = absl::Now() + absl::Seconds(15);
    absl::StatusOr<pb::PutResponse> put = absl::UnknownError("not written");
    do {
      put = Put(k, v);
    } while (!put.ok() && absl::Now() < deadline);
    return put.ok();
  }

  absl::StatusOr<pb::PutResponse> Put(const std::string& k,
                                      const std::string& v) {
    return Call<pb::PutResponse>(
        [&](auto cb) { kv_->Put(k, v, 0, std::move(cb)); });
  }
  absl::StatusOr<pb::RangeResponse> Get(const std::string& k) {
    pb::RangeRequest req;
    req.set_key(k);
    return Call<pb::RangeResponse>(
        [&](auto cb) { kv_->Range(req, std::move(cb)); });
  }

  std::shared_ptr<Connection> conn_;
  std::unique_ptr<Kv> kv_;
};

TEST_F(EtcdKvTest, PutGetDeleteRoundTrip) {
  auto put = Put("/kv/a", "alpha");
  ASSERT_TRUE(put.ok()) << put.status();
  auto got = Get("/kv/a");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->kvs_size(), 1);
  EXPECT_EQ(got->kvs(0).value(), "alpha");
  EXPECT_EQ(got->kvs(0).mod_revision(), put->header().revision());

  auto del = Call<pb::DeleteRangeResponse>(
      [&](auto cb) { kv_->Delete("/kv/a", "", std::move(cb)); });
  ASSERT_TRUE(del.ok()) << del.status();
  EXPECT_EQ(del->deleted(), 1);
  got = Get("/kv/a");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->kvs_size(), 0);
}

TEST_F(EtcdKvTest, TxnOnModRevisionSucceedsOnceThenFails) {
  auto put = Put("/kv/txn", "v1");
  ASSERT_TRUE(put.ok()) << put.status();
  const int64_t rev = put->header().revision();

  auto txn = [&](const std::string& value) {
    pb::TxnRequest req;
    *req.add_compare() = CompareModRevision("/kv/txn", pb::Compare::EQUAL, rev);
    *req.add_success() = PutOp("/kv/txn", value);
    *req.add_failure() = RangeOp("/kv/txn");
    return Call<pb::TxnResponse>(
        [&](auto cb) { kv_->Txn(req, std::move(cb)); });
  };
  auto first = txn("v2");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->succeeded());
  // The key moved on: the same compare now fails, and the failure branch
  // shows what is there.
  auto second = txn("v3");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->succeeded());
  ASSERT_EQ(second->responses_size(), 1);
  ASSERT_EQ(second->responses(0).response_range().kvs_size(), 1);
  EXPECT_EQ(second->responses(0).response_range().kvs(0).value(), "v2");

  // Create-if-absent: only the first of two creates wins.
  auto create = [&](const std::string& value) {
    pb::TxnRequest req;
    *req.add_compare() = KeyAbsent("/kv/once");
    *req.add_success() = PutOp("/kv/once", value);
    return Call<pb::TxnResponse>(
        [&](auto cb) { kv_->Txn(req, std::move(cb)); });
  };
  auto c1 = create("first");
  auto c2 = create("second");
  ASSERT_TRUE(c1.ok() && c2.ok());
  EXPECT_TRUE(c1->succeeded());
  EXPECT_FALSE(c2->succeeded());
  auto got = Get("/kv/once");
  ASSERT_TRUE(got.ok());
  ASSERT_EQ(got->kvs_size(), 1);
  EXPECT_EQ(got->kvs(0).value(), "first");
}

TEST_F(EtcdKvTest, RangeAllPagesAtOneRevision) {
  constexpr int kKeys = 250;
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_TRUE(Put(absl::StrFormat("/kv/page/%04d", i), "x").ok());
  }
  // Outside the prefix: must not be listed.
  ASSERT_TRUE(Put("/kv/pagf", "outside").ok());

  struct Seen {
    absl::Mutex mu;
    std::vector<std::string> keys;
    std::vector<int64_t> revisions;
    int pages = 0;
  };
  auto seen = std::make_shared<Seen>();
  Kv::RangeAllOptions o;
  o.key = "/kv/page/";
  o.range_end = PrefixEnd(o.key);
  o.page_size = 40;
  // A key added after the first page, inside the range (between pages
  // still to come), is after the scan's revision: not listed.
  Await<absl::StatusOr<pb::PutResponse>> late;
  auto rev = Call<int64_t>([&](auto done) {
    kv_->RangeAll(
        o,
        [&, seen, late_cb = late.Callback()](std::vector<mvccpb::KeyValue> kvs,
                                             int64_t revision) {
          absl::MutexLock lock(&seen->mu);
          if (++seen->pages == 1)
            kv_->Put("/kv/page/0100a", "late", 0, late_cb);
          seen->revisions.push_back(revision);
          for (auto& kv : kvs) seen->keys.push_back(kv.key());
        },
        std::move(done));
  });
  ASSERT_TRUE(rev.ok()) << rev.status();
  auto late_put = late.Wait();
  ASSERT_TRUE(late_put.has_value() && late_put->ok());
  EXPECT_GT((*late_put)->header().revision(), *rev);
  absl::MutexLock lock(&seen->mu);
  EXPECT_EQ(seen->pages, (kKeys + 39) / 40);
  ASSERT_EQ(seen->keys.size(), static_cast<size_t>(kKeys));
  for (int i = 0; i < kKeys; ++i) {
    EXPECT_EQ(seen->keys[i], absl::StrFormat("/kv/page/%04d", i));
  }
  ASSERT_FALSE(seen->revisions.empty());
  for (int64_t r : seen->revisions) EXPECT_EQ(r, *rev);
}

TEST_F(EtcdKvTest, NextCallsSucceedAfterTheMemberItTalksToIsKilled) {
  // The client talks to a follower first; the leader stays up, so the
  // cluster keeps serving and only the client has to move.
  auto leader = cluster_->Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  const int follower = (*leader + 1) % cluster_->size();
  ASSERT_TRUE(Reconnect({follower, 3 - *leader - follower, *leader}));
  ASSERT_TRUE(PutEventually("/kv/failover", "before"));
  ASSERT_EQ(conn_->current(), 0);
  ASSERT_TRUE(cluster_->Kill(follower).ok());

  // A write in flight or first after the kill may fail (its outcome is
  // unknown); the connection moves on and the calls after it succeed.
  auto first = Put("/kv/failover", "after");
  if (!first.ok()) {
    EXPECT_TRUE(absl::IsUnavailable(first.status()) ||
                absl::IsDeadlineExceeded(first.status()))
        << first.status();
  }
  EXPECT_NE(conn_->current(), 0);
  for (int i = 0; i < 5; ++i) {
    auto put = Put("/kv/failover", absl::StrCat("after", i));
    ASSERT_TRUE(put.ok()) << i << ": " << put.status();
  }
  auto got = Get("/kv/failover");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->kvs_size(), 1);
  EXPECT_EQ(got->kvs(0).value(), "after4");
  EXPECT_GE(conn_->failovers(), 1);
  ASSERT_TRUE(cluster_->Restart(follower).ok());
}

TEST_F(EtcdKvTest, CallsSucceedOnAnotherMemberAfterTheLeaderIsKilled) {
  auto leader = cluster_->Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  const int a = (*leader + 1) % cluster_->size();
  ASSERT_TRUE(Reconnect({*leader, a, 3 - *leader - a}));
  ASSERT_TRUE(PutEventually("/kv/leader", "v"));
  ASSERT_TRUE(cluster_->Kill(*leader).ok());
  // The other two elect a leader (about a second); meanwhile calls fail
  // (no leader, or the dead member). Reads are retried on another member;
  // once there is a leader, reads and writes succeed there.
  absl::StatusOr<pb::RangeResponse> got = absl::UnknownError("not read");
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  do {
    got = Get("/kv/leader");
  } while (!got.ok() && absl::Now() < deadline);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->kvs_size(), 1);
  EXPECT_EQ(got->kvs(0).value(), "v");
  EXPECT_NE(conn_->current(), 0);
  EXPECT_TRUE(PutEventually("/kv/leader", "w"));
  ASSERT_TRUE(cluster_->Restart(*leader).ok());
}

}  // namespace
}  // namespace registrar::etcd
