// Several real `registrar --store=etcd` replicas on one prefix over a real
// 3-member etcd (service/cluster/DESIGN.md): one elected writer, followers
// that read through the barrier and forward changes to it.
//  - an ID issued through any replica validates on every other one at
//    once (read-your-writes across replicas);
//  - changing calls on a follower are forwarded, and the registry's rules
//    (Cleanup cascades and ownership, OpenContext's thread reuse, leases)
//    hold as on the writer; errors come back unchanged;
//  - kill -9 of the writer: another replica takes over within the node
//    lease TTL plus a margin, every acknowledged ID still validates, and
//    no ID is ever issued twice;
//  - Watch on a follower sees the writer's changes, and a watcher resuming
//    on another replica from its last revision sees no gap, no duplicate;
//  - a lease expires once cluster-wide (one EXPIRED event per record).

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "client/rpc_status.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "tests/cluster/replicas_fixture.h"

namespace registrar {
namespace {

using ::registrar::testing::Call;
using ::registrar::testing::KillNine;
using ::registrar::testing::kNodeTtlSeconds;
using ::registrar::testing::MakeOwner;
using ::registrar::testing::Node;
using ::registrar::testing::PollUntil;
using ::registrar::testing::ReplicasFixture;
using ::registrar::testing::Retry;
using ::registrar::testing::ScrapeValue;
using ::registrar::testing::Text;
using ::registrar::testing::WatchEvents;

class ReplicasTest : public ReplicasFixture {};

// Issue through each replica in turn, from several threads at once (each
// thread with its own owner); right after each reply the IDs validate VALID
// on both other replicas, Describe there shows the record, and the other
// replicas' ListOwned holds it: thousands of reads, none older than a
// write acknowledged before it began. And Describe gives the same record on
// the writer and a follower.
TEST_F(ReplicasTest, IssuedOnOneValidatesOnTheOthersAtOnce) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(3));
  const int leader = AwaitLeader();
  ASSERT_GE(leader, 0);
  for (size_t i = 0; i < nodes_.size(); ++i) {
    EXPECT_EQ(ScrapeValue(*nodes_[i].process, "registrar_cluster_is_leader")
                  .value_or(-1),
              static_cast<int>(i) == leader ? 1 : 0);
  }
  constexpr int kRounds = 150;
  std::atomic<int> checked{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      const v1::Owner owner = MakeOwner("acme", absl::StrCat("ryw-", t));
      size_t owned = 0;
      for (int round = 0; round < kRounds; ++round) {
        const int on = (t + round) % 3;
        v1::IssueRequest issue = IssueOf(v1::KIND_THREAD, 5);
        *issue.mutable_owner() = owner;
        v1::IssueResponse issued;
        grpc::Status s = Retry(*nodes_[on].stub, &v1::Registrar::Stub::Issue,
                               issue, &issued);
        ASSERT_TRUE(s.ok()) << Text(s);
        ASSERT_EQ(issued.ids_size(), 5);
        owned += 5;
        for (int other = 0; other < 3; ++other) {
          if (other == on) continue;
          v1::Registrar::Stub& stub = *nodes_[other].stub;
          v1::ValidateRequest validate;
          *validate.mutable_owner() = owner;
          for (const std::string& id : issued.ids()) {
            validate.add_items()->set_id(id);
          }
          v1::ValidateResponse verdicts;
          s = Call(stub, &v1::Registrar::Stub::Validate, validate, &verdicts);
          ASSERT_TRUE(s.ok()) << Text(s);
          ASSERT_EQ(verdicts.results_size(), 5);
          for (int i = 0; i < 5; ++i) {
            EXPECT_EQ(verdicts.results(i).verdict(), v1::VERDICT_VALID)
                << issued.ids(i) << " issued on " << on << ", read on "
                << other;
          }
          v1::DescribeRequest describe;
          describe.set_id(issued.ids(round % 5));
          v1::DescribeResponse described;
          s = Call(stub, &v1::Registrar::Stub::Describe, describe, &described);
          ASSERT_TRUE(s.ok()) << Text(s) << " describing " << describe.id()
                              << " issued on " << on << ", read on " << other;
          EXPECT_EQ(described.record().id(), describe.id());
          // ListOwned's first page is enough: a page holds the newest
          // records last, so count them all only every 10th round.
          if (round % 10 == 0) {
            v1::ListOwnedRequest list;
            *list.mutable_owner() = owner;
            list.set_page_size(1000);
            v1::ListOwnedResponse page;
            s = Call(stub, &v1::Registrar::Stub::ListOwned, list, &page);
            ASSERT_TRUE(s.ok()) << Text(s);
            EXPECT_EQ(static_cast<size_t>(page.records_size()), owned)
                << "ListOwned on " << other << " after round " << round;
          }
          ++checked;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(checked.load(), 3 * kRounds * 2);

  std::vector<std::string> ids = Issue(nodes_[(leader + 1) % 3], 1);
  ASSERT_EQ(ids.size(), 1u);
  v1::DescribeRequest req;
  req.set_id(ids[0]);
  v1::DescribeResponse on_leader, on_other;
  ASSERT_TRUE(Call(*nodes_[leader].stub, &v1::Registrar::Stub::Describe, req,
                   &on_leader)
                  .ok());
  ASSERT_TRUE(Call(*nodes_[(leader + 2) % 3].stub,
                   &v1::Registrar::Stub::Describe, req, &on_other)
                  .ok());
  EXPECT_EQ(on_leader.SerializeAsString(), on_other.SerializeAsString());
}

// Every changing call on a follower: forwarded, the writer's rules hold,
// and the writer's errors come back unchanged.
TEST_F(ReplicasTest, ChangesOnAFollowerAreForwardedAndRulesHold) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(2));
  const int leader = AwaitLeader();
  ASSERT_GE(leader, 0);
  Node& follower = nodes_[1 - leader];
  Node& writer = nodes_[leader];
  v1::Registrar::Stub& f = *follower.stub;

  v1::GrantLeaseRequest grant;
  grant.set_holder("gw-1");
  grant.set_ttl_seconds(60);
  v1::GrantLeaseResponse lease;
  ASSERT_TRUE(Retry(f, &v1::Registrar::Stub::GrantLease, grant, &lease).ok());
  v1::KeepAliveRequest keep;
  keep.set_lease_id(lease.lease_id());
  v1::KeepAliveResponse kept;
  grpc::Status s = Call(f, &v1::Registrar::Stub::KeepAlive, keep, &kept);
  ASSERT_TRUE(s.ok()) << Text(s);
  EXPECT_EQ(kept.ttl_seconds(), 60u);

  v1::IssueRequest conn_req = IssueOf(v1::KIND_CONNECTION, 1);
  conn_req.set_lease_id(lease.lease_id());
  v1::IssueResponse conn;
  ASSERT_TRUE(Call(f, &v1::Registrar::Stub::Issue, conn_req, &conn).ok());
  ASSERT_EQ(conn.ids_size(), 1);

  v1::OpenContextRequest open;
  *open.mutable_owner() = owner_;
  open.set_connection_id(conn.ids(0));
  v1::OpenContextResponse first, second;
  ASSERT_TRUE(Call(f, &v1::Registrar::Stub::OpenContext, open, &first).ok());
  EXPECT_FALSE(first.thread_reused());
  open.set_thread_id(first.thread_id());
  ASSERT_TRUE(Call(f, &v1::Registrar::Stub::OpenContext, open, &second).ok());
  EXPECT_TRUE(second.thread_reused());
  EXPECT_EQ(second.thread_id(), first.thread_id());

  // Another owner's cleanup is refused, touching nothing.
  v1::CleanupRequest other;
  *other.mutable_owner() = MakeOwner("acme", "someone-else");
  other.mutable_ids()->add_ids(first.run_id());
  v1::CleanupResponse refused;
  ASSERT_TRUE(Call(f, &v1::Registrar::Stub::Cleanup, other, &refused).ok());
  ASSERT_EQ(refused.refused_size(), 1);
  EXPECT_EQ(refused.released_size(), 0);

  // Releasing the connection releases what was opened through it; the
  // thread outlives it.
  v1::CleanupRequest by_conn;
  *by_conn.mutable_owner() = owner_;
  by_conn.set_connection_id(conn.ids(0));
  v1::CleanupResponse cleaned;
  ASSERT_TRUE(Call(f, &v1::Registrar::Stub::Cleanup, by_conn, &cleaned).ok());
  std::set<std::string> released(cleaned.released().begin(),
                                 cleaned.released().end());
  EXPECT_EQ(released, (std::set<std::string>{
                          conn.ids(0), first.run_id(), first.request_id(),
                          second.run_id(), second.request_id()}));
  for (Node* n : {&follower, &writer}) {
    EXPECT_EQ(Verdicts(*n, {first.thread_id(), first.run_id(), conn.ids(0)}),
              (std::vector<v1::Verdict>{v1::VERDICT_VALID, v1::VERDICT_RELEASED,
                                        v1::VERDICT_RELEASED}));
  }

  v1::RevokeLeaseRequest revoke;
  revoke.set_lease_id(lease.lease_id());
  v1::RevokeLeaseResponse revoked;
  ASSERT_TRUE(
      Call(f, &v1::Registrar::Stub::RevokeLease, revoke, &revoked).ok());
  // The writer's errors, unchanged: NOT_FOUND for a lease that is gone,
  // INVALID_ARGUMENT with the writer's message for a bad request.
  s = Call(f, &v1::Registrar::Stub::KeepAlive, keep, &kept);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << Text(s);
  v1::IssueResponse bad;
  const v1::IssueRequest no_kind = IssueOf(v1::KIND_UNSPECIFIED, 1);
  const grpc::Status via_follower =
      Call(f, &v1::Registrar::Stub::Issue, no_kind, &bad);
  const grpc::Status on_writer =
      Call(*writer.stub, &v1::Registrar::Stub::Issue, no_kind, &bad);
  EXPECT_EQ(via_follower.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(via_follower.error_code(), on_writer.error_code());
  EXPECT_EQ(via_follower.error_message(), on_writer.error_message());
  EXPECT_EQ(via_follower.error_details(), on_writer.error_details());
}

// kill -9 of the writer under load: another replica takes over within the
// node lease TTL plus a margin; every acknowledged ID validates on every
// survivor and no ID was issued twice, before or after.
// How often replica `i` became the writer by `how` ("took_over": its
// follower registry, no reload; "loaded"), as its /metrics says once its
// health tick has run; nullopt while the scrape fails.
std::optional<double> BecameWriter(const Node& n, const std::string& how) {
  return ScrapeValue(*n.process, "registrar_cluster_became_writer_total",
                     {{"how", how}});
}

TEST_F(ReplicasTest, WriterKilledAnotherTakesOverAndNothingIsLost) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(3));
  const int leader = AwaitLeader();
  ASSERT_GE(leader, 0);
  // The first writer became it by taking over its follower registry: one
  // load at start, not two.
  EXPECT_TRUE(PollUntil(
      [&] { return BecameWriter(nodes_[leader], "took_over") == 1.0; },
      absl::Seconds(10)));
  EXPECT_EQ(BecameWriter(nodes_[leader], "loaded"), 0.0);
  absl::Mutex mu;
  std::vector<std::string> acked;
  std::set<std::string> seen;
  std::atomic<bool> stop{false};
  std::atomic<int> duplicates{0};
  std::vector<std::thread> load;
  for (int t = 0; t < 3; ++t) {
    load.emplace_back([&, t] {
      while (!stop.load()) {
        Node& n = nodes_[t];
        if (!n.process->running()) return;
        v1::IssueResponse resp;
        if (!Call(*n.stub, &v1::Registrar::Stub::Issue,
                  IssueOf(v1::KIND_THREAD, 5), &resp)
                 .ok()) {
          continue;
        }
        absl::MutexLock lock(&mu);
        for (const std::string& id : resp.ids()) {
          if (!seen.insert(id).second) ++duplicates;
          acked.push_back(id);
        }
      }
    });
  }
  auto acked_count = [&] {
    absl::MutexLock lock(&mu);
    return acked.size();
  };
  ASSERT_TRUE(
      PollUntil([&] { return acked_count() >= 300; }, absl::Seconds(30)));
  const absl::Time killed_at = absl::Now();
  stop = true;
  for (auto& t : load) t.join();
  ASSERT_NO_FATAL_FAILURE(KillNine(*nodes_[leader].process));

