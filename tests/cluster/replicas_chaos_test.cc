// Chaos over real `registrar --store=etcd` replicas and a real 3-member
// etcd: under mixed load from several registrar::Client instances (each
// given all three replicas), for 20 cycles (10 under a sanitizer)
//  - kill -9 a random replica, wait until the clients make progress again,
//    restart it on its port;
//  - or, in the other test, kill the etcd leader and restart it.
// Afterwards every acknowledged change is present on every replica (an
// acknowledged Issue reads VALID, an acknowledged Cleanup RELEASED), no ID
// was issued twice, a watcher that resumed on whichever replica answered
// saw every revision once, in order, and every acknowledged ID among them.
// Each client's longest run of failed calls is printed (the figures the
// README quotes); the test bounds it loosely (takeover needs the writer's
// node lease to lapse: --etcd_node_ttl, 2 s here).

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "tests/cluster/replicas_fixture.h"

namespace registrar {
namespace {

using ::registrar::testing::KillNine;
using ::registrar::testing::kNodeTtlSeconds;
using ::registrar::testing::MakeOwner;
using ::registrar::testing::Node;
using ::registrar::testing::PollUntil;
using ::registrar::testing::ReplicasFixture;
using ::registrar::testing::SanitizerTimeScale;

constexpr int kClients = 3;

int Cycles() { return 20 / SanitizerTimeScale(); }

// What the clients were told, kept for the checks at the end.
struct Ledger {
  absl::Mutex mu;
  // Acknowledged Issues, with the index of the client (owner) they are of.
  std::map<std::string, int> issued ABSL_GUARDED_BY(mu);
  std::set<std::string> released ABSL_GUARDED_BY(mu);   // acknowledged ends
  std::set<std::string> uncertain ABSL_GUARDED_BY(mu);  // cleanup unanswered
  int duplicates ABSL_GUARDED_BY(mu) = 0;
  int wrong_verdicts ABSL_GUARDED_BY(mu) = 0;
  std::atomic<int64_t> acks{0};  // successful calls of every kind

  void Issued(const std::vector<std::string>& ids, int client) {
    absl::MutexLock lock(&mu);
    for (const std::string& id : ids) {
      if (!issued.emplace(id, client).second) ++duplicates;
    }
  }
};

// One client's load: Issue (3 threads a call), Cleanup of its oldest live
// ID every 4th call, Validate of a random ID of its own every call.
class LoadClient {
 public:
  LoadClient(int index, const std::string& target, Ledger& ledger)
      : index_(index),
        owner_(MakeOwner("acme", absl::StrCat("chaos-", index))),
        ledger_(ledger),
        rng_(index) {
    ClientOptions o;
    o.target = target;
    o.deadline = absl::Seconds(3);
    o.connect_timeout = absl::Milliseconds(300);
    client_ = std::make_unique<Client>(o);
  }

  void Run(const std::atomic<bool>& stop) {
    for (int n = 0; !stop.load(); ++n) {
      Note(Step(n));
    }
  }

  absl::Duration longest_failure() const { return longest_; }
  const std::vector<std::string>& longest_errors() const {
    return longest_errors_;
  }
  int64_t failures() const { return failures_; }
  const v1::Owner& owner() const { return owner_; }

