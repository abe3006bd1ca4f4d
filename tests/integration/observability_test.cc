// Observability of the real binary: /metrics scraped over HTTP moves by
// exactly the calls made; grpc.health.v1 reports SERVING, then NOT_SERVING
// during the shutdown drain while calls still work; SIGTERM and SIGINT exit
// with status 0.

#include <signal.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "tests/integration/metrics_scrape.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_util.h"
#include "tests/unit/metrics/prometheus_text.h"

namespace registrar {
namespace {

using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
using ::registrar::testing::MakeOwner;
using ::registrar::testing::PromLabels;
using ::registrar::testing::PromSample;
using ::registrar::testing::SanitizerTimeScale;
using ::registrar::testing::ServerProcess;
using ::registrar::testing::StatusText;

constexpr char kService[] = "registrar.v1.Registrar";

// GET /metrics of `server`, parsed. Fails the test (and returns empty) when
// the scrape fails.
std::vector<PromSample> Scrape(const ServerProcess& server,
                               std::string* raw = nullptr) {
  std::string text;
  auto samples = testing::ScrapeMetrics(server, &text);
  if (!samples.ok()) {
    ADD_FAILURE() << "scrape failed: " << StatusText(samples.status());
    return {};
  }
  if (raw != nullptr) *raw = std::move(text);
  return *std::move(samples);
}

double Value(const std::vector<PromSample>& samples, const std::string& name,
             const PromLabels& labels) {
  std::optional<double> v = testing::FindSample(samples, name, labels);
  if (!v.has_value()) {
    std::string text;
    for (const auto& [k, val] : labels) text += k + "=" + val + " ";
    ADD_FAILURE() << "no sample " << name << "{" << text << "}";
    return -1e18;
  }
  return *v;
}

PromLabels Rpc(const std::string& method, const std::string& service = kService,
               const std::string& type = "unary") {
  return {
      {"grpc_type", type}, {"grpc_service", service}, {"grpc_method", method}};
}

PromLabels RpcCode(const std::string& method, const std::string& code,
                   const std::string& service = kService) {
  PromLabels labels = Rpc(method, service);
  labels["grpc_code"] = code;
  return labels;
}

// grpc.health.v1 Check: the serving status, or the call's error code.
struct HealthAnswer {
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  HealthCheckResponse::ServingStatus status = HealthCheckResponse::UNKNOWN;
};

HealthAnswer CheckHealth(Health::Stub& stub, const std::string& service) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  const grpc::Status status = stub.Check(&ctx, request, &response);
  return {status.error_code(), response.status()};
}

std::unique_ptr<Health::Stub> HealthStub(const ServerProcess& server) {
  return Health::NewStub(grpc::CreateChannel(
      server.grpc_address(), grpc::InsecureChannelCredentials()));
}

TEST(ObservabilityTest, MetricsMoveByExactlyTheCallsMade) {
  auto server = ServerProcess::Start();
  ASSERT_TRUE(server.ok()) << StatusText(server.status());
  auto client = testing::MakeClient(**server);
  const v1::Owner alice = MakeOwner("acme", "alice");
  const v1::Owner bob = MakeOwner("acme", "bob");
  // Set-up calls, before the first scrape.
  auto bob_threads = client->IssueIds(v1::KIND_THREAD, bob, 2);
  ASSERT_TRUE(bob_threads.ok()) << StatusText(bob_threads.status());

  // gRPC records a call as handled in a hook that may run after the client
  // already has its reply: scrape once every call the server started (the
  // harness's health checks, the set-up calls) is recorded as handled.
  const auto total = [](const std::vector<PromSample>& s, const char* name) {
    double sum = 0;
    for (const PromSample& p : s) {
      if (p.name == name) sum += p.value;
    }
    return sum;
  };
  const auto settled = [&](const std::vector<PromSample>& s) {
    const double started = total(s, "grpc_server_started_total");
    return started > 0 && started == total(s, "grpc_server_handled_total");
  };
  std::vector<PromSample> before;
  ASSERT_TRUE(testing::PollUntil(
      [&] {
        before = Scrape(**server);
        return settled(before);
      },
      absl::Seconds(10)));
  ASSERT_FALSE(before.empty());
  for (const char* family :
       {"grpc_server_started_total", "grpc_server_handled_total",
        "grpc_server_handling_seconds_bucket", "registrar_ids_issued_total",
        "registrar_validations_total", "registrar_released_total",
        "registrar_live_records", "registrar_leases"}) {
    EXPECT_TRUE(testing::HasMetric(before, family)) << family;
  }
  EXPECT_EQ(Value(before, "registrar_live_records", {{"kind", "thread"}}), 2);

  // Issue: 3 OK thread batches of 2, 1 OK connection, 1 INVALID_ARGUMENT.
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client->IssueIds(v1::KIND_THREAD, alice, 2).ok());
  }
  auto conn = client->IssueIds(v1::KIND_CONNECTION, alice);
  ASSERT_TRUE(conn.ok());
  v1::IssueRequest bad;
  *bad.mutable_owner() = alice;
  ASSERT_EQ(client->Issue(bad).status().code(),
            absl::StatusCode::kInvalidArgument);
  // OpenContext: one new thread through the connection, one reuse.
  v1::OpenContextRequest open;
  *open.mutable_owner() = alice;
  open.set_connection_id(conn->front());
  auto ctx1 = client->OpenContext(open);
  ASSERT_TRUE(ctx1.ok()) << StatusText(ctx1.status());
  open.set_thread_id(ctx1->thread_id());
  auto ctx2 = client->OpenContext(open);
  ASSERT_TRUE(ctx2.ok() && ctx2->thread_reused());
  // Validate: 1 valid, 2 not_owner, 1 malformed, in one call.
  v1::ValidateRequest validate;
  *validate.mutable_owner() = alice;
  validate.add_items()->set_id(ctx1->thread_id());
  validate.add_items()->set_id((*bob_threads)[0]);
  validate.add_items()->set_id((*bob_threads)[1]);
  validate.add_items()->set_id("user_b_thread_2_abc");
  auto verdicts = client->Validate(validate);
  ASSERT_TRUE(verdicts.ok()) << StatusText(verdicts.status());
  // Cleanup by ids: the thread with its 2 runs and 2 requests.
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = alice;
  cleanup.mutable_ids()->add_ids(ctx1->thread_id());
  auto cleaned = client->Cleanup(cleanup);
  ASSERT_TRUE(cleaned.ok()) << StatusText(cleaned.status());
  ASSERT_EQ(cleaned->released_size(), 5);
  // Cleanup by connection: only the connection is left to end.
  cleanup.set_connection_id(conn->front());
  cleaned = client->Cleanup(cleanup);
  ASSERT_TRUE(cleaned.ok()) << StatusText(cleaned.status());
  ASSERT_EQ(cleaned->released_size(), 1);
  // Describe of an unknown but well-formed ID: NOT_FOUND.
  std::string unknown = ctx1->thread_id();
  unknown.back() = unknown.back() == '0' ? '1' : '0';
  v1::DescribeRequest describe;
  describe.set_id(unknown);
  ASSERT_EQ(client->Describe(describe).status().code(),
            absl::StatusCode::kNotFound);
  // Health: 2 OK checks, 1 NOT_FOUND (unknown service).
  auto health = HealthStub(**server);
  EXPECT_EQ(CheckHealth(*health, "").code, grpc::StatusCode::OK);
  EXPECT_EQ(CheckHealth(*health, kService).code, grpc::StatusCode::OK);
  EXPECT_EQ(CheckHealth(*health, "no.such.Service").code,
            grpc::StatusCode::NOT_FOUND);

  // As above: every call made is recorded as handled before comparing.
  const double calls_made = 5 + 2 + 1 + 2 + 1 + 3;  // Issue .. health Check
  std::string raw;
  std::vector<PromSample> after;
  const bool recorded = testing::PollUntil(
      [&] {
        after = Scrape(**server, &raw);
        return settled(after) &&
               total(after, "grpc_server_handled_total") -
                       total(before, "grpc_server_handled_total") >=
                   calls_made;
      },
      absl::Seconds(10));
  ASSERT_FALSE(after.empty());
  EXPECT_TRUE(recorded) << "handled calls: "
                        << total(after, "grpc_server_handled_total") -
                               total(before, "grpc_server_handled_total");
  auto delta = [&](const std::string& name, const PromLabels& labels) {
    return Value(after, name, labels) - Value(before, name, labels);
  };
  SCOPED_TRACE(raw.substr(0, 20000));

  EXPECT_EQ(delta("grpc_server_started_total", Rpc("Issue")), 5);
  EXPECT_EQ(delta("grpc_server_handled_total", RpcCode("Issue", "OK")), 4);
  EXPECT_EQ(
      delta("grpc_server_handled_total", RpcCode("Issue", "InvalidArgument")),
      1);
  EXPECT_EQ(delta("grpc_server_handling_seconds_count", Rpc("Issue")), 5);
  // go-grpc-prometheus: a request read per call, a reply per OK call.
  EXPECT_EQ(delta("grpc_server_msg_received_total", Rpc("Issue")), 5);
  EXPECT_EQ(delta("grpc_server_msg_sent_total", Rpc("Issue")), 4);
  EXPECT_EQ(delta("grpc_server_started_total", Rpc("OpenContext")), 2);
  EXPECT_EQ(delta("grpc_server_handled_total", RpcCode("OpenContext", "OK")),
            2);
  EXPECT_EQ(delta("grpc_server_started_total", Rpc("Validate")), 1);
  EXPECT_EQ(delta("grpc_server_started_total", Rpc("Cleanup")), 2);
  EXPECT_EQ(delta("grpc_server_handled_total", RpcCode("Cleanup", "OK")), 2);
  EXPECT_EQ(delta("grpc_server_handled_total", RpcCode("Describe", "NotFound")),
            1);
  EXPECT_EQ(delta("grpc_server_started_total", Rpc("ListOwned")), 0);
  EXPECT_EQ(delta("grpc_server_handled_total",
                  RpcCode("Check", "OK", "grpc.health.v1.Health")),
            2);
  EXPECT_EQ(delta("grpc_server_handled_total",
                  RpcCode("Check", "NotFound", "grpc.health.v1.Health")),
            1);

  EXPECT_EQ(delta("registrar_ids_issued_total", {{"kind", "thread"}}), 7);
  EXPECT_EQ(delta("registrar_ids_issued_total", {{"kind", "run"}}), 2);
  EXPECT_EQ(delta("registrar_ids_issued_total", {{"kind", "request"}}), 2);
  EXPECT_EQ(delta("registrar_ids_issued_total", {{"kind", "connection"}}), 1);

  EXPECT_EQ(delta("registrar_validations_total", {{"verdict", "valid"}}), 1);
  EXPECT_EQ(delta("registrar_validations_total", {{"verdict", "not_owner"}}),
            2);
  EXPECT_EQ(delta("registrar_validations_total", {{"verdict", "malformed"}}),
            1);
  EXPECT_EQ(delta("registrar_validations_total", {{"verdict", "forged"}}), 0);

  EXPECT_EQ(delta("registrar_released_total",
                  {{"kind", "thread"}, {"reason", "cleanup_ids"}}),
            1);
  EXPECT_EQ(delta("registrar_released_total",
                  {{"kind", "run"}, {"reason", "cleanup_ids"}}),
            2);
  EXPECT_EQ(delta("registrar_released_total",
                  {{"kind", "request"}, {"reason", "cleanup_ids"}}),
            2);
  EXPECT_EQ(delta("registrar_released_total",
                  {{"kind", "connection"}, {"reason", "cleanup_connection"}}),
            1);
  EXPECT_EQ(delta("registrar_released_total",
                  {{"kind", "run"}, {"reason", "cleanup_connection"}}),
            0);

  // Gauges: 6 batch threads stay live (+6 - the cleaned one + its creation).
  EXPECT_EQ(delta("registrar_live_records", {{"kind", "thread"}}), 6);
  EXPECT_EQ(delta("registrar_live_records", {{"kind", "run"}}), 0);
  EXPECT_EQ(delta("registrar_live_records", {{"kind", "request"}}), 0);
  EXPECT_EQ(delta("registrar_live_records", {{"kind", "connection"}}), 0);
  EXPECT_EQ(Value(after, "registrar_live_records", {{"kind", "thread"}}), 8);
  EXPECT_EQ(Value(after, "registrar_tombstones", {}), 6);

  EXPECT_EQ(testing::StopServer(**server), 0) << (*server)->Log();
}