  // Until the dead writer's node lease lapses (the TTL), the followers
  // still name it: once a follower's channel to it has seen the
  // connection gone, a change sent there fails UNAVAILABLE marked
  // NOT_APPLIED (it was never sent on), which clients retry elsewhere.
  {
    grpc::Status early;
    EXPECT_TRUE(PollUntil(
        [&] {
          v1::IssueResponse refused;
          early =
              Call(*nodes_[(leader + 1) % 3].stub, &v1::Registrar::Stub::Issue,
                   IssueOf(v1::KIND_THREAD, 1), &refused);
          return grpc_status::IsNotApplied(grpc_status::ToAbsl(early));
        },
        absl::Seconds(kNodeTtlSeconds) / 2))
        << Text(early);
  }

  // A survivor takes writes again within the TTL and a margin.
  const int survivor = (leader + 1) % 3;
  v1::IssueResponse after;
  grpc::Status s = Retry(*nodes_[survivor].stub, &v1::Registrar::Stub::Issue,
                         IssueOf(v1::KIND_THREAD, 5), &after,
                         absl::Seconds(kNodeTtlSeconds) + absl::Seconds(8));
  ASSERT_TRUE(s.ok()) << Text(s);
  const absl::Duration failover = absl::Now() - killed_at;
  std::printf("failover after kill -9 of the writer: %s\n",
              absl::FormatDuration(failover).c_str());
  const int new_leader = AwaitLeader();
  ASSERT_GE(new_leader, 0);
  EXPECT_NE(new_leader, leader);
  // A follower whose forwarded call found the dead writer's port closed
  // revoked its lease: the election did not wait for the lease's TTL.
  EXPECT_TRUE(PollUntil(
      [&] {
        double revoked = 0;
        for (int i = 0; i < 3; ++i) {
          if (i == leader) continue;
          revoked += ScrapeValue(*nodes_[i].process,
                                 "registrar_cluster_dead_writers_revoked_total")
                         .value_or(0);
        }
        return revoked >= 1;
      },
      absl::Seconds(10)));
  // It took over the registry it followed with, without loading again.
  EXPECT_TRUE(PollUntil(
      [&] { return BecameWriter(nodes_[new_leader], "took_over") == 1.0; },
      absl::Seconds(10)));
  EXPECT_EQ(BecameWriter(nodes_[new_leader], "loaded"), 0.0);

