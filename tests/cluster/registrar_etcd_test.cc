// The real `registrar` binary with --store=etcd against a real 3-member
// etcd: every method works; kill -9 of the replica under load and a
// restart keep every acknowledged record and never issue an ID twice; the
// etcd leader killed under load loses no acknowledged change and calls
// resume; --node_id is refused; a replica paused past its node id's etcd
// lease stops minting while another takes the id, then claims another id
// and rejoins by itself.

#include <signal.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "service/etcd/kv.h"
#include "service/id/id.h"
#include "service/id/key_ring.h"
#include "tests/cluster/await.h"
#include "tests/cluster/etcd_cluster.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_util.h"

namespace registrar {
namespace {

using ::registrar::testing::EtcdCluster;
using ::registrar::testing::KillNine;
using ::registrar::testing::MakeClient;
using ::registrar::testing::MakeOwner;
using ::registrar::testing::PollUntil;
using ::registrar::testing::ServerProcess;
using ::registrar::testing::StartOrFail;
using ::registrar::testing::StatusText;
using ::registrar::testing::StopServer;
using ::testing::HasSubstr;

class RegistrarEtcdTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    EtcdCluster::Options o;
    o.extra_args = {"--max-txn-ops=16384", "--max-request-bytes=8388608"};
    auto c = EtcdCluster::Start(o);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
    key_file_ = new std::string(cluster_->dir() + "/tag.key");
    std::ofstream(*key_file_) << KeyRing::Generate().ToFileText();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
    delete key_file_;
    key_file_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(cluster_, nullptr);
    ASSERT_TRUE(cluster_->WaitHealthy(absl::Seconds(30)).ok());
  }

  // A replica on this test's prefix, sharing the suite's tag key.
  static ServerProcess::Options Replica(std::vector<std::string> extra = {}) {
    ServerProcess::Options o;
    o.key_path = *key_file_;
    o.args = {
        "--store=etcd",
        "--etcd_endpoints=" + absl::StrJoin(cluster_->client_endpoints(), ","),
        "--etcd_prefix=/t/" + std::string(::testing::UnitTest::GetInstance()
                                              ->current_test_info()
                                              ->name()),
        "--etcd_max_txn_ops=16384", "--etcd_max_request_bytes=8388608"};
    o.args.insert(o.args.end(), extra.begin(), extra.end());
    o.start_timeout = absl::Seconds(30);
    return o;
  }

  // Every ID in `ids` validates VALID for `owner` (in batches).
  static void ExpectAllValid(Client& client, const v1::Owner& owner,
                             const std::vector<std::string>& ids) {
    for (size_t at = 0; at < ids.size(); at += 500) {
      v1::ValidateRequest req;
      *req.mutable_owner() = owner;
      const size_t end = std::min(ids.size(), at + 500);
      for (size_t i = at; i < end; ++i) req.add_items()->set_id(ids[i]);
      auto r = client.Validate(req);
      ASSERT_TRUE(r.ok()) << StatusText(r);
      ASSERT_EQ(r->results_size(), static_cast<int>(end - at));
      for (const auto& result : r->results()) {
        ASSERT_EQ(result.verdict(), v1::VERDICT_VALID)
            << result.id() << " lost: " << v1::Verdict_Name(result.verdict());
      }
    }
  }

  static inline EtcdCluster* cluster_ = nullptr;
  static inline std::string* key_file_ = nullptr;
};

