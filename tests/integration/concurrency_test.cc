// Many concurrent clients against one server: 16 threads, 50 owners (each
// owner driven by exactly one thread, so each thread can keep an exact model
// of its owners' records), mixed Issue / OpenContext / Validate / Cleanup /
// RevokeLease (each worker holds its own lease, so it knows every
// connection bound to it).
// Every reply is checked against the model as it arrives; afterwards every
// record's state (ListOwned with include_ended, paginated) and verdict
// (Validate with include_records) must match the model, and no ID may have
// been issued twice across all threads.

#include <algorithm>
#include <atomic>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_util.h"

namespace registrar {
namespace {

using ::registrar::testing::MakeOwner;
using ::registrar::testing::OwnerText;
using ::registrar::testing::ServerProcess;
using ::registrar::testing::StatusText;

constexpr int kThreads = 16;
constexpr int kUsers = 50;
constexpr int kOpsPerThread = 1200;
// Scaled by SanitizerTimeScale: the workers stop at kOpsPerThread each, or
// at this bound, which only a wedged server should reach.
constexpr absl::Duration kMaxRunTime = absl::Seconds(25);
// What each worker must have done for the checks to cover something; far
// below what any machine does in kMaxRunTime, so no bound on its speed.
constexpr int kMinOpsPerThread = 100;

// User i: tenant-(i%2)/user-(i/2), so pairs of users share a user_id across
// tenants. Driven by thread i % kThreads.
v1::Owner UserOwner(int user) {
  return MakeOwner(absl::StrCat("tenant-", user % 2),
                   absl::StrCat("user-", user / 2));
}

// The suffix of an ID (after '_'): its text order is its 128-bit order.
std::string Suffix(const std::string& id) {
  const size_t sep = id.find('_');
  return sep == std::string::npos ? id : id.substr(sep + 1);
}

struct ModelRecord {
  v1::Kind kind = v1::KIND_UNSPECIFIED;
  int user = -1;
  std::string parent;
  std::string connection;
  std::string lease;  // connections bound to a lease
  bool live = true;
};

// Published IDs of every thread, for NOT_OWNER checks by other owners.
class SharedPool {
 public:
  void Add(const std::string& id, int user) {
    std::lock_guard<std::mutex> lock(mu_);
    ids_.emplace_back(id, user);
  }
  // A random published ID not owned by `user`, if any.
  bool Pick(std::mt19937& rng, int user, std::string* id) {
    std::lock_guard<std::mutex> lock(mu_);
    if (ids_.empty()) return false;
    for (int tries = 0; tries < 8; ++tries) {
      const auto& [candidate, owner] = ids_[rng() % ids_.size()];
      if (owner != user) {
        *id = candidate;
        return true;
      }
    }
    return false;
  }

 private:
  std::mutex mu_;
  std::vector<std::pair<std::string, int>> ids_;
};

// One worker: its owners, its model, its minted IDs.
class Worker {
 public:
  Worker(int index, Client& client, SharedPool& pool)
      : index_(index), client_(client), pool_(pool), rng_(1000 + index) {
    for (int u = index; u < kUsers; u += kThreads) users_.push_back(u);
  }

  void Run(absl::Time deadline) {
    if (!GrantLease()) return;
    for (int op = 0; op < kOpsPerThread && absl::Now() < deadline; ++op) {
      if (failures_ > 5) return;  // enough evidence; stop the noise
      const int user = users_[rng_() % users_.size()];
      const int dice = static_cast<int>(rng_() % 100);
      if (dice < 12) {
        IssueThreads(user);
      } else if (dice < 22) {
        IssueConnection(user);
      } else if (dice < 45) {
        OpenContext(user);
      } else if (dice < 53) {
        IssueChild(user, v1::KIND_RUN);
      } else if (dice < 60) {
        IssueChild(user, v1::KIND_REQUEST);
      } else if (dice < 78) {
        Validate(user);
      } else if (dice < 88) {
        CleanupConnection(user);
      } else if (dice < 97) {
        CleanupIds(user);
      } else if (dice < 99) {
        CleanupAll(user);
      } else {
        RevokeLease();
      }
      ++ops_;
    }
  }

