// Crash test: a load of Issue/OpenContext/Cleanup/GrantLease/RevokeLease
// runs against the real server in fsync mode while the test kill -9s it at
// random moments, again and again, on the same data dir (some restarts with
// the server's clock set back half an hour). After every restart it checks that
//  - every acknowledged mutation is there, with the right owner, kind and
//    state (records touched by a call whose outcome is unknown may be in
//    either state, but never half of a call: a batch is all there or not);
//  - cascades and leases are consistent (no live run/request under an ended
//    connection, no live connection without a live lease);
//  - no ID was ever issued twice, and every ID minted after a restart sorts
//    after every ID seen before it (the ID clock never goes back).

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/integration/data_dir.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_util.h"

namespace registrar {
namespace {

using testing::KillNine;
using testing::SanitizerTimeScale;
using testing::ServerProcess;
using testing::TestDir;

constexpr int kWorkers = 4;
constexpr int kUsersPerWorker = 3;
constexpr int kRestarts = 22;

// What the test knows of one record.
struct Known {
  std::string id;
  v1::Kind kind;
  std::string user;
  std::string connection;  // opened through, "" when none
  std::string lease;       // connections: bound to
  std::string call;        // label "call" of the Issue/OpenContext
  bool released = false;   // an acknowledged call released it
  bool uncertain = false;  // a call with unknown outcome may have ended it
};

// Everything acknowledged so far, shared by the workers.
class Model {
 public:
  void AddIssued(const std::vector<Known>& records) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    for (const Known& k : records) {
      EXPECT_TRUE(all_ids_.insert(k.id).second) << "issued twice: " << k.id;
      index_[k.id] = records_.size();
      records_.push_back(k);
      acked_calls_[k.call]++;
    }
  }
  void AddUnackedCall(const std::string& call, int expected)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    unacked_calls_[call] = expected;
  }
  void MarkReleased(const std::vector<std::string>& ids)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    for (const std::string& id : ids) {
      auto it = index_.find(id);
      if (it != index_.end()) records_[it->second].released = true;
    }
  }
  // A release with unknown outcome: these may have ended, and so may
  // whatever they cascade to (the check below allows that).
  void MarkUncertain(const std::vector<std::string>& ids)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    for (const std::string& id : ids) {
      auto it = index_.find(id);
      if (it != index_.end()) records_[it->second].uncertain = true;
    }
    uncertain_all_ = uncertain_all_ || ids.empty();
  }
  void MarkLeaseUncertain(const std::string& lease) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    for (Known& k : records_) {
      if (k.lease == lease) k.uncertain = true;
    }
  }
  // Waits until at least `n` records are acknowledged, or `bound` passed;
  // whether they were.
  bool AwaitRecords(size_t n, absl::Duration bound) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return records_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), bound);
  }
  size_t RecordCount() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return records_.size();
  }
  std::vector<Known> Snapshot() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return records_;
  }
  std::map<std::string, int> AckedCalls() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return acked_calls_;
  }
  std::map<std::string, int> UnackedCalls() const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return unacked_calls_;
  }
  bool Seen(const std::string& id) const ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return all_ids_.contains(id);
  }
  void AddSeen(const std::string& id) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    all_ids_.insert(id);
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<Known> records_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, size_t> index_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<std::string> all_ids_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> acked_calls_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int> unacked_calls_ ABSL_GUARDED_BY(mu_);
  bool uncertain_all_ ABSL_GUARDED_BY(mu_) = false;
};

v1::Owner OwnerOf(const std::string& user) {
  return testing::MakeOwner("crash", user);
}

// The 26 base32 characters: ordered like the ID's time and sequence.
std::string SuffixOf(const std::string& id) {
  return id.substr(id.find('_') + 1);
}