TEST(ObservabilityTest, LeaseMetricsCountGrantsAndEnds) {
  ServerProcess::Options options;
  options.args = {"--tick_interval=50ms"};
  auto server = ServerProcess::Start(options);
  ASSERT_TRUE(server.ok()) << StatusText(server.status());
  auto client = testing::MakeClient(**server);
  const v1::Owner alice = MakeOwner("acme", "alice");
  const std::vector<PromSample> before = Scrape(**server);

  v1::GrantLeaseRequest grant;
  grant.set_holder("gw");
  grant.set_ttl_seconds(1);
  auto short_lease = client->GrantLease(grant);
  ASSERT_TRUE(short_lease.ok());
  grant.set_ttl_seconds(60);
  auto long_lease = client->GrantLease(grant);
  ASSERT_TRUE(long_lease.ok());
  IssueOptions bind;
  bind.lease_id = short_lease->lease_id();
  ASSERT_TRUE(client->IssueIds(v1::KIND_CONNECTION, alice, 2, bind).ok());
  bind.lease_id = long_lease->lease_id();
  ASSERT_TRUE(client->IssueIds(v1::KIND_CONNECTION, alice, 3, bind).ok());
  const std::vector<PromSample> live = Scrape(**server);
  EXPECT_EQ(Value(live, "registrar_leases", {}) -
                Value(before, "registrar_leases", {}),
            2);
  v1::RevokeLeaseRequest revoke;
  revoke.set_lease_id(long_lease->lease_id());
  ASSERT_TRUE(client->RevokeLease(revoke).ok());
  // The short lease expires by the server's ticker: scrape until it has.
  std::vector<PromSample> after;
  ASSERT_TRUE(testing::PollUntil(
      [&] {
        after = Scrape(**server);
        return Value(after, "registrar_leases_ended_total",
                     {{"reason", "lease_expired"}}) >
               Value(before, "registrar_leases_ended_total",
                     {{"reason", "lease_expired"}});
      },
      absl::Seconds(6)))
      << "the 1 s lease did not expire";

  auto delta = [&](const std::string& name, const PromLabels& labels) {
    return Value(after, name, labels) - Value(before, name, labels);
  };
  EXPECT_EQ(delta("registrar_leases_granted_total", {}), 2);
  EXPECT_EQ(
      delta("registrar_leases_ended_total", {{"reason", "lease_revoked"}}), 1);
  EXPECT_EQ(
      delta("registrar_leases_ended_total", {{"reason", "lease_expired"}}), 1);
  EXPECT_EQ(delta("registrar_leases", {}), 0);
  EXPECT_EQ(delta("registrar_released_total",
                  {{"kind", "connection"}, {"reason", "lease_revoked"}}),
            3);
  EXPECT_EQ(delta("registrar_released_total",
                  {{"kind", "connection"}, {"reason", "lease_expired"}}),
            2);
  EXPECT_EQ(delta("registrar_live_records", {{"kind", "connection"}}), 0);

  EXPECT_EQ(testing::StopServer(**server), 0) << (*server)->Log();
}

