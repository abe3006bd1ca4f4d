// Conditional changes racing across real `registrar --store=etcd` replicas
// over a real 3-member etcd (service/cluster/DESIGN.md: one elected writer
// decides every change, followers forward theirs to it):
//  - a lease revoked through one replica while two others keep issuing
//    connections bound to it: afterwards no live connection is bound to it,
//    and the revocation ended exactly the connections that were
//    acknowledged;
//  - two replicas cleaning up the same connection at once: each record it
//    held is ended exactly once (in one of the two replies, and one
//    RELEASED event in the cluster's event log);
//  - an owner's live-record quota holds when three replicas issue for it at
//    once.
// Each test asserts that the race it names happened (calls overlapped).

#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "tests/cluster/replicas_fixture.h"

namespace registrar {
namespace {

using ::registrar::testing::Call;
using ::registrar::testing::MakeOwner;
using ::registrar::testing::Node;
using ::registrar::testing::ReplicasFixture;
using ::registrar::testing::Retry;
using ::registrar::testing::Text;
using ::registrar::testing::WatchEvents;

class ReplicasRaceTest : public ReplicasFixture {
 protected:
  // The revision of `id`'s record as `node` describes it.
  uint64_t RevisionOf(Node& node, const std::string& id) {
    v1::DescribeRequest req;
    req.set_id(id);
    v1::DescribeResponse resp;
    grpc::Status s =
        Call(*node.stub, &v1::Registrar::Stub::Describe, req, &resp);
    EXPECT_TRUE(s.ok()) << Text(s);
    return resp.record().revision();
  }
};

// Five rounds: a lease granted through replica 0; replicas 1 and 2 issue
// connections bound to it in a loop until they are refused; once some are
// acknowledged, replica 0 revokes it. The revocation's released list is
// exactly the acknowledged connections, each reads RELEASED on every
// replica, and every refusal says the lease is not live.
TEST_F(ReplicasRaceTest, RevokeOnOneWhileOthersBindConnections) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(3));
  ASSERT_GE(AwaitLeader(), 0);
  int overlapping = 0;  // issues in flight while the revoke was
  for (int round = 0; round < 5; ++round) {
    v1::GrantLeaseRequest grant;
    grant.set_holder(absl::StrCat("gw-race-", round));
    grant.set_ttl_seconds(60);
    v1::GrantLeaseResponse lease;
    grpc::Status s =
        Retry(*nodes_[0].stub, &v1::Registrar::Stub::GrantLease, grant, &lease);
    ASSERT_TRUE(s.ok()) << Text(s);

    absl::Mutex mu;
    std::set<std::string> acked;
    std::vector<grpc::Status> refusals;
    std::atomic<int> in_flight_at_revoke{0};
    std::atomic<bool> revoking{false};
    std::atomic<bool> revoked{false};
    std::vector<std::thread> binders;
    for (int on : {1, 2}) {
      binders.emplace_back([&, on] {
        v1::IssueRequest req = IssueOf(v1::KIND_CONNECTION, 1);
        req.set_lease_id(lease.lease_id());
        for (;;) {
          const bool revoke_started_before = revoking.load();
          v1::IssueResponse resp;
          grpc::Status st =
              Retry(*nodes_[on].stub, &v1::Registrar::Stub::Issue, req, &resp);
          // Sent before the revoke's reply and answered after it was sent.
          if (!revoked.load() && (revoke_started_before || revoking.load())) {
            ++in_flight_at_revoke;
          }
          absl::MutexLock lock(&mu);
          if (!st.ok()) {
            refusals.push_back(st);
            return;
          }
          for (const std::string& id : resp.ids()) acked.insert(id);
        }
      });
    }
    auto acked_count = [&] {
      absl::MutexLock lock(&mu);
      return acked.size();
    };
    ASSERT_TRUE(testing::PollUntil([&] { return acked_count() >= 20; },
                                   absl::Seconds(30)));
    v1::RevokeLeaseRequest revoke;
    revoke.set_lease_id(lease.lease_id());
    v1::RevokeLeaseResponse released;
    revoking = true;
    s = Call(*nodes_[0].stub, &v1::Registrar::Stub::RevokeLease, revoke,
             &released);
    revoked = true;
    for (std::thread& t : binders) t.join();
    ASSERT_TRUE(s.ok()) << Text(s);
    overlapping += in_flight_at_revoke.load();

    ASSERT_EQ(refusals.size(), 2u);
    for (const grpc::Status& r : refusals) {
      EXPECT_TRUE(r.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
                  r.error_code() == grpc::StatusCode::NOT_FOUND)
          << Text(r);
    }
    const std::set<std::string> ended(released.released().begin(),
                                      released.released().end());
    EXPECT_EQ(ended.size(), static_cast<size_t>(released.released_size()))
        << "a record listed twice";
    EXPECT_EQ(ended, acked) << "round " << round;
    const std::vector<std::string> ids(acked.begin(), acked.end());
    for (Node& n : nodes_) {
      ASSERT_NO_FATAL_FAILURE(ExpectAll(n, ids, v1::VERDICT_RELEASED));
    }
  }
  std::printf("issues in flight while the revoke was: %d\n", overlapping);
  EXPECT_GT(overlapping, 0) << "the revokes never raced an issue";
}