// One worker's load against one server run; stops at the first error
// (the server was killed) or when `stop` is set.
void RunWorker(int worker, int run, const std::string& target, Model& model,
               std::atomic<bool>& stop) {
  ClientOptions options;
  options.target = target;
  options.deadline = absl::Seconds(3);
  options.max_attempts = 1;  // a retry would blur acknowledged outcomes
  Client client(options);
  std::mt19937 rng(worker * 7919 + run);
  std::vector<std::string> users;
  for (int u = 0; u < kUsersPerWorker; ++u) {
    users.push_back(absl::StrCat("w", worker, "u", u));
  }
  std::vector<std::string> leases;
  std::vector<std::pair<std::string, std::string>> connections;  // user, id
  int call_seq = 0;
  while (!stop.load()) {
    const std::string call =
        absl::StrCat("r", run, "w", worker, "c", call_seq++);
    const std::string& user = users[rng() % users.size()];
    const int op = rng() % 10;
    if (op == 0 || leases.empty()) {
      v1::GrantLeaseRequest req;
      req.set_holder(absl::StrCat("gw-", worker));
      req.set_ttl_seconds(600);
      auto resp = client.GrantLease(req);
      if (!resp.ok()) return;
      leases.push_back(resp->lease_id());
    } else if (op <= 3) {
      const int count = 1 + rng() % 3;
      v1::IssueRequest req;
      req.set_kind(v1::KIND_CONNECTION);
      *req.mutable_owner() = OwnerOf(user);
      req.set_count(count);
      const std::string lease = leases[rng() % leases.size()];
      req.set_lease_id(lease);
      (*req.mutable_labels())["call"] = call;
      model.AddUnackedCall(call, count);
      auto resp = client.Issue(req);
      if (!resp.ok()) {
        if (resp.status().code() == absl::StatusCode::kFailedPrecondition) {
          continue;  // the lease was revoked meanwhile
        }
        return;
      }
      std::vector<Known> known;
      for (const std::string& id : resp->ids()) {
        known.push_back({id, v1::KIND_CONNECTION, user, "", lease, call});
        connections.emplace_back(user, id);
      }
      model.AddIssued(known);
    } else if (op <= 5 && !connections.empty()) {
      const auto& [conn_user, conn] = connections[rng() % connections.size()];
      v1::OpenContextRequest req;
      *req.mutable_owner() = OwnerOf(conn_user);
      req.set_connection_id(conn);
      (*req.mutable_labels())["call"] = call;
      model.AddUnackedCall(call, 3);
      auto resp = client.OpenContext(req);
      if (!resp.ok()) {
        if (resp.status().code() == absl::StatusCode::kFailedPrecondition) {
          continue;  // connection ended meanwhile
        }
        return;
      }
      model.AddIssued(
          {{resp->thread_id(), v1::KIND_THREAD, conn_user, conn, "", call},
           {resp->run_id(), v1::KIND_RUN, conn_user, conn, "", call},
           {resp->request_id(), v1::KIND_REQUEST, conn_user, conn, "", call}});
    } else if (op <= 7) {
      const int count = 1 + rng() % 20;
      v1::IssueRequest req;
      req.set_kind(v1::KIND_THREAD);
      *req.mutable_owner() = OwnerOf(user);
      req.set_count(count);
      (*req.mutable_labels())["call"] = call;
      model.AddUnackedCall(call, count);
      auto resp = client.Issue(req);
      if (!resp.ok()) return;
      std::vector<Known> known;
      for (const std::string& id : resp->ids()) {
        known.push_back({id, v1::KIND_THREAD, user, "", "", call});
      }
      model.AddIssued(known);
    } else if (op == 8 && !connections.empty()) {
      const size_t i = rng() % connections.size();
      const auto [conn_user, conn] = connections[i];
      connections.erase(connections.begin() + i);
      v1::CleanupRequest req;
      *req.mutable_owner() = OwnerOf(conn_user);
      req.set_connection_id(conn);
      model.MarkUncertain({conn});
      auto resp = client.Cleanup(req);
      if (!resp.ok()) return;
      model.MarkReleased({resp->released().begin(), resp->released().end()});
    } else if (op == 9 && leases.size() > 1) {
      const size_t i = rng() % leases.size();
      const std::string lease = leases[i];
      leases.erase(leases.begin() + i);
      v1::RevokeLeaseRequest req;
      req.set_lease_id(lease);
      model.MarkLeaseUncertain(lease);
      auto resp = client.RevokeLease(req);
      if (!resp.ok()) return;
      model.MarkReleased({resp->released().begin(), resp->released().end()});
    }
  }
}

