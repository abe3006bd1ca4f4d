#ifndef REGISTRAR_TESTS_CLUSTER_REPLICAS_FIXTURE_H_
#define REGISTRAR_TESTS_CLUSTER_REPLICAS_FIXTURE_H_

// What the tests of several real `registrar --store=etcd` replicas share: a
// real 3-member etcd for the suite, a key file, replicas on the test's own
// prefix, calls with deadlines and retries of UNAVAILABLE, and finding the
// elected writer through /metrics.

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "service/id/key_ring.h"
#include "tests/cluster/etcd_cluster.h"
#include "tests/integration/metrics_scrape.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_util.h"
#include "tests/time_scale.h"

namespace registrar::testing {

// The node id lease (and so the election key) TTL of the replicas here.
inline constexpr int kNodeTtlSeconds = 2;

// One replica process and a stub to it.
struct Node {
  std::unique_ptr<ServerProcess> process;
  std::unique_ptr<v1::Registrar::Stub> stub;
};

inline std::string Text(const grpc::Status& s) {
  return absl::StrCat(s.error_code(), ": ", s.error_message());
}

// One unary call with a 10 s deadline.
template <typename Req, typename Resp>
grpc::Status Call(v1::Registrar::Stub& stub,
                  grpc::Status (v1::Registrar::Stub::*method)(
                      grpc::ClientContext*, const Req&, Resp*),
                  const Req& req, Resp* resp) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return (stub.*method)(&ctx, req, resp);
}

// The call, again while it is UNAVAILABLE (no writer elected yet, or one
// taking over: nothing was done), for at most `bound` (scaled).
template <typename Req, typename Resp>
grpc::Status Retry(v1::Registrar::Stub& stub,
                   grpc::Status (v1::Registrar::Stub::*method)(
                       grpc::ClientContext*, const Req&, Resp*),
                   const Req& req, Resp* resp,
                   absl::Duration bound = absl::Seconds(20)) {
  grpc::Status last;
  PollUntil(
      [&] {
        resp->Clear();
        last = Call(stub, method, req, resp);
        return last.error_code() != grpc::StatusCode::UNAVAILABLE;
      },
      bound);
  return last;
}

class ReplicasFixture : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto c = EtcdCluster::Start();
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
    owner_ = MakeOwner(
        "acme",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  // A replica on this test's prefix.
  static Node StartNode(std::vector<std::string> extra = {}) {
    ServerProcess::Options o;
    o.key_path = *key_file_;
    o.args = {
        "--store=etcd",
        "--etcd_endpoints=" + absl::StrJoin(cluster_->client_endpoints(), ","),
        "--etcd_prefix=/rep/" + std::string(::testing::UnitTest::GetInstance()
                                                ->current_test_info()
                                                ->name()),
        absl::StrCat("--etcd_node_ttl=", kNodeTtlSeconds, "s"),
        "--shutdown_drain=0s"};
    o.args.insert(o.args.end(), extra.begin(), extra.end());
    o.start_timeout = absl::Seconds(40);
    Node n;
    n.process = StartOrFail(o);
    if (n.process != nullptr) {
      n.stub = v1::Registrar::NewStub(grpc::CreateChannel(
          n.process->grpc_address(), grpc::InsecureChannelCredentials()));
    }
    return n;
  }

  // Starts `count` replicas into nodes_.
  void StartNodes(int count, std::vector<std::string> extra = {}) {
    for (int i = 0; i < count; ++i) {
      nodes_.push_back(StartNode(extra));
      ASSERT_NE(nodes_.back().process, nullptr);
    }
  }

  // The index of the one replica (among the running ones) whose
  // registrar_cluster_is_leader is 1, once exactly one says so; -1 when
  // none did within `bound`.
  int AwaitLeader(absl::Duration bound = absl::Seconds(20)) {
    int leader = -1;
    PollUntil(
        [&] {
          int count = 0;
          for (size_t i = 0; i < nodes_.size(); ++i) {
            if (nodes_[i].process == nullptr || !nodes_[i].process->running()) {
              continue;
            }
            std::optional<double> v =
                ScrapeValue(*nodes_[i].process, "registrar_cluster_is_leader");
            if (v.has_value() && *v == 1) {
              ++count;
              leader = static_cast<int>(i);
            }
          }
          return count == 1;
        },
        bound);
    return leader;
  }

  v1::IssueRequest IssueOf(v1::Kind kind, uint32_t count) const {
    v1::IssueRequest req;
    req.set_kind(kind);
    *req.mutable_owner() = owner_;
    req.set_count(count);
    return req;
  }

  // Issues `count` threads through `node` (retrying UNAVAILABLE).
  std::vector<std::string> Issue(Node& node, uint32_t count) {
    v1::IssueResponse resp;
    grpc::Status s = Retry(*node.stub, &v1::Registrar::Stub::Issue,
                           IssueOf(v1::KIND_THREAD, count), &resp);
    EXPECT_TRUE(s.ok()) << Text(s);
    return {resp.ids().begin(), resp.ids().end()};
  }

  // The verdict of each id on `node`, in order.
  std::vector<v1::Verdict> Verdicts(Node& node,
                                    const std::vector<std::string>& ids) {
    v1::ValidateRequest req;
    *req.mutable_owner() = owner_;
    for (const std::string& id : ids) req.add_items()->set_id(id);
    v1::ValidateResponse resp;
    grpc::Status s =
        Call(*node.stub, &v1::Registrar::Stub::Validate, req, &resp);
    EXPECT_TRUE(s.ok()) << Text(s);
    std::vector<v1::Verdict> out;
    for (const auto& r : resp.results()) out.push_back(r.verdict());
    return out;
  }

  // The verdict of each id on `node`, in order, asked 500 at a time.
  std::vector<v1::Verdict> AllVerdicts(Node& node,
                                       const std::vector<std::string>& ids) {
    std::vector<v1::Verdict> out;
    for (size_t at = 0; at < ids.size(); at += 500) {
      std::vector<std::string> part(
          ids.begin() + at, ids.begin() + std::min(ids.size(), at + 500));
      std::vector<v1::Verdict> got = Verdicts(node, part);
      if (got.size() != part.size()) break;  // Verdicts said why
      out.insert(out.end(), got.begin(), got.end());
    }
    return out;
  }

  void ExpectAll(Node& node, const std::vector<std::string>& ids,
                 v1::Verdict want) {
    std::vector<v1::Verdict> got = AllVerdicts(node, ids);
    ASSERT_EQ(got.size(), ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      ASSERT_EQ(got[i], want)
          << ids[i] << " on " << node.process->grpc_address() << ": "
          << v1::Verdict_Name(got[i]);
    }
  }

  static inline EtcdCluster* cluster_ = nullptr;
  static inline std::string* key_file_ = nullptr;
  std::vector<Node> nodes_;
  v1::Owner owner_;
};

// Reads a Watch stream until `want` events arrived (or 20 s, scaled).
inline std::vector<v1::WatchEvent> WatchEvents(v1::Registrar::Stub& stub,
                                               uint64_t from, size_t want) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() +
                   std::chrono::seconds(20 * SanitizerTimeScale()));
  v1::WatchRequest req;
  req.set_start_revision(from);
  auto reader = stub.Watch(&ctx, req);
  std::vector<v1::WatchEvent> events;
  v1::WatchEvent e;
  while (events.size() < want && reader->Read(&e)) events.push_back(e);
  ctx.TryCancel();
  reader->Finish();
  return events;
}

}  // namespace registrar::testing

#endif  // REGISTRAR_TESTS_CLUSTER_REPLICAS_FIXTURE_H_