TEST(ObservabilityTest, HealthServingThenNotServingDuringDrainThenExitZero) {
  // A 2 s drain, longer in sanitizer builds: what the test observes in it
  // must fit in it.
  const absl::Duration drain = absl::Seconds(2) * SanitizerTimeScale();
  ServerProcess::Options options;
  options.args = {
      absl::StrCat("--shutdown_drain=", absl::FormatDuration(drain))};
  auto server = ServerProcess::Start(options);
  ASSERT_TRUE(server.ok()) << StatusText(server.status());
  auto health = HealthStub(**server);
  auto client = testing::MakeClient(**server, drain);
  const v1::Owner alice = MakeOwner("acme", "alice");

  for (const std::string service : {"", kService}) {
    const HealthAnswer answer = CheckHealth(*health, service);
    EXPECT_EQ(answer.code, grpc::StatusCode::OK) << "'" << service << "'";
    EXPECT_EQ(HealthCheckResponse::ServingStatus_Name(answer.status), "SERVING")
        << "'" << service << "'";
  }
  EXPECT_EQ(CheckHealth(*health, "no.such.Service").code,
            grpc::StatusCode::NOT_FOUND);
  ASSERT_TRUE(client->IssueIds(v1::KIND_THREAD, alice).ok());

  const absl::Time term = absl::Now();
  (*server)->Signal(SIGTERM);
  // NOT_SERVING after SIGTERM, for both names: the server process flips
  // it on its own; poll it (bounded by the drain: it must happen in it).
  HealthAnswer answer;
  const absl::Time drain_end = term + drain;
  while (absl::Now() < drain_end) {
    answer = CheckHealth(*health, "");
    if (answer.code == grpc::StatusCode::OK &&
        answer.status == HealthCheckResponse::NOT_SERVING) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(answer.code, grpc::StatusCode::OK);
  EXPECT_EQ(HealthCheckResponse::ServingStatus_Name(answer.status),
            "NOT_SERVING");
  const HealthAnswer named = CheckHealth(*health, kService);
  EXPECT_EQ(named.code, grpc::StatusCode::OK);
  EXPECT_EQ(HealthCheckResponse::ServingStatus_Name(named.status),
            "NOT_SERVING");
  // Still answering during the drain.
  auto during = client->IssueIds(v1::KIND_THREAD, alice);
  EXPECT_TRUE(during.ok()) << StatusText(during.status());
  if (during.ok()) {
    EXPECT_EQ(testing::VerdictOf(*client, during->front(), alice),
              v1::VERDICT_VALID);
  }
  // The calls above were answered after NOT_SERVING was seen and the
  // server was still running after them: they fell in the drain, however
  // long this machine took to make them (no bound on our own speed).
  EXPECT_TRUE((*server)->running());

  const std::optional<int> code = (*server)->WaitForExit(absl::Seconds(10));
  const absl::Duration took = absl::Now() - term;
  EXPECT_EQ(code, 0) << (*server)->Log();
  EXPECT_GE(took, drain * 0.95) << "drain not honoured";
  EXPECT_LT(took, drain + absl::Seconds(4) * SanitizerTimeScale())
      << "slow exit after the drain";

  // Gone: calls fail.
  auto after =
      client->IssueIds(v1::KIND_THREAD, alice, 1, {}, absl::Milliseconds(500));
  EXPECT_FALSE(after.ok());
}

TEST(ObservabilityTest, SigintExitsZero) {
  auto server = ServerProcess::Start();
  ASSERT_TRUE(server.ok()) << StatusText(server.status());
  auto client = testing::MakeClient(**server);
  ASSERT_TRUE(
      client->IssueIds(v1::KIND_THREAD, MakeOwner("acme", "alice")).ok());
  (*server)->Signal(SIGINT);
  EXPECT_EQ((*server)->WaitForExit(absl::Seconds(10)), 0) << (*server)->Log();
}

TEST(ObservabilityTest, SigtermWithoutDrainExitsZeroPromptly) {
  auto server = ServerProcess::Start();  // --shutdown_drain=0s
  ASSERT_TRUE(server.ok()) << StatusText(server.status());
  auto client = testing::MakeClient(**server);
  ASSERT_TRUE(
      client->IssueIds(v1::KIND_THREAD, MakeOwner("acme", "alice")).ok());
  const absl::Time term = absl::Now();
  (*server)->Signal(SIGTERM);
  EXPECT_EQ((*server)->WaitForExit(absl::Seconds(10)), 0) << (*server)->Log();
  // Well under civetweb's 2 s listener poll, which shutdown no longer waits
  // out (Metrics' StopExposer wakes it).
  EXPECT_LT(absl::Now() - term, absl::Seconds(1) * SanitizerTimeScale())
      << (*server)->Log();
}

}  // namespace
}  // namespace registrar