// Issues `count`-ID batches from several threads until stopped; remembers
// every acknowledged ID (and fails on an ID seen twice).
class Load {
 public:
  Load(std::string target, v1::Owner owner) : owner_(std::move(owner)) {
    for (int i = 0; i < 4; ++i) {
      threads_.emplace_back([this, target] {
        ClientOptions o;
        o.target = target;
        o.deadline = absl::Seconds(5);
        Client client(o);
        while (!stop_.load()) {
          auto ids = client.IssueIds(v1::KIND_THREAD, owner_, 5);
          absl::MutexLock lock(&mu_);
          if (!ids.ok()) {
            ++failed_;
            last_error_ = StatusText(ids);
            continue;
          }
          for (const std::string& id : *ids) {
            EXPECT_TRUE(seen_.insert(id).second) << "issued twice: " << id;
            acked_.push_back(id);
          }
        }
      });
    }
  }
  ~Load() { Stop(); }
  void Stop() {
    stop_ = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  // How many calls failed, and the last failure.
  std::string failures() const {
    absl::MutexLock lock(&mu_);
    return absl::StrCat(failed_, " failed calls, last: ", last_error_);
  }
  size_t acked() const {
    absl::MutexLock lock(&mu_);
    return acked_.size();
  }
  std::vector<std::string> acked_ids() const {
    absl::MutexLock lock(&mu_);
    return acked_;
  }
  // Ids from an earlier load, to catch one issued again.
  void AddSeen(const std::vector<std::string>& ids) {
    absl::MutexLock lock(&mu_);
    seen_.insert(ids.begin(), ids.end());
  }

 private:
  const v1::Owner owner_;
  mutable absl::Mutex mu_;
  std::vector<std::string> acked_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> seen_ ABSL_GUARDED_BY(mu_);
  int failed_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_error_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

TEST_F(RegistrarEtcdTest, EveryMethodWorksAndSurvivesARestart) {
  auto server = StartOrFail(Replica());
  ASSERT_NE(server, nullptr);
  EXPECT_THAT(server->Log(), HasSubstr("storage: etcd"));
  auto client = MakeClient(*server);
  const v1::Owner owner = MakeOwner("acme", "alice");

  auto thread = client->IssueIds(v1::KIND_THREAD, owner);
  ASSERT_TRUE(thread.ok()) << StatusText(thread);
  ASSERT_EQ(thread->size(), 1u);
  v1::OpenContextRequest open;
  *open.mutable_owner() = owner;
  open.set_thread_id((*thread)[0]);
  auto context = client->OpenContext(open);
  ASSERT_TRUE(context.ok()) << StatusText(context);
  EXPECT_TRUE(context->thread_reused());

  v1::GrantLeaseRequest grant;
  grant.set_holder("gateway-1");
  grant.set_ttl_seconds(30);
  auto lease = client->GrantLease(grant);
  ASSERT_TRUE(lease.ok()) << StatusText(lease);
  v1::IssueRequest conn_req;
  conn_req.set_kind(v1::KIND_CONNECTION);
  *conn_req.mutable_owner() = owner;
  conn_req.set_count(2);
  conn_req.set_lease_id(lease->lease_id());
  auto conns = client->Issue(conn_req);
  ASSERT_TRUE(conns.ok()) << StatusText(conns);
  ASSERT_EQ(conns->ids_size(), 2);
  v1::KeepAliveRequest keep;
  keep.set_lease_id(lease->lease_id());
  ASSERT_TRUE(client->KeepAlive(keep).ok());

  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = owner;
  cleanup.set_connection_id(conns->ids(0));
  auto cleaned = client->Cleanup(cleanup);
  ASSERT_TRUE(cleaned.ok()) << StatusText(cleaned);
  ASSERT_EQ(cleaned->released_size(), 1);
  v1::RevokeLeaseRequest revoke;
  revoke.set_lease_id(lease->lease_id());
  auto revoked = client->RevokeLease(revoke);
  ASSERT_TRUE(revoked.ok()) << StatusText(revoked);
  ASSERT_EQ(revoked->released_size(), 1);
  EXPECT_EQ(revoked->released(0), conns->ids(1));

  // Watch from the start: thread, run, request, 2 connections issued, then
  // 2 released; read 3, then resume from the last revision + 1.
  std::vector<v1::WatchEvent> events;
  auto watch_until = [&](uint64_t start, size_t total) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    v1::WatchRequest watch;
    watch.set_start_revision(start);
    return client->Watch(
        watch,
        [&](const v1::WatchEvent& e) {
          events.push_back(e);
          return events.size() < total;
        },
        &ctx);
  };
  absl::Status watched = watch_until(1, 3);
  ASSERT_TRUE(watched.ok()) << StatusText(watched);
  ASSERT_EQ(events.size(), 3u);
  watched = watch_until(events.back().revision() + 1, 7);
  ASSERT_TRUE(watched.ok()) << StatusText(watched);
  ASSERT_EQ(events.size(), 7u);
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].revision(), i + 1);
  }
  EXPECT_EQ(events[6].type(), v1::EVENT_TYPE_RELEASED);

  // Everything is in etcd: a restarted replica answers the same.
  ASSERT_EQ(StopServer(*server), 0) << server->Log();
  server = StartOrFail(Replica());
  ASSERT_NE(server, nullptr);
  client = MakeClient(*server);
  ASSERT_NO_FATAL_FAILURE(
      ExpectAllValid(*client, owner,
                     {(*thread)[0], context->run_id(), context->request_id()}));
  v1::DescribeRequest describe;
  describe.set_id(conns->ids(1));
  auto described = client->Describe(describe);
  ASSERT_TRUE(described.ok()) << StatusText(described);
  EXPECT_EQ(described->record().state(), v1::STATE_RELEASED);
  v1::KeepAliveRequest gone;
  gone.set_lease_id(lease->lease_id());
  EXPECT_EQ(client->KeepAlive(gone).status().code(),
            absl::StatusCode::kNotFound);
  auto later = client->IssueIds(v1::KIND_THREAD, owner);
  ASSERT_TRUE(later.ok()) << StatusText(later);
  EXPECT_GT((*later)[0], (*thread)[0]);  // same kind: sorts by time
}