// Checks everything the model knows against the restarted server. Sets
// *max_suffix to the greatest ID (suffix) the server holds.
void Verify(Client& client, Model& model, std::string* max_suffix) {
  const std::vector<Known> known = model.Snapshot();
  absl::flat_hash_map<std::string, v1::Record> found;
  // Validate with records, in batches, per owner.
  std::map<std::string, std::vector<const Known*>> by_user;
  for (const Known& k : known) by_user[k.user].push_back(&k);
  for (const auto& [user, list] : by_user) {
    for (size_t i = 0; i < list.size(); i += 500) {
      v1::ValidateRequest req;
      *req.mutable_owner() = OwnerOf(user);
      req.set_include_records(true);
      for (size_t j = i; j < std::min(list.size(), i + 500); ++j) {
        req.add_items()->set_id(list[j]->id);
      }
      auto resp = client.Validate(req);
      ASSERT_TRUE(resp.ok()) << resp.status();
      ASSERT_EQ(resp->results_size(), req.items_size());
      for (int j = 0; j < resp->results_size(); ++j) {
        const Known& k = *list[i + j];
        const v1::ValidateResult& r = resp->results(j);
        ASSERT_TRUE(r.verdict() == v1::VERDICT_VALID ||
                    r.verdict() == v1::VERDICT_RELEASED ||
                    r.verdict() == v1::VERDICT_EXPIRED)
            << "acknowledged " << k.id << " lost: verdict "
            << v1::Verdict_Name(r.verdict());
        EXPECT_EQ(r.record().kind(), k.kind) << k.id;
        EXPECT_EQ(r.record().owner().user_id(), k.user) << k.id;
        found[k.id] = r.record();
      }
    }
  }
  // States: acknowledged releases are released; untouched records are live.
  for (const Known& k : known) {
    const v1::Record& r = found[k.id];
    if (k.released) {
      EXPECT_EQ(r.state(), v1::STATE_RELEASED) << k.id;
    } else if (!k.uncertain && k.connection.empty() &&
               k.kind != v1::KIND_CONNECTION) {
      EXPECT_EQ(r.state(), v1::STATE_LIVE) << "never released: " << k.id;
    }
  }
  // Cascade and lease consistency over everything the server holds, and no
  // half-applied call.
  std::map<std::string, int> call_counts;
  absl::flat_hash_map<std::string, v1::Record> all;
  for (const auto& [user, list] : by_user) {
    std::string token;
    do {
      v1::ListOwnedRequest req;
      *req.mutable_owner() = OwnerOf(user);
      req.set_include_ended(true);
      req.set_page_size(1000);
      req.set_page_token(token);
      auto resp = client.ListOwned(req);
      ASSERT_TRUE(resp.ok()) << resp.status();
      for (const v1::Record& r : resp->records()) {
        all[r.id()] = r;
        if (SuffixOf(r.id()) > *max_suffix) *max_suffix = SuffixOf(r.id());
        auto label = r.labels().find("call");
        ASSERT_NE(label, r.labels().end()) << r.id();
        call_counts[label->second]++;
        model.AddSeen(r.id());
      }
      token = resp->next_page_token();
    } while (!token.empty());
  }
  const auto acked_calls = model.AckedCalls();
  for (const auto& [call, n] : acked_calls) {
    EXPECT_EQ(call_counts[call], n) << "acknowledged call " << call;
  }
  ASSERT_GE(all.size(), known.size());
  for (const auto& [call, expected] : model.UnackedCalls()) {
    const int n = call_counts[call];
    EXPECT_TRUE(n == 0 || n == expected)
        << "call " << call << " half applied: " << n << " of " << expected;
  }
  absl::flat_hash_map<std::string, bool> lease_live;
  for (const auto& [id, r] : all) {
    if (r.state() != v1::STATE_LIVE) continue;
    if (!r.connection_id().empty() && r.kind() != v1::KIND_THREAD) {
      auto conn = all.find(r.connection_id());
      ASSERT_NE(conn, all.end());
      EXPECT_EQ(conn->second.state(), v1::STATE_LIVE)
          << id << " is live under ended connection " << r.connection_id();
    }
    if (r.kind() == v1::KIND_CONNECTION && !r.lease_id().empty()) {
      if (!lease_live.contains(r.lease_id())) {
        v1::KeepAliveRequest req;
        req.set_lease_id(r.lease_id());
        lease_live[r.lease_id()] = client.KeepAlive(req).ok();
      }
      EXPECT_TRUE(lease_live[r.lease_id()])
          << id << " is live without its lease " << r.lease_id();
    }
  }
}