 private:
  bool Step(int n) {
    absl::StatusOr<std::vector<std::string>> ids =
        client_->IssueIds(v1::KIND_THREAD, owner_, 3);
    if (!ids.ok()) return Failed(ids.status());
    ledger_.Issued(*ids, index_);
    live_.insert(live_.end(), ids->begin(), ids->end());
    if (n % 4 == 3 && !live_.empty()) {
      const std::string oldest = live_.front();
      v1::CleanupRequest req;
      *req.mutable_owner() = owner_;
      req.mutable_ids()->add_ids(oldest);
      absl::StatusOr<v1::CleanupResponse> r = client_->Cleanup(req);
      absl::MutexLock lock(&ledger_.mu);
      if (!r.ok()) {
        ledger_.uncertain.insert(oldest);  // it may have been applied
        return Failed(r.status());
      }
      // A retried cleanup whose first attempt was applied reports the ID
      // as already ended: ended all the same.
      if (r->released_size() + r->already_ended_size() != 1) {
        ++ledger_.wrong_verdicts;
      }
      ledger_.released.insert(oldest);
      live_.erase(live_.begin());
    }
    if (!live_.empty()) {
      const std::string& id = live_[rng_() % live_.size()];
      v1::ValidateRequest req;
      *req.mutable_owner() = owner_;
      req.add_items()->set_id(id);
      absl::StatusOr<v1::ValidateResponse> r = client_->Validate(req);
      if (!r.ok()) return Failed(r.status());
      if (r->results_size() != 1 ||
          r->results(0).verdict() != v1::VERDICT_VALID) {
        absl::MutexLock lock(&ledger_.mu);
        ++ledger_.wrong_verdicts;
      }
    }
    ++ledger_.acks;
    return true;
  }

  bool Failed(const absl::Status& s) {
    if (run_errors_.size() < 8) {
      run_errors_.push_back(absl::StrCat(
          absl::FormatTime("%H:%M:%E3S ", absl::Now(), absl::UTCTimeZone()),
          s.ToString().substr(0, 200)));
    }
    return false;
  }

  // Tracks the longest run of failed calls (from the first failure to the
  // next success) and the errors of that run.
  void Note(bool ok) {
    const absl::Time now = absl::Now();
    if (!ok) {
      ++failures_;
      if (failing_since_ == absl::InfiniteFuture()) failing_since_ = now;
      return;
    }
    if (failing_since_ != absl::InfiniteFuture()) {
      if (now - failing_since_ > longest_) {
        longest_ = now - failing_since_;
        longest_errors_ = run_errors_;
      }
      failing_since_ = absl::InfiniteFuture();
    }
    run_errors_.clear();
  }

  const int index_;
  const v1::Owner owner_;
  Ledger& ledger_;
  std::mt19937 rng_;
  std::unique_ptr<Client> client_;
  std::vector<std::string> live_;
  absl::Time failing_since_ = absl::InfiniteFuture();
  absl::Duration longest_ = absl::ZeroDuration();
  int64_t failures_ = 0;
  std::vector<std::string> run_errors_, longest_errors_;
};

// Follows the event log from revision 1 through any replica, resuming from
// the last revision + 1 after every broken stream.
class Watcher {
 public:
  explicit Watcher(const std::string& target) {
    ClientOptions o;
    o.target = target;
    client_ = std::make_unique<Client>(o);
  }

  void Run() {
    while (!stop_.HasBeenNotified()) {
      grpc::ClientContext ctx;
      {
        absl::MutexLock lock(&mu_);
        if (stop_.HasBeenNotified()) return;
        ctx_ = &ctx;
      }
      v1::WatchRequest req;
      req.set_start_revision(NextRevision());
      absl::Status s = client_->Watch(
          req,
          [this](const v1::WatchEvent& e) {
            absl::MutexLock lock(&mu_);
            if (e.revision() != next_) ++gaps_;
            next_ = e.revision() + 1;
            if (e.type() == v1::EVENT_TYPE_ISSUED) {
              issued_.insert(e.record().id());
            }
            return true;
          },
          &ctx);
      {
        absl::MutexLock lock(&mu_);
        ctx_ = nullptr;
        ++streams_;
      }
      // The replica it was on is gone, or none answers yet: try the next.
      stop_.WaitForNotificationWithTimeout(absl::Milliseconds(50));
    }
  }

  void Stop() {
    absl::MutexLock lock(&mu_);
    if (!stop_.HasBeenNotified()) stop_.Notify();
    if (ctx_ != nullptr) ctx_->TryCancel();
  }