// Ten connections, each with 10 contexts opened through it (a run and a
// request each); replicas 1 and 2 then clean up the same connection at the
// same moment. Every record of it is in exactly one of the two replies
// (all in one: a cleanup by connection is one batch), and the event log
// holds one RELEASED event per record.
TEST_F(ReplicasRaceTest, TwoReplicasCleaningOneConnectionEndEachRecordOnce) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(3));
  ASSERT_GE(AwaitLeader(), 0);
  std::map<std::string, int> expected;  // record -> RELEASED events seen
  uint64_t from = 0;
  int overlapped = 0;  // rounds where the two calls were in flight at once
  for (int round = 0; round < 10; ++round) {
    v1::IssueResponse conn;
    grpc::Status s = Retry(*nodes_[0].stub, &v1::Registrar::Stub::Issue,
                           IssueOf(v1::KIND_CONNECTION, 1), &conn);
    ASSERT_TRUE(s.ok()) << Text(s);
    ASSERT_EQ(conn.ids_size(), 1);
    if (from == 0) from = RevisionOf(nodes_[0], conn.ids(0));
    std::set<std::string> records = {conn.ids(0)};
    for (int i = 0; i < 10; ++i) {
      v1::OpenContextRequest open;
      *open.mutable_owner() = owner_;
      open.set_connection_id(conn.ids(0));
      v1::OpenContextResponse opened;
      s = Call(*nodes_[i % 3].stub, &v1::Registrar::Stub::OpenContext, open,
               &opened);
      ASSERT_TRUE(s.ok()) << Text(s);
      records.insert(opened.run_id());
      records.insert(opened.request_id());
    }

    v1::CleanupRequest cleanup;
    *cleanup.mutable_owner() = owner_;
    cleanup.set_connection_id(conn.ids(0));
    v1::CleanupResponse replies[2];
    grpc::Status statuses[2];
    absl::Time started[2], ended_at[2];
    absl::Notification go;
    std::vector<std::thread> cleaners;
    for (int k = 0; k < 2; ++k) {
      cleaners.emplace_back([&, k] {
        go.WaitForNotification();
        started[k] = absl::Now();
        statuses[k] = Call(*nodes_[1 + k].stub, &v1::Registrar::Stub::Cleanup,
                           cleanup, &replies[k]);
        ended_at[k] = absl::Now();
      });
    }
    go.Notify();
    for (std::thread& t : cleaners) t.join();
    std::map<std::string, int> ended;
    for (int k = 0; k < 2; ++k) {
      ASSERT_TRUE(statuses[k].ok()) << Text(statuses[k]);
      for (const std::string& id : replies[k].released()) ++ended[id];
    }
    if (std::max(started[0], started[1]) < std::min(ended_at[0], ended_at[1])) {
      ++overlapped;
    }
    // A cleanup by connection is one batch: one call ended everything, the
    // other found it ended.
    EXPECT_EQ(std::min(replies[0].released_size(), replies[1].released_size()),
              0)
        << "round " << round;
    EXPECT_EQ(ended.size(), records.size()) << "round " << round;
    for (const std::string& id : records) {
      EXPECT_EQ(ended[id], 1) << id << " in round " << round;
      expected[id] = 0;
    }
  }
  std::printf("rounds where the two cleanups overlapped: %d of 10\n",
              overlapped);
  EXPECT_GT(overlapped, 0) << "the cleanups never raced";

  // The event log from the first connection on, through a marker.
  std::vector<std::string> marker = Issue(nodes_[0], 1);
  ASSERT_EQ(marker.size(), 1u);
  const uint64_t last = RevisionOf(nodes_[2], marker[0]);
  ASSERT_GT(last, from);
  std::vector<v1::WatchEvent> events =
      WatchEvents(*nodes_[1].stub, from, last - from + 1);
  ASSERT_EQ(events.size(), last - from + 1);
  for (const v1::WatchEvent& e : events) {
    if (e.type() != v1::EVENT_TYPE_RELEASED) continue;
    auto it = expected.find(e.record().id());
    if (it != expected.end()) ++it->second;
  }
  for (const auto& [id, count] : expected) {
    EXPECT_EQ(count, 1) << id << ": RELEASED events";
  }
}