TEST_F(RegistrarEtcdTest, NodeIdFlagIsRefused) {
  auto server = ServerProcess::Start(Replica({"--node_id=3"}));
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(std::string(server.status().message()),
              HasSubstr("--node_id is for the single-node stores"));
}

TEST_F(RegistrarEtcdTest, KillNineUnderLoadKeepsEveryAcknowledgedRecord) {
  const v1::Owner owner = MakeOwner("acme", "load");
  std::vector<std::string> all_acked;
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    auto server = StartOrFail(Replica());
    ASSERT_NE(server, nullptr);
    {
      auto client = MakeClient(*server);
      ASSERT_NO_FATAL_FAILURE(ExpectAllValid(*client, owner, all_acked));
    }
    Load load(server->grpc_address(), owner);
    load.AddSeen(all_acked);
    ASSERT_TRUE(
        PollUntil([&] { return load.acked() >= 300; }, absl::Seconds(30)));
    ASSERT_NO_FATAL_FAILURE(KillNine(*server));
    load.Stop();
    const std::vector<std::string> acked = load.acked_ids();
    all_acked.insert(all_acked.end(), acked.begin(), acked.end());
  }
  ASSERT_GE(all_acked.size(), 900u);
  auto server = StartOrFail(Replica());
  ASSERT_NE(server, nullptr);
  auto client = MakeClient(*server);
  ASSERT_NO_FATAL_FAILURE(ExpectAllValid(*client, owner, all_acked));
  std::set<std::string> distinct(all_acked.begin(), all_acked.end());
  EXPECT_EQ(distinct.size(), all_acked.size());
}

TEST_F(RegistrarEtcdTest, EtcdLeaderKilledUnderLoadLosesNothingAndResumes) {
  const v1::Owner owner = MakeOwner("acme", "leader");
  auto server = StartOrFail(Replica());
  ASSERT_NE(server, nullptr);
  Load load(server->grpc_address(), owner);
  ASSERT_TRUE(PollUntil([&] { return load.acked() >= 300; }, absl::Seconds(30)))
      << load.failures();
  absl::StatusOr<int> leader = cluster_->Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  ASSERT_TRUE(cluster_->Kill(*leader).ok());
  const size_t at_kill = load.acked();
  // Calls resume on the new etcd leader.
  EXPECT_TRUE(PollUntil([&] { return load.acked() >= at_kill + 300; },
                        absl::Seconds(30)))
      << load.failures();
  ASSERT_TRUE(cluster_->Restart(*leader).ok());
  load.Stop();
  auto client = MakeClient(*server);
  const std::vector<std::string> acked = load.acked_ids();
  ASSERT_GE(acked.size(), 600u);
  ASSERT_NO_FATAL_FAILURE(ExpectAllValid(*client, owner, acked));
  // And from etcd, not only from the replica's memory.
  ASSERT_EQ(StopServer(*server), 0) << server->Log();
  server = StartOrFail(Replica());
  ASSERT_NE(server, nullptr);
  client = MakeClient(*server);
  ASSERT_NO_FATAL_FAILURE(ExpectAllValid(*client, owner, acked));
}