  EXPECT_EQ(duplicates.load(), 0);
  for (const std::string& id : after.ids()) {
    EXPECT_TRUE(seen.insert(id).second) << "issued again: " << id;
  }
  std::vector<std::string> more = Issue(nodes_[(leader + 2) % 3], 50);
  for (const std::string& id : more) {
    EXPECT_TRUE(seen.insert(id).second) << "issued again: " << id;
  }
  acked.insert(acked.end(), after.ids().begin(), after.ids().end());
  acked.insert(acked.end(), more.begin(), more.end());
  for (int i = 0; i < 3; ++i) {
    if (i == leader) continue;
    ASSERT_NO_FATAL_FAILURE(ExpectAll(nodes_[i], acked, v1::VERDICT_VALID));
  }
}

// A watcher on a follower sees what was issued through the other replica;
// one that stops halfway and resumes on a third replica from its last
// revision + 1 gets the rest: no gap, no duplicate.
// A follower killed and started again on its address while its old etcd
// lease (10 s here) still holds its old candidate key; then the writer is
// killed. The next candidate in line is that dead process's key, at the
// address the new process now listens on: without the new process
// revoking it, every follower forwards to the new process, which is not
// the writer, until the old lease runs out.
TEST_F(ReplicasTest, WriterKilledAfterAFollowerRestartedOnItsAddress) {
  const std::vector<std::string> ttl = {"--etcd_node_ttl=10s"};
  ASSERT_NO_FATAL_FAILURE(StartNodes(2, ttl));
  const int leader = AwaitLeader();
  ASSERT_GE(leader, 0);
  const int follower = 1 - leader;
  ASSERT_FALSE(Issue(nodes_[follower], 1).empty());

  const std::string address = nodes_[follower].process->grpc_address();
  ASSERT_NO_FATAL_FAILURE(KillNine(*nodes_[follower].process));
  std::vector<std::string> args = ttl;
  args.push_back("--listen=" + address);
  nodes_[follower] = StartNode(args);
  ASSERT_NE(nodes_[follower].process, nullptr);
  ASSERT_FALSE(Issue(nodes_[follower], 1).empty());

  ASSERT_NO_FATAL_FAILURE(KillNine(*nodes_[leader].process));
  const absl::Time killed = absl::Now();
  v1::IssueResponse resp;
  const grpc::Status s =
      Retry(*nodes_[follower].stub, &v1::Registrar::Stub::Issue,
            IssueOf(v1::KIND_THREAD, 1), &resp, absl::Seconds(30));
  const absl::Duration took = absl::Now() - killed;
  ASSERT_TRUE(s.ok()) << Text(s) << "\n" << nodes_[follower].process->Log();
  std::printf("the restarted replica took changes again after %s\n",
              absl::FormatDuration(took).c_str());
  // Its old lease would have run out about 9 s after the kill.
  EXPECT_LT(took, absl::Seconds(5)) << nodes_[follower].process->Log();
  EXPECT_THAT(nodes_[follower].process->Log(),
              ::testing::HasSubstr("a previous process on this address"));
}

