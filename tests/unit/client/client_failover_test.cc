// Client with several endpoints (a comma-separated target), against real
// in-process gRPC servers (FakeRegistrar) and a closed port: calls are
// spread over the endpoints, a call is never sent to an endpoint that
// cannot be reached, calls that are safe to repeat fail over, and a call
// that may have been applied is not sent twice.

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "client/rpc_status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/client/fake_registrar.h"

namespace registrar {
namespace {

using client_test::FakeServer;
using ::testing::HasSubstr;

ClientOptions Options(const std::vector<std::string>& targets) {
  ClientOptions options;
  options.target = absl::StrJoin(targets, ",");
  options.initial_backoff = absl::Milliseconds(5);
  options.max_backoff = absl::Milliseconds(20);
  return options;
}

// A loopback address nothing listens on: a server that was stopped.
std::string ClosedTarget() {
  FakeServer server;
  const std::string target = server.target();
  server.Stop();
  return target;
}

class ClientFailoverTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(a_.started());
    ASSERT_TRUE(b_.started());
  }

  FakeServer a_;
  FakeServer b_;
};

TEST_F(ClientFailoverTest, OptionsJoinTargetsWithCommas) {
  EXPECT_EQ(Options({"x:1", "y:2"}).target, "x:1,y:2");
}

TEST_F(ClientFailoverTest, CallsAreSpreadOverEveryEndpoint) {
  Client client(Options({a_.target(), b_.target()}));
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(client.Issue(v1::IssueRequest()).ok()) << i;
  }
  // In turn: each endpoint got half, and no call was sent twice.
  EXPECT_EQ(a_.service().issue_calls().size(), 5u);
  EXPECT_EQ(b_.service().issue_calls().size(), 5u);
}

TEST_F(ClientFailoverTest, IssueSkipsAnUnreachableEndpointWithoutSending) {
  Client client(Options({ClosedTarget(), a_.target(), ClosedTarget()}));
  for (int i = 0; i < 9; ++i) {
    absl::StatusOr<v1::IssueResponse> response =
        client.Issue(v1::IssueRequest());
    ASSERT_TRUE(response.ok()) << i << ": " << response.status();
  }
  // Every call reached the one live endpoint exactly once.
  EXPECT_EQ(a_.service().issue_calls().size(), 9u);
}

TEST_F(ClientFailoverTest, NoEndpointReachableIsUnavailable) {
  ClientOptions options = Options({ClosedTarget(), ClosedTarget()});
  options.max_attempts = 2;
  Client client(options);
  absl::StatusOr<v1::IssueResponse> response = client.Issue(v1::IssueRequest());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(response.status().message(), HasSubstr("is connected"));
}

TEST_F(ClientFailoverTest, IssueThatMayHaveBeenAppliedIsNotSentAgain) {
  // A bare UNAVAILABLE after the call was sent: the first endpoint may
  // have minted already, so the call is not repeated anywhere.
  a_.service().FailIssue(1, std::nullopt, grpc::StatusCode::UNAVAILABLE);
  Client client(Options({a_.target(), b_.target()}));
  absl::StatusOr<v1::IssueResponse> response = client.Issue(v1::IssueRequest());
  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(a_.service().issue_calls().size(), 1u);
  EXPECT_EQ(b_.service().issue_calls().size(), 0u);
}

TEST_F(ClientFailoverTest, NotAppliedIssueMovesToTheNextEndpoint) {
  // The first endpoint says it did nothing (a replica that could not reach
  // the writer): the call goes to the next one at once.
  a_.service().FailIssue(1, std::nullopt, grpc::StatusCode::UNAVAILABLE);
  a_.service().MarkFailuresNotApplied();
  Client client(Options({a_.target(), b_.target()}));
  absl::StatusOr<v1::IssueResponse> response = client.Issue(v1::IssueRequest());
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(a_.service().issue_calls().size(), 1u);
  EXPECT_EQ(b_.service().issue_calls().size(), 1u);
}

TEST_F(ClientFailoverTest, NotAppliedIsRetriedOnOneEndpointToo) {
  a_.service().FailIssue(2, std::nullopt, grpc::StatusCode::UNAVAILABLE);
  a_.service().MarkFailuresNotApplied();
  Client client(Options({a_.target()}));
  absl::StatusOr<v1::IssueResponse> response = client.Issue(v1::IssueRequest());
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(a_.service().issue_calls().size(), 3u);
}

TEST_F(ClientFailoverTest, RepeatableCallFailsOverFromAStoppedEndpoint) {
  Client client(Options({a_.target(), b_.target()}));
  v1::KeepAliveRequest request;
  request.set_lease_id("lease_01m890mrhve008000me8f7x900");
  // Both endpoints connected and used once.
  ASSERT_TRUE(client.KeepAlive(request).ok());
  ASSERT_TRUE(client.KeepAlive(request).ok());
  ASSERT_EQ(a_.service().keep_alive_calls().size(), 1u);
  ASSERT_EQ(b_.service().keep_alive_calls().size(), 1u);

  a_.Stop();
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<v1::KeepAliveResponse> response = client.KeepAlive(request);
    ASSERT_TRUE(response.ok()) << i << ": " << response.status();
  }
  EXPECT_EQ(b_.service().keep_alive_calls().size(), 5u);
}

TEST_F(ClientFailoverTest, RepeatableCallFailsOverOnUnavailable) {
  a_.service().FailKeepAlive(grpc::StatusCode::UNAVAILABLE);
  ClientOptions options = Options({a_.target(), b_.target()});
  options.max_attempts = 2;
  Client client(options);
  v1::KeepAliveRequest request;
  request.set_lease_id("lease_01m890mrhve008000me8f7x900");
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<v1::KeepAliveResponse> response = client.KeepAlive(request);
    ASSERT_TRUE(response.ok()) << i << ": " << response.status();
  }
  // Every call that started on the failing endpoint went on to the other.
  EXPECT_EQ(a_.service().keep_alive_calls().size(), 2u);
  EXPECT_EQ(b_.service().keep_alive_calls().size(), 4u);
}

TEST_F(ClientFailoverTest, OneTargetWithASchemeKeepsItsCommas) {
  // "ipv4:" lists several addresses in one gRPC target: one channel,
  // gRPC's round robin spreads the calls.
  const std::string target =
      absl::StrCat("ipv4:", a_.target(), ",", b_.target());
  ClientOptions options;
  options.target = target;
  Client client(options);
  // Until both addresses got calls (gRPC's default, pick_first, would
  // send every call to the first); bounded.
  int calls = 0;
  while (calls < 200 && (a_.service().issue_calls().empty() ||
                         b_.service().issue_calls().empty())) {
    ASSERT_TRUE(client.Issue(v1::IssueRequest()).ok()) << calls;
    ++calls;
  }
  EXPECT_FALSE(a_.service().issue_calls().empty());
  EXPECT_FALSE(b_.service().issue_calls().empty());
  EXPECT_EQ(
      a_.service().issue_calls().size() + b_.service().issue_calls().size(),
      static_cast<size_t>(calls));
}

}  // namespace
}  // namespace registrar