// The registrar.v1.Registrar health status of `server`.
grpc::health::v1::HealthCheckResponse::ServingStatus Health(
    const ServerProcess& server) {
  auto stub = grpc::health::v1::Health::NewStub(grpc::CreateChannel(
      server.grpc_address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  grpc::health::v1::HealthCheckRequest req;
  req.set_service("registrar.v1.Registrar");
  grpc::health::v1::HealthCheckResponse resp;
  if (!stub->Check(&ctx, req, &resp).ok()) {
    return grpc::health::v1::HealthCheckResponse::UNKNOWN;
  }
  return resp.status();
}

// Node id of a formatted ID (-1 when it does not parse).
int NodeOf(const std::string& id) {
  absl::StatusOr<ParsedId> p = ParseId(id);
  return p.ok() ? static_cast<int>(UnpackId(p->bits).node) : -1;
}

TEST_F(RegistrarEtcdTest, PausedPastItsNodeLeaseStopsMintingThenReclaimsAnId) {
  const v1::Owner owner = MakeOwner("acme", "paused");
  auto first = StartOrFail(Replica({"--etcd_node_ttl=2s"}));
  ASSERT_NE(first, nullptr);
  EXPECT_THAT(first->Log(), HasSubstr("node id 0"));
  auto first_client = MakeClient(*first);
  ASSERT_TRUE(first_client->IssueIds(v1::KIND_THREAD, owner).ok());
  EXPECT_EQ(Health(*first), grpc::health::v1::HealthCheckResponse::SERVING);

  // Paused past the TTL: etcd expires its lease and the claim key goes.
  first->Signal(SIGSTOP);
  etcd::ConnectionOptions co;
  co.endpoints = cluster_->client_endpoints();
  auto conn = etcd::Connection::Create(co);
  ASSERT_TRUE(conn.ok()) << conn.status();
  etcd::Kv kv(*conn);
  const std::string claim_key =
      "/t/" +
      std::string(
          ::testing::UnitTest::GetInstance()->current_test_info()->name()) +
      "/nodes/0";
  auto claim_gone = [&] {
    etcdserverpb::RangeRequest req;
    req.set_key(claim_key);
    auto r = testing::Call<etcdserverpb::RangeResponse>(
        [&](auto cb) { kv.Range(req, std::move(cb)); });
    return r.ok() && r->kvs_size() == 0;
  };
  const bool gone = PollUntil(claim_gone, absl::Seconds(20));
  if (!gone) first->Signal(SIGCONT);
  ASSERT_TRUE(gone);

  // Another replica takes node id 0 and becomes the writer.
  auto second = StartOrFail(Replica({"--etcd_node_ttl=2s"}));
  ASSERT_NE(second, nullptr);
  EXPECT_THAT(second->Log(), HasSubstr("node id 0"));
  auto second_client = MakeClient(*second);
  ASSERT_TRUE(second_client->IssueIds(v1::KIND_THREAD, owner).ok());
  first->Signal(SIGCONT);

  // The resumed one never answers with an ID etcd does not hold: right
  // after SIGCONT it refuses, or (once it rejoined) forwards to the writer.
  std::vector<std::string> from_first;
  for (int i = 0; i < 20; ++i) {
    auto r = first_client->IssueIds(v1::KIND_THREAD, owner);
    if (r.ok()) from_first.insert(from_first.end(), r->begin(), r->end());
  }
  ExpectAllValid(*second_client, owner, from_first);
  for (const std::string& id : from_first) {
    EXPECT_EQ(NodeOf(id), 0) << id << ": not minted by the writer";
  }

  // It claims the next free node id by itself, rejoins as a follower and
  // serves again, without a restart.
  EXPECT_TRUE(PollUntil(
      [&] {
        return absl::StrContains(first->Log(), "claimed node id 1") &&
               Health(*first) == grpc::health::v1::HealthCheckResponse::SERVING;
      },
      absl::Seconds(20)))
      << first->Log();
  auto via_first = first_client->IssueIds(v1::KIND_THREAD, owner);
  ASSERT_TRUE(via_first.ok()) << StatusText(via_first);
  ExpectAllValid(*second_client, owner, *via_first);

  // And it is a candidate again: with the writer gone, it is elected and
  // mints with its new node id.
  ASSERT_NO_FATAL_FAILURE(KillNine(*second));
  std::vector<std::string> minted;
  EXPECT_TRUE(PollUntil(
      [&] {
        auto r = first_client->IssueIds(v1::KIND_THREAD, owner);
        if (r.ok()) minted = *r;
        return r.ok();
      },
      absl::Seconds(30)))
      << first->Log();
  ASSERT_EQ(minted.size(), 1u);
  EXPECT_EQ(NodeOf(minted[0]), 1) << minted[0];
  ExpectAllValid(*first_client, owner, minted);
}

}  // namespace
}  // namespace registrar