  uint64_t NextRevision() {
    absl::MutexLock lock(&mu_);
    return next_;
  }
  int gaps() {
    absl::MutexLock lock(&mu_);
    return gaps_;
  }
  int streams() {
    absl::MutexLock lock(&mu_);
    return streams_;
  }
  bool Saw(const std::string& id) {
    absl::MutexLock lock(&mu_);
    return issued_.contains(id);
  }

 private:
  std::unique_ptr<Client> client_;
  absl::Notification stop_;
  absl::Mutex mu_;
  grpc::ClientContext* ctx_ ABSL_GUARDED_BY(mu_) = nullptr;
  uint64_t next_ ABSL_GUARDED_BY(mu_) = 1;
  int gaps_ ABSL_GUARDED_BY(mu_) = 0;
  int streams_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<std::string> issued_ ABSL_GUARDED_BY(mu_);
};

class ReplicasChaosTest : public ReplicasFixture {
 protected:
  void SetUp() override {
    ReplicasFixture::SetUp();
    if (HasFatalFailure()) return;
    ASSERT_NO_FATAL_FAILURE(StartNodes(3, node_args_));
    ASSERT_GE(AwaitLeader(), 0);
    std::vector<std::string> endpoints;
    for (Node& n : nodes_) endpoints.push_back(n.process->grpc_address());
    target_ = absl::StrJoin(endpoints, ",");
    for (int k = 0; k < kClients; ++k) {
      clients_.push_back(std::make_unique<LoadClient>(k, target_, ledger_));
    }
    watcher_ = std::make_unique<Watcher>(target_);
    for (auto& c : clients_) {
      clients_threads_.emplace_back(
          [this, client = c.get()] { client->Run(stop_); });
    }
    watcher_thread_ = std::thread([this] { watcher_->Run(); });
  }

  void TearDown() override {
    StopClients();
    StopWatcher();
  }

  void StopClients() {
    stop_ = true;
    for (std::thread& t : clients_threads_) t.join();
    clients_threads_.clear();
  }
  void StopWatcher() {
    if (watcher_ != nullptr) watcher_->Stop();
    if (watcher_thread_.joinable()) watcher_thread_.join();
  }

  // Waits until the clients acknowledged `calls` more calls.
  bool Progress(int calls, absl::Duration bound) {
    const int64_t from = ledger_.acks.load();
    return PollUntil([&] { return ledger_.acks.load() >= from + calls; },
                     bound);
  }

  // Replica i again, on the port it had (the clients know only those).
  void RestartNode(int i) {
    const std::string address = nodes_[i].process->grpc_address();
    std::vector<std::string> args = node_args_;
    args.push_back("--listen=" + address);
    nodes_[i] = StartNode(args);
    ASSERT_NE(nodes_[i].process, nullptr);
    ASSERT_EQ(nodes_[i].process->grpc_address(), address);
  }