  const std::map<std::string, ModelRecord>& model() const { return model_; }
  const std::vector<std::string>& minted() const { return minted_; }
  const std::vector<int>& users() const { return users_; }
  int ops() const { return ops_; }

 private:
  void Fail(const std::string& what) {
    ++failures_;
    ADD_FAILURE() << "worker " << index_ << ": " << what;
  }

  void Record(const std::string& id, v1::Kind kind, int user,
              const std::string& parent, const std::string& connection,
              const std::string& lease = "") {
    minted_.push_back(id);
    if (model_.count(id) != 0) Fail("ID issued twice: " + id);
    model_[id] = ModelRecord{kind, user, parent, connection, lease, true};
    by_user_kind_[{user, kind}].push_back(id);
    if (rng_() % 4 == 0) pool_.Add(id, user);
  }

  // A random ID of `user` of `kind` (live or ended), or "".
  std::string PickOwn(int user, v1::Kind kind) {
    auto it = by_user_kind_.find({user, kind});
    if (it == by_user_kind_.end() || it->second.empty()) return "";
    return it->second[rng_() % it->second.size()];
  }

  bool Live(const std::string& id) const {
    auto it = model_.find(id);
    return it != model_.end() && it->second.live;
  }

  // Ends `root` and its live descendants in the model, as the registry's
  // rule 3 says (a connection's threads survive it). Appends what it ended.
  void Cascade(const std::string& root, std::vector<std::string>* ended) {
    std::vector<std::string> stack = {root};
    while (!stack.empty()) {
      const std::string id = stack.back();
      stack.pop_back();
      ModelRecord& r = model_[id];
      if (!r.live) continue;
      r.live = false;
      ended->push_back(id);
      for (auto& [child_id, child] : model_) {
        if (!child.live || child.user != r.user) continue;
        if (child.parent != id && child.connection != id) continue;
        if (r.kind == v1::KIND_CONNECTION && child.kind == v1::KIND_THREAD) {
          continue;
        }
        stack.push_back(child_id);
      }
    }
  }

  void IssueThreads(int user) {
    const uint32_t count = 1 + rng_() % 3;
    auto ids = client_.IssueIds(v1::KIND_THREAD, UserOwner(user), count);
    if (!ids.ok()) return Fail("Issue threads: " + StatusText(ids.status()));
    if (ids->size() != count) return Fail("Issue returned a wrong count");
    for (size_t i = 0; i < ids->size(); ++i) {
      if (i > 0 && !(Suffix((*ids)[i - 1]) < Suffix((*ids)[i]))) {
        Fail("Issue IDs not increasing: " + (*ids)[i - 1] + " " + (*ids)[i]);
      }
      Record((*ids)[i], v1::KIND_THREAD, user, "", "");
    }
  }

  // This worker's current lease (one per worker, so the model knows every
  // connection bound to it).
  bool GrantLease() {
    v1::GrantLeaseRequest request;
    request.set_holder(absl::StrCat("worker-", index_));
    request.set_ttl_seconds(300);
    auto granted = client_.GrantLease(request);
    if (!granted.ok()) {
      Fail("GrantLease: " + StatusText(granted.status()));
      return false;
    }
    lease_ = granted->lease_id();
    return true;
  }

  void IssueConnection(int user) {
    IssueOptions options;
    if (rng_() % 2 == 0) options.lease_id = lease_;
    auto ids =
        client_.IssueIds(v1::KIND_CONNECTION, UserOwner(user), 1, options);
    if (!ids.ok()) return Fail("Issue conn: " + StatusText(ids.status()));
    Record(ids->front(), v1::KIND_CONNECTION, user, "", "", options.lease_id);
  }