// An owner with a quota of 60 live records; threads on all three replicas
// issue one thread at a time for it until refused. Exactly 60 are
// acknowledged, every refusal is RESOURCE_EXHAUSTED, every replica lists
// 60; after one is released, one more fits.
TEST_F(ReplicasRaceTest, OwnerQuotaHoldsAcrossReplicas) {
  constexpr int kQuota = 60;
  ASSERT_NO_FATAL_FAILURE(
      StartNodes(3, {absl::StrCat("--owner_quota=", kQuota)}));
  ASSERT_GE(AwaitLeader(), 0);
  absl::Mutex mu;
  std::vector<std::string> acked;
  std::vector<grpc::Status> refusals;
  std::vector<std::thread> issuers;
  absl::Notification go;
  for (int t = 0; t < 6; ++t) {
    issuers.emplace_back([&, t] {
      go.WaitForNotification();
      for (;;) {
        v1::IssueResponse resp;
        grpc::Status s = Retry(*nodes_[t % 3].stub, &v1::Registrar::Stub::Issue,
                               IssueOf(v1::KIND_THREAD, 1), &resp);
        absl::MutexLock lock(&mu);
        if (!s.ok()) {
          refusals.push_back(s);
          return;
        }
        acked.insert(acked.end(), resp.ids().begin(), resp.ids().end());
      }
    });
  }
  go.Notify();
  for (std::thread& t : issuers) t.join();
  EXPECT_EQ(acked.size(), static_cast<size_t>(kQuota));
  ASSERT_EQ(refusals.size(), 6u);
  for (const grpc::Status& s : refusals) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << Text(s);
  }
  for (Node& n : nodes_) {
    v1::ListOwnedRequest list;
    *list.mutable_owner() = owner_;
    list.set_page_size(1000);
    v1::ListOwnedResponse page;
    grpc::Status s =
        Call(*n.stub, &v1::Registrar::Stub::ListOwned, list, &page);
    ASSERT_TRUE(s.ok()) << Text(s);
    EXPECT_EQ(page.records_size(), kQuota) << n.process->grpc_address();
  }
  v1::CleanupRequest release;
  *release.mutable_owner() = owner_;
  release.mutable_ids()->add_ids(acked.front());
  v1::CleanupResponse released;
  grpc::Status s =
      Call(*nodes_[2].stub, &v1::Registrar::Stub::Cleanup, release, &released);
  ASSERT_TRUE(s.ok()) << Text(s);
  ASSERT_EQ(released.released_size(), 1);
  v1::IssueResponse one_more;
  s = Call(*nodes_[1].stub, &v1::Registrar::Stub::Issue,
           IssueOf(v1::KIND_THREAD, 1), &one_more);
  EXPECT_TRUE(s.ok()) << Text(s);
  s = Call(*nodes_[0].stub, &v1::Registrar::Stub::Issue,
           IssueOf(v1::KIND_THREAD, 1), &one_more);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << Text(s);
}

}  // namespace
}  // namespace registrar