  // Stops the load and checks what the file comment says, on every
  // replica.
  void CheckEverything() {
    // A marker issued after the load: the watcher (which followed the log
    // through the kills) must get past it.
    StopClients();
    std::vector<std::string> marker = Issue(nodes_[0], 1);
    ASSERT_EQ(marker.size(), 1u);
    v1::DescribeRequest d;
    d.set_id(marker[0]);
    v1::DescribeResponse described;
    ASSERT_TRUE(testing::Call(*nodes_[1].stub, &v1::Registrar::Stub::Describe,
                              d, &described)
                    .ok());
    const uint64_t last = described.record().revision();
    const bool caught_up = PollUntil(
        [&] { return watcher_->NextRevision() > last; }, absl::Seconds(60));
    StopWatcher();
    ASSERT_TRUE(caught_up) << "watcher at " << watcher_->NextRevision()
                           << ", log at " << last;
    EXPECT_EQ(watcher_->gaps(), 0) << "gap or duplicate in the event log";

    absl::MutexLock lock(&ledger_.mu);
    EXPECT_EQ(ledger_.duplicates, 0) << "an ID was issued twice";
    EXPECT_EQ(ledger_.wrong_verdicts, 0);
    EXPECT_GT(ledger_.issued.size(), 100u) << "too little load to judge";
    std::printf(
        "acknowledged: %zu IDs issued, %zu released; %zu cleanups "
        "unanswered\n",
        ledger_.issued.size(), ledger_.released.size(),
        ledger_.uncertain.size());
    std::printf("the watcher used %d streams\n", watcher_->streams());
    for (const auto& [id, client] : ledger_.issued) {
      ASSERT_TRUE(watcher_->Saw(id)) << id << " missing from the event log";
    }
    for (size_t k = 0; k < clients_.size(); ++k) {
      std::vector<std::string> ids;
      for (const auto& [id, client] : ledger_.issued) {
        if (client == static_cast<int>(k)) ids.push_back(id);
      }
      // Each client's IDs, checked as that owner on every replica.
      owner_ = clients_[k]->owner();
      for (Node& n : nodes_) {
        std::vector<v1::Verdict> got = AllVerdicts(n, ids);
        ASSERT_EQ(got.size(), ids.size());
        for (size_t i = 0; i < ids.size(); ++i) {
          const std::string& id = ids[i];
          if (ledger_.uncertain.contains(id)) {
            EXPECT_TRUE(got[i] == v1::VERDICT_VALID ||
                        got[i] == v1::VERDICT_RELEASED)
                << id << ": " << v1::Verdict_Name(got[i]);
          } else {
            EXPECT_EQ(got[i], ledger_.released.contains(id)
                                  ? v1::VERDICT_RELEASED
                                  : v1::VERDICT_VALID)
                << id << " on " << n.process->grpc_address();
          }
        }
      }
    }
  }

  // The replicas' logs, the last 3000 bytes of each.
  std::string Logs() {
    std::string out;
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (nodes_[i].process == nullptr) continue;
      const std::string log = nodes_[i].process->Log();
      absl::StrAppend(&out, "--- replica ", i, " (",
                      nodes_[i].process->grpc_address(), "):\n",
                      log.substr(log.size() > 3000 ? log.size() - 3000 : 0));
    }
    return out;
  }

  void Report(const char* what, absl::Duration bound) {
    for (size_t k = 0; k < clients_.size(); ++k) {
      std::printf(
          "%s: client %zu longest run of failed calls %s (%lld "
          "failed calls)\n",
          what, k, absl::FormatDuration(clients_[k]->longest_failure()).c_str(),
          static_cast<long long>(clients_[k]->failures()));
      EXPECT_LE(clients_[k]->longest_failure(), bound * SanitizerTimeScale())
          << "client " << k << "; the errors of that run:\n"
          << absl::StrJoin(clients_[k]->longest_errors(), "\n")
          << "\nthe replicas' logs now:\n"
          << Logs();
    }
  }