  void RevokeLease() {
    v1::RevokeLeaseRequest request;
    request.set_lease_id(lease_);
    auto response = client_.RevokeLease(request);
    if (!response.ok()) {
      return Fail("RevokeLease: " + StatusText(response.status()));
    }
    std::vector<std::string> conns, released;
    for (const auto& [id, r] : model_) {
      if (r.kind == v1::KIND_CONNECTION && r.lease == lease_ && r.live) {
        conns.push_back(id);
      }
    }
    for (const std::string& conn : conns) Cascade(conn, &released);
    if (testing::Sorted(response->released()) != testing::Sorted(released)) {
      Fail(absl::StrCat("RevokeLease released ", response->released_size(),
                        " records, model says ", released.size()));
    }
    v1::KeepAliveRequest keep;
    keep.set_lease_id(lease_);
    const absl::StatusCode code = client_.KeepAlive(keep).status().code();
    if (code != absl::StatusCode::kNotFound) {
      Fail("KeepAlive after revoke: " +
           std::string(absl::StatusCodeToString(code)));
    }
    ++revokes_;
    GrantLease();
  }

  void OpenContext(int user) {
    v1::OpenContextRequest request;
    *request.mutable_owner() = UserOwner(user);
    std::string thread = rng_() % 5 == 0 ? "" : PickOwn(user, v1::KIND_THREAD);
    if (rng_() % 10 == 0) {
      std::string foreign;
      if (pool_.Pick(rng_, user, &foreign)) thread = foreign;
    }
    const std::string conn =
        rng_() % 3 == 0 ? "" : PickOwn(user, v1::KIND_CONNECTION);
    request.set_thread_id(thread);
    request.set_connection_id(conn);
    auto response = client_.OpenContext(request);
    if (!conn.empty() && !Live(conn)) {
      if (response.status().code() != absl::StatusCode::kFailedPrecondition) {
        Fail("OpenContext on ended connection " + conn + ": " +
             StatusText(response.status()));
      }
      return;
    }
    if (!response.ok()) {
      return Fail("OpenContext: " + StatusText(response.status()));
    }
    const bool reusable =
        !thread.empty() && Live(thread) && model_[thread].user == user;
    if (response->thread_reused() != reusable) {
      Fail(absl::StrCat("OpenContext thread_reused=", response->thread_reused(),
                        " for ", thread, ", model says ", reusable));
    }
    if (reusable) {
      if (response->thread_id() != thread) Fail("reused a different thread");
    } else {
      Record(response->thread_id(), v1::KIND_THREAD, user, "", conn);
    }
    Record(response->run_id(), v1::KIND_RUN, user, response->thread_id(), conn);
    Record(response->request_id(), v1::KIND_REQUEST, user, response->run_id(),
           conn);
  }

  void IssueChild(int user, v1::Kind kind) {
    const v1::Kind parent_kind =
        kind == v1::KIND_RUN ? v1::KIND_THREAD : v1::KIND_RUN;
    IssueOptions options;
    options.parent_id = PickOwn(user, parent_kind);
    if (rng_() % 2 == 0) {
      options.connection_id = PickOwn(user, v1::KIND_CONNECTION);
    }
    const uint32_t count = 1 + rng_() % 2;
    auto ids = client_.IssueIds(kind, UserOwner(user), count, options);
    const bool parent_ok = options.parent_id.empty() || Live(options.parent_id);
    const bool conn_ok =
        options.connection_id.empty() || Live(options.connection_id);
    if (!parent_ok || !conn_ok) {
      if (ids.status().code() != absl::StatusCode::kFailedPrecondition) {
        Fail("Issue under ended parent/connection: " +
             StatusText(ids.status()));
      }
      return;
    }
    if (!ids.ok()) return Fail("Issue child: " + StatusText(ids.status()));
    for (const std::string& id : *ids) {
      Record(id, kind, user, options.parent_id, options.connection_id);
    }
  }