TEST_F(ReplicasTest, WatchOnAFollowerAndResumedElsewhereHasNoGap) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(3));
  const int leader = AwaitLeader();
  ASSERT_GE(leader, 0);
  const int a = (leader + 1) % 3;
  const int b = (leader + 2) % 3;
  // A marker: the revision of its event is where this test's events begin.
  std::vector<std::string> marker = Issue(nodes_[leader], 1);
  ASSERT_EQ(marker.size(), 1u);
  v1::DescribeRequest d;
  d.set_id(marker[0]);
  v1::DescribeResponse described;
  ASSERT_TRUE(
      Call(*nodes_[a].stub, &v1::Registrar::Stub::Describe, d, &described)
          .ok());
  const uint64_t from = described.record().revision() + 1;

  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    for (const std::string& id : Issue(nodes_[i % 2 == 0 ? leader : b], 5)) {
      ids.push_back(id);
    }
  }
  ASSERT_EQ(ids.size(), 100u);
  std::vector<v1::WatchEvent> part1 = WatchEvents(*nodes_[a].stub, from, 40);
  ASSERT_EQ(part1.size(), 40u);
  std::vector<v1::WatchEvent> part2 =
      WatchEvents(*nodes_[b].stub, part1.back().revision() + 1, 60);
  ASSERT_EQ(part2.size(), 60u);
  std::vector<std::string> got;
  uint64_t expect = from;
  for (const auto* part : {&part1, &part2}) {
    for (const v1::WatchEvent& e : *part) {
      EXPECT_EQ(e.revision(), expect++) << "gap or duplicate";
      EXPECT_EQ(e.type(), v1::EVENT_TYPE_ISSUED);
      got.push_back(e.record().id());
    }
  }
  EXPECT_EQ(got, ids);
}