TEST(CrashTest, KillNineNeverLosesAcknowledgedWorkNorRepeatsAnId) {
  TestDir dir("crash-test");

  Model model;
  std::mt19937 rng(20261125);
  std::string max_suffix_before;  // greatest ID suffix seen in earlier runs
  for (int run = 0; run < kRestarts; ++run) {
    ServerProcess::Options options;
    options.key_path = dir.key_path();
    options.data_dir = dir.data_dir();
    options.args = {"--durability=fsync"};
    // Every third run starts with the wall clock 30 minutes behind (less
    // than the 1 h tombstone retention: records ended under a clock set
    // back look older to later runs and would be dropped early otherwise).
    if (run % 3 == 2) options.args.push_back("--clock_offset=-30m");
    auto server = ServerProcess::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    ClientOptions copts;
    copts.target = (*server)->grpc_address();
    Client client(copts);
    Verify(client, model, &max_suffix_before);
    if (::testing::Test::HasFailure()) {
      ADD_FAILURE() << "after restart " << run << ":\n" << (*server)->Log();
      return;
    }

    const size_t acked_before = model.RecordCount();
    std::atomic<bool> stop{false};
    std::vector<std::thread> workers;
    for (int w = 0; w < kWorkers; ++w) {
      workers.emplace_back([&, w] {
        RunWorker(w, run, (*server)->grpc_address(), model, stop);
      });
    }
    // Kill after a random amount of acknowledged work (not time): the
    // crash point varies, and every run has done something to check.
    const size_t kill_after = acked_before + 50 + rng() % 400;
    EXPECT_TRUE(model.AwaitRecords(kill_after,
                                   absl::Seconds(30) * SanitizerTimeScale()))
        << "run " << run << " acknowledged only "
        << model.RecordCount() - acked_before << " records";
    // The server must have been alive and well until this kill.
    ASSERT_TRUE((*server)->running());
    ASSERT_FALSE((*server)->WaitForExit(absl::ZeroDuration()).has_value())
        << "server died on its own in run " << run << ":\n"
        << (*server)->Log();
    ASSERT_NO_FATAL_FAILURE(KillNine(**server));
    stop = true;
    for (std::thread& t : workers) t.join();

    // IDs acknowledged in this run sort after every ID stored before it
    // started, even when its clock was an hour behind.
    int this_run = 0;
    for (const Known& k : model.Snapshot()) {
      if (k.call.rfind(absl::StrCat("r", run, "w"), 0) == 0) {
        ++this_run;
        EXPECT_GT(SuffixOf(k.id), max_suffix_before)
            << "run " << run << " minted " << k.id
            << " at or below an earlier run's ID";
      }
    }
    EXPECT_GT(this_run, 0) << "run " << run << " acknowledged nothing";
  }
  // A final clean start verifies the last crash too.
  ServerProcess::Options options;
  options.key_path = dir.key_path();
  options.data_dir = dir.data_dir();
  auto server = ServerProcess::Start(options);
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions copts;
  copts.target = (*server)->grpc_address();
  Client client(copts);
  std::string max_suffix;
  // Every run acknowledged work (checked above): Verify checks it all.
  ASSERT_GT(model.RecordCount(), 0u);
  Verify(client, model, &max_suffix);
  EXPECT_GT(model.AckedCalls().size(), 100u) << "the load did too little";
  EXPECT_EQ(testing::StopServer(**server), 0);
}

}  // namespace
}  // namespace registrar