  void Validate(int user) {
    v1::ValidateRequest request;
    *request.mutable_owner() = UserOwner(user);
    std::vector<v1::Verdict> want;
    const int own = 1 + static_cast<int>(rng_() % 8);
    for (int i = 0; i < own; ++i) {
      const v1::Kind kind = static_cast<v1::Kind>(1 + rng_() % 4);
      const std::string id = PickOwn(user, kind);
      if (id.empty()) continue;
      v1::ValidateItem* item = request.add_items();
      item->set_id(id);
      if (rng_() % 2 == 0) item->set_expected_kind(kind);
      want.push_back(Live(id) ? v1::VERDICT_VALID : v1::VERDICT_RELEASED);
    }
    for (int i = 0; i < 2; ++i) {
      std::string foreign;
      if (!pool_.Pick(rng_, user, &foreign)) break;
      request.add_items()->set_id(foreign);
      want.push_back(v1::VERDICT_NOT_OWNER);
    }
    if (request.items_size() == 0) return;
    auto response = client_.Validate(request);
    if (!response.ok())
      return Fail("Validate: " + StatusText(response.status()));
    if (response->results_size() != request.items_size()) {
      return Fail("Validate result count");
    }
    for (int i = 0; i < response->results_size(); ++i) {
      if (response->results(i).verdict() != want[i]) {
        Fail(absl::StrCat("Validate ", request.items(i).id(), " by ",
                          OwnerText(request.owner()), ": got ",
                          v1::Verdict_Name(response->results(i).verdict()),
                          ", model says ", v1::Verdict_Name(want[i])));
      }
    }
  }

  void CheckCleanup(const std::string& what, const v1::CleanupResponse& got,
                    const std::vector<std::string>& released,
                    const std::vector<std::string>& already_ended) {
    if (testing::Sorted(got.released()) != testing::Sorted(released)) {
      Fail(absl::StrCat(what, ": released ", got.released_size(),
                        " records, model says ", released.size(), " (",
                        absl::StrJoin(got.released(), ","), " vs ",
                        absl::StrJoin(released, ","), ")"));
    }
    if (testing::Sorted(got.already_ended()) !=
        testing::Sorted(already_ended)) {
      Fail(what + ": already_ended differs from the model");
    }
    if (got.refused_size() != 0 || got.unknown_size() != 0) {
      Fail(what + ": refused/unknown not empty");
    }
  }

  void CleanupConnection(int user) {
    const std::string conn = PickOwn(user, v1::KIND_CONNECTION);
    if (conn.empty()) return;
    v1::CleanupRequest request;
    *request.mutable_owner() = UserOwner(user);
    request.set_connection_id(conn);
    auto response = client_.Cleanup(request);
    if (!response.ok())
      return Fail("Cleanup conn: " + StatusText(response.status()));
    std::vector<std::string> released, already;
    if (Live(conn)) {
      Cascade(conn, &released);
    } else {
      already.push_back(conn);
    }
    CheckCleanup("Cleanup(connection " + conn + ")", *response, released,
                 already);
  }

  void CleanupIds(int user) {
    v1::CleanupRequest request;
    *request.mutable_owner() = UserOwner(user);
    std::vector<std::string> named;
    const int n = 1 + static_cast<int>(rng_() % 3);
    for (int i = 0; i < n; ++i) {
      const std::string id =
          PickOwn(user, static_cast<v1::Kind>(1 + rng_() % 4));
      if (id.empty() ||
          std::find(named.begin(), named.end(), id) != named.end()) {
        continue;
      }
      named.push_back(id);
      request.mutable_ids()->add_ids(id);
    }
    if (named.empty()) return;
    auto response = client_.Cleanup(request);
    if (!response.ok())
      return Fail("Cleanup ids: " + StatusText(response.status()));
    std::vector<std::string> released, already;
    std::set<std::string> ended_here;
    for (const std::string& id : named) {
      if (!Live(id)) {
        if (ended_here.count(id) == 0) already.push_back(id);
        continue;
      }
      const size_t before = released.size();
      Cascade(id, &released);
      ended_here.insert(released.begin() + before, released.end());
    }
    CheckCleanup("Cleanup(ids " + absl::StrJoin(named, ",") + ")", *response,
                 released, already);
  }