// A lease granted through a follower and never kept alive expires once:
// its connections read EXPIRED on every replica, and the event log holds
// exactly one EXPIRED event for each.
TEST_F(ReplicasTest, LeaseExpiresExactlyOnceClusterWide) {
  ASSERT_NO_FATAL_FAILURE(StartNodes(3));
  const int leader = AwaitLeader();
  ASSERT_GE(leader, 0);
  Node& follower = nodes_[(leader + 1) % 3];
  v1::GrantLeaseRequest grant;
  grant.set_holder("gw-short");
  grant.set_ttl_seconds(1);
  v1::GrantLeaseResponse lease;
  ASSERT_TRUE(
      Retry(*follower.stub, &v1::Registrar::Stub::GrantLease, grant, &lease)
          .ok());
  v1::IssueRequest req = IssueOf(v1::KIND_CONNECTION, 3);
  req.set_lease_id(lease.lease_id());
  v1::IssueResponse conns;
  grpc::Status s =
      Call(*follower.stub, &v1::Registrar::Stub::Issue, req, &conns);
  ASSERT_TRUE(s.ok()) << Text(s);
  const std::vector<std::string> ids(conns.ids().begin(), conns.ids().end());
  for (Node& n : nodes_) {
    EXPECT_TRUE(PollUntil(
        [&] {
          std::vector<v1::Verdict> v = Verdicts(n, ids);
          return v == std::vector<v1::Verdict>(3, v1::VERDICT_EXPIRED);
        },
        absl::Seconds(15)))
        << n.process->grpc_address();
  }
  // Everything up to a marker issued after the expiry, from the start.
  std::vector<std::string> marker = Issue(nodes_[leader], 1);
  ASSERT_EQ(marker.size(), 1u);
  v1::DescribeRequest d;
  d.set_id(marker[0]);
  v1::DescribeResponse described;
  ASSERT_TRUE(
      Call(*follower.stub, &v1::Registrar::Stub::Describe, d, &described).ok());
  const uint64_t last = described.record().revision();
  std::vector<v1::WatchEvent> all =
      WatchEvents(*nodes_[(leader + 2) % 3].stub, 1, last);
  ASSERT_EQ(all.size(), last);
  std::map<std::string, int> expired;
  for (const v1::WatchEvent& e : all) {
    if (e.type() == v1::EVENT_TYPE_EXPIRED) ++expired[e.record().id()];
  }
  for (const std::string& id : ids) EXPECT_EQ(expired[id], 1) << id;
  EXPECT_EQ(expired.size(), ids.size());
}

}  // namespace
}  // namespace registrar