  std::vector<std::string> node_args_;  // extra flags of every replica
  Ledger ledger_;
  std::string target_;
  std::vector<std::unique_ptr<LoadClient>> clients_;
  std::unique_ptr<Watcher> watcher_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> clients_threads_;
  std::thread watcher_thread_;
};

TEST_F(ReplicasChaosTest, ReplicaKilledAndRestartedEveryFewSeconds) {
  ASSERT_TRUE(Progress(200, absl::Seconds(30)));
  std::mt19937 rng(::testing::UnitTest::GetInstance()->random_seed());
  int writer_kills = 0;
  for (int cycle = 0; cycle < Cycles(); ++cycle) {
    const int leader = AwaitLeader();
    ASSERT_GE(leader, 0) << "cycle " << cycle;
    const int victim = static_cast<int>(rng() % nodes_.size());
    if (victim == leader) ++writer_kills;
    const absl::Time killed = absl::Now();
    ASSERT_NO_FATAL_FAILURE(KillNine(*nodes_[victim].process));
    ASSERT_TRUE(Progress(50, absl::Seconds(kNodeTtlSeconds + 20)))
        << "no progress after killing replica " << victim;
    std::printf("cycle %d: killed %s %d; clients progressed after %s\n", cycle,
                victim == leader ? "writer" : "follower", victim,
                absl::FormatDuration(absl::Now() - killed).c_str());
    ASSERT_NO_FATAL_FAILURE(RestartNode(victim));
    ASSERT_TRUE(Progress(50, absl::Seconds(20)));
  }
  std::printf("%d cycles, %d of them killed the writer\n", Cycles(),
              writer_kills);
  ASSERT_GE(AwaitLeader(), 0);
  // Killing the writer: a follower whose forwarded call finds its port
  // refusing revokes its lease (or, when the next in line is a dead process
  // at the follower's own address, that one's), the next is elected and
  // takes over its registry; a follower: the clients move on at once.
  // Issue 13's target is 1 s (measured 0.20-0.38 s, 2026-12-04); the bound
  // leaves room for a loaded machine.
  Report("replica kills", absl::Seconds(2));
  ASSERT_NO_FATAL_FAILURE(CheckEverything());
}

// Replicas with the default node lease TTL (10 s: a keep-alive goes out
// every TTL / 3 and the lease counts as held until the last answered one's
// send time + TTL - 2 s, so an etcd election of a second or two is ridden
// out). With the 2 s of the replica-kill test, an election makes every
// replica give its node id up (it then refuses writes until it has
// claimed another and rejoined).
class EtcdChaosTest : public ReplicasChaosTest {
 protected:
  EtcdChaosTest() { node_args_ = {"--etcd_node_ttl=10s"}; }
};

TEST_F(EtcdChaosTest, EtcdLeaderKilledAndRestartedEveryFewSeconds) {
  ASSERT_TRUE(Progress(200, absl::Seconds(30)));
  absl::Duration slowest = absl::ZeroDuration();
  for (int cycle = 0; cycle < Cycles(); ++cycle) {
    absl::StatusOr<int> leader = cluster_->Leader();
    ASSERT_TRUE(leader.ok()) << leader.status();
    const absl::Time killed = absl::Now();
    ASSERT_TRUE(cluster_->Kill(*leader).ok());
    ASSERT_TRUE(Progress(50, absl::Seconds(30)))
        << "no progress after killing etcd member " << *leader << "\n"
        << Logs();
    const absl::Duration took = absl::Now() - killed;
    slowest = std::max(slowest, took);
    if (took > absl::Seconds(3)) {
      // Past the target: what the replicas saw, while it is in their logs.
      std::printf("cycle %d was slow; the replicas' logs:\n%s", cycle,
                  Logs().c_str());
    }
    std::printf(
        "cycle %d: killed etcd leader %d; clients progressed after "
        "%s\n",
        cycle, *leader, absl::FormatDuration(took).c_str());
    ASSERT_TRUE(cluster_->Restart(*leader).ok());
    ASSERT_TRUE(cluster_->WaitHealthy(absl::Seconds(30)).ok());
    ASSERT_TRUE(Progress(50, absl::Seconds(20)))
        << "no progress after restarting etcd member " << *leader << "\n"
        << Logs();
  }
  std::printf("etcd leader kills: slowest progress of 50 calls %s\n",
              absl::FormatDuration(slowest).c_str());
  // Issue 13's target: etcd's election time (its election timeout, 1 s
  // here) + 1 s. A Txn that the dead leader dropped is sent again after
  // --etcd_txn_attempt_timeout (1 s), not after etcd's own request timeout
  // (7 s; with it, runs of 2.1 s and stalls of 5.3 s), and so is a
  // follower's read probe. Measured on the dev machine, 2026-12-04: no
  // failed call in 60 kills; one run of .ci/run on a fresh clone had one
  // stall of 5.6 s in 20 kills (runs of failed calls of 2.1 and 2.5 s),
  // cause not found (slow cycles now print the replicas' logs). The bound
  // is the target + 2 s.
  Report("etcd leader kills", absl::Seconds(1 + 1 + 2));
  ASSERT_NO_FATAL_FAILURE(CheckEverything());
}

}  // namespace
}  // namespace registrar