  void CleanupAll(int user) {
    v1::CleanupRequest request;
    *request.mutable_owner() = UserOwner(user);
    request.set_all_owned(true);
    auto response = client_.Cleanup(request);
    if (!response.ok())
      return Fail("Cleanup all: " + StatusText(response.status()));
    std::vector<std::string> released;
    for (auto& [id, r] : model_) {
      if (r.user == user && r.live) {
        r.live = false;
        released.push_back(id);
      }
    }
    CheckCleanup("Cleanup(all_owned)", *response, released, {});
  }

  const int index_;
  Client& client_;
  SharedPool& pool_;
  std::mt19937 rng_;
  std::vector<int> users_;
  std::map<std::string, ModelRecord> model_;
  std::map<std::pair<int, v1::Kind>, std::vector<std::string>> by_user_kind_;
  std::vector<std::string> minted_;
  std::string lease_;
  int failures_ = 0;
  int ops_ = 0;
  int revokes_ = 0;

 public:
  int revokes() const { return revokes_; }
};

TEST(ConcurrencyTest, ManyClientsKeepEveryOwnersRecordsExact) {
  auto server = ServerProcess::Start();
  ASSERT_TRUE(server.ok()) << StatusText(server.status());
  // Even workers share one client (one channel); odd workers have their own.
  auto shared_client = testing::MakeClient(**server, absl::Seconds(20));
  std::vector<std::unique_ptr<Client>> own_clients;
  SharedPool pool;
  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < kThreads; ++i) {
    Client* client = shared_client.get();
    if (i % 2 == 1) {
      own_clients.push_back(testing::MakeClient(**server, absl::Seconds(20)));
      client = own_clients.back().get();
    }
    workers.push_back(std::make_unique<Worker>(i, *client, pool));
  }

  const absl::Time start = absl::Now();
  const absl::Time deadline =
      start + kMaxRunTime * testing::SanitizerTimeScale();
  std::vector<std::thread> threads;
  for (auto& w : workers) {
    threads.emplace_back([&w, deadline] { w->Run(deadline); });
  }
  for (std::thread& t : threads) t.join();
  const absl::Duration elapsed = absl::Now() - start;

  int total_ops = 0, revokes = 0;
  for (const auto& w : workers) {
    total_ops += w->ops();
    revokes += w->revokes();
    EXPECT_GE(w->ops(), kMinOpsPerThread) << "a worker did almost nothing";
  }
  std::cout << "[          ] " << total_ops << " ops (" << revokes
            << " lease revocations) by " << kThreads << " threads in "
            << absl::FormatDuration(elapsed) << "\n";
  EXPECT_GT(revokes, 0);

  // No ID was issued twice across all threads.
  std::set<std::string> all_ids;
  size_t minted = 0;
  for (const auto& w : workers) {
    for (const std::string& id : w->minted()) {
      EXPECT_TRUE(all_ids.insert(id).second) << "issued twice: " << id;
      ++minted;
    }
  }
  EXPECT_EQ(all_ids.size(), minted);
  EXPECT_GT(minted, 500u);

  // Final state of every owner's records against the model.
  Client& client = *shared_client;
  size_t live = 0, ended = 0;
  for (const auto& w : workers) {
    for (int user : w->users()) {
      const v1::Owner owner = UserOwner(user);
      std::map<std::string, const ModelRecord*> expected;
      for (const auto& [id, r] : w->model()) {
        if (r.user == user) expected[id] = &r;
      }
      // ListOwned with include_ended, small pages: same set, same states,
      // ascending ID order, nothing twice.
      auto listed = testing::ListAll(client, owner, /*include_ended=*/true,
                                     /*page_size=*/7);
      ASSERT_TRUE(listed.ok()) << StatusText(listed.status());
      std::set<std::string> seen;
      std::string last_suffix;
      for (const v1::Record& r : *listed) {
        EXPECT_TRUE(seen.insert(r.id()).second)
            << OwnerText(owner) << ": listed twice: " << r.id();
        EXPECT_LT(last_suffix, Suffix(r.id()))
            << OwnerText(owner) << ": ListOwned not in ID order at " << r.id();
        last_suffix = Suffix(r.id());
        auto it = expected.find(r.id());
        if (it == expected.end()) {
          ADD_FAILURE() << OwnerText(owner) << ": unexpected record " << r.id();
          continue;
        }
        const ModelRecord& m = *it->second;
        EXPECT_EQ(r.kind(), m.kind) << r.id();
        EXPECT_EQ(r.owner().tenant(), owner.tenant()) << r.id();
        EXPECT_EQ(r.owner().user_id(), owner.user_id()) << r.id();
        EXPECT_EQ(r.parent_id(), m.parent) << r.id();
        EXPECT_EQ(r.connection_id(), m.connection) << r.id();
        EXPECT_EQ(r.lease_id(), m.lease) << r.id();
        EXPECT_EQ(v1::State_Name(r.state()),
                  m.live ? "STATE_LIVE" : "STATE_RELEASED")
            << r.id();
      }
      EXPECT_EQ(seen.size(), expected.size())
          << OwnerText(owner) << ": ListOwned count differs from the model";

      // Live-only listing: exactly the model's live records.
      auto live_list = testing::ListAll(client, owner, /*include_ended=*/false);
      ASSERT_TRUE(live_list.ok()) << StatusText(live_list.status());
      std::set<std::string> live_ids;
      for (const v1::Record& r : *live_list) live_ids.insert(r.id());
      std::set<std::string> model_live;
      for (const auto& [id, m] : expected) {
        if (m->live) model_live.insert(id);
      }
      EXPECT_EQ(live_ids, model_live) << OwnerText(owner);

      // Validate with records, in batches.
      std::vector<std::string> ids;
      for (const auto& [id, m] : expected) ids.push_back(id);
      for (size_t i = 0; i < ids.size(); i += 500) {
        v1::ValidateRequest request;
        *request.mutable_owner() = owner;
        request.set_include_records(true);
        for (size_t j = i; j < std::min(ids.size(), i + 500); ++j) {
          request.add_items()->set_id(ids[j]);
        }
        auto response = client.Validate(request);
        ASSERT_TRUE(response.ok()) << StatusText(response.status());
        ASSERT_EQ(response->results_size(), request.items_size());
        for (int k = 0; k < response->results_size(); ++k) {
          const v1::ValidateResult& result = response->results(k);
          const ModelRecord& m = *expected[request.items(k).id()];
          EXPECT_EQ(v1::Verdict_Name(result.verdict()),
                    m.live ? "VERDICT_VALID" : "VERDICT_RELEASED")
              << request.items(k).id();
          EXPECT_TRUE(result.has_record()) << request.items(k).id();
          EXPECT_EQ(result.record().id(), request.items(k).id());
          EXPECT_EQ(v1::State_Name(result.record().state()),
                    m.live ? "STATE_LIVE" : "STATE_RELEASED")
              << request.items(k).id();
          if (m.live) {
            ++live;
          } else {
            ++ended;
          }
        }
      }
    }
  }
  std::cout << "[          ] " << minted << " IDs checked: " << live
            << " live, " << ended << " released\n";
  EXPECT_GT(live, 0u);
  EXPECT_GT(ended, 0u);

  EXPECT_EQ(testing::StopServer(**server), 0) << (*server)->Log();
}

}  // namespace
}  // namespace registrar
