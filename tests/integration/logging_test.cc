// Logs an operator can use, against the real server:
//  - --log_format=json: every line of the server's log and of its access
//    log is one JSON object with ts, level and msg (checked with Debian's
//    /usr/bin/python3 json), hostile text included;
//  - --access_log: one line per call with method, code (Go's names),
//    duration, caller, tenant, peer and the caller's traceparent /
//    x-request-id (bounded); none with --access_log_sample=0;
//  - a warning that repeats (protobuf's complaint about a string that is
//    not UTF-8, on every such request) is written at most once per
//    --log_repeat_interval, the next one counting those left out.

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "service/auth/callers_file.h"
#include "tests/integration/own_server_test.h"
#include "tests/integration/test_util.h"

namespace registrar::testing {
namespace {

using ::testing::HasSubstr;

std::vector<std::string> Containing(const std::vector<std::string>& lines,
                                    const std::string& needle) {
  std::vector<std::string> out;
  for (const std::string& l : lines) {
    if (absl::StrContains(l, needle)) out.push_back(l);
  }
  return out;
}

// Runs /usr/bin/python3 on `file`: every line must be a JSON object with
// string ts, level and msg. Prints "<lines> ok" or the first bad line.
std::string CheckJsonLines(const std::string& file,
                           const std::string& extra_keys = "") {
  const std::string script = absl::StrCat(
      "import json,sys\n"
      "n=0\n"
      "for raw in open(sys.argv[1],'rb'):\n"
      "  line=raw.decode('utf-8')\n"
      "  o=json.loads(line)\n"
      "  assert isinstance(o,dict), line\n"
      "  for k in ['ts','level','msg']+[k for k in sys.argv[2].split(',') "
      "if k]:\n"
      "    assert isinstance(o.get(k),(str,float,int)), (k, line)\n"
      "  n+=1\n"
      "print(n,'ok')\n");
  const std::string path = file + ".check.py";
  std::ofstream(path) << script;
  const std::string command = absl::StrCat(
      "/usr/bin/python3 ", ShellQuote(path), " ", ShellQuote(file), " ",
      ShellQuote(extra_keys.empty() ? "," : extra_keys), " 2>&1");
  return CommandOutput(command);
}

class LoggingTest : public OwnServerTest {
 protected:
  void SetUp() override {
    OwnServerTest::SetUp();
    callers_ = dir_ + "/callers.json";
    std::ofstream(callers_)
        << "{\"callers\": [{\"name\": \"gw-a\", \"role\": \"ROLE_GATEWAY\", "
           "\"tenants\": [\"tenant-a\"], \"token_sha256\": [\""
        << HashToken("token-gw-a") << "\"]}]}";
  }

  grpc::Status Issue(
      const std::string& token, const std::string& tenant,
      const std::vector<std::pair<std::string, std::string>>& metadata = {},
      const std::string& label = "") {
    grpc::ClientContext ctx;
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    for (const auto& [k, v] : metadata) ctx.AddMetadata(k, v);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    v1::IssueRequest req;
    req.set_kind(v1::KIND_THREAD);
    *req.mutable_owner() = MakeOwner(tenant, "u1");
    if (!label.empty()) (*req.mutable_labels())["k"] = label;
    v1::IssueResponse resp;
    return stub_->Issue(&ctx, req, &resp);
  }

  std::string callers_;
};

TEST_F(LoggingTest, JsonFormatMakesEveryLineOneJsonObject) {
  const std::string access = dir_ + "/access.log";
  ASSERT_NO_FATAL_FAILURE(
      Start({"--log_format=json", "--callers_file=" + callers_,
             "--access_log=" + access}));
  ASSERT_TRUE(Issue("token-gw-a", "tenant-a").ok());
  // Hostile text in a logged refusal and in the access log.
  const grpc::Status denied =
      Issue("token-gw-a", "x\"}\n{\"level\":\"critical\"\x1b[2J\xff");
  EXPECT_NE(denied.error_code(), grpc::StatusCode::OK);
  const grpc::Status denied2 = Issue("token-gw-a", "tenant-b\n{\"forged\":1}");
  EXPECT_EQ(denied2.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_FALSE(Issue("token-gw-a", "tenant-a", {}, "bad\xff").ok());
  EXPECT_FALSE(Issue("unknown-token", "tenant-a").ok());
  ASSERT_EQ(StopServer(*server_), 0);  // startup and shutdown lines too

  const std::string log_file = server_->dir() + "/server.log";
  const std::vector<std::string> lines = NonEmptyLines(server_->Log());
  ASSERT_GE(lines.size(), 4u) << server_->Log();
  EXPECT_EQ(CheckJsonLines(log_file), absl::StrCat(lines.size(), " ok\n"))
      << server_->Log();
  EXPECT_EQ(Containing(lines, "permission denied").size(), 1u)
      << server_->Log();
  // 5 calls, one access line each, with the access fields.
  EXPECT_EQ(CheckJsonLines(access, "method,code,duration_ms,peer"), "5 ok\n")
      << ReadFile(access);
  const std::vector<std::string> access_lines = NonEmptyLines(ReadFile(access));
  ASSERT_EQ(access_lines.size(), 5u);
  EXPECT_THAT(access_lines[0],
              HasSubstr("\"method\":\"/registrar.v1.Registrar/Issue\""));
  EXPECT_THAT(access_lines[0], HasSubstr("\"code\":\"OK\""));
  EXPECT_THAT(access_lines[0], HasSubstr("\"caller\":\"gw-a\""));
  EXPECT_THAT(access_lines[0], HasSubstr("\"tenant\":\"tenant-a\""));
  EXPECT_EQ(Containing(access_lines, "\"code\":\"PermissionDenied\"").size(),
            1u);
  EXPECT_EQ(Containing(access_lines, "\"code\":\"Unauthenticated\"").size(),
            1u);
}

TEST_F(LoggingTest, AccessLogLineCarriesCallFieldsAndTraceMetadata) {
  const std::string access = dir_ + "/access.log";
  ASSERT_NO_FATAL_FAILURE(
      Start({"--callers_file=" + callers_, "--access_log=" + access}));
  const std::string traceparent =
      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const std::string long_id(5000, 'r');
  ASSERT_TRUE(Issue("token-gw-a", "tenant-a",
                    {{"traceparent", traceparent}, {"x-request-id", "req-1"}})
                  .ok());
  EXPECT_EQ(
      Issue("token-gw-a", "tenant-b", {{"x-request-id", long_id}}).error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  // Written when the status is sent: before the client sees it.
  const std::vector<std::string> lines = NonEmptyLines(ReadFile(access));
  ASSERT_EQ(lines.size(), 2u) << ReadFile(access);
  EXPECT_THAT(
      lines[0],
      ::testing::MatchesRegex(
          R"(^\[[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}\.[0-9]{3}\] \[access\] .*)"));
  EXPECT_THAT(lines[0], HasSubstr("method=/registrar.v1.Registrar/Issue "
                                  "code=OK duration_ms="));
  EXPECT_THAT(lines[0], HasSubstr(" caller=gw-a tenant=\"tenant-a\" peer=\""));
  EXPECT_THAT(lines[0], HasSubstr(absl::StrCat(" traceparent=\"", traceparent,
                                               "\" x_request_id=\"req-1\"")));
  EXPECT_THAT(lines[1], HasSubstr("code=PermissionDenied"));
  EXPECT_THAT(lines[1], HasSubstr("tenant=\"tenant-b\""));
  EXPECT_THAT(lines[1], HasSubstr(" traceparent=- "));
  // The 5000-byte request id is cut to its bound.
  EXPECT_THAT(lines[1], HasSubstr("...(5000 bytes)\""));
  EXPECT_LT(lines[1].size(), 1024u);
}

TEST_F(LoggingTest, AccessLogSampleZeroWritesNothing) {
  const std::string access = dir_ + "/access.log";
  ASSERT_NO_FATAL_FAILURE(
      Start({"--access_log=" + access, "--access_log_sample=0"}));
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(Issue("", "tenant-a").ok());
  EXPECT_EQ(ReadFile(access), "");
}

TEST_F(LoggingTest, RepeatedWarningIsWrittenAtMostOncePerInterval) {
  // An hour: every later repetition falls in the first interval.
  ASSERT_NO_FATAL_FAILURE(Start({"--log_repeat_interval=1h"}));
  for (int i = 0; i < 50; ++i) {
    EXPECT_FALSE(Issue("", "tenant-a", {}, "bad\xff").ok());
  }
  const std::vector<std::string> warned =
      Containing(NonEmptyLines(server_->Log()), "invalid UTF-8");
  EXPECT_EQ(warned.size(), 1u) << server_->Log();
}

TEST_F(LoggingTest, RepeatedWarningCountsTheLinesLeftOut) {
  ASSERT_NO_FATAL_FAILURE(Start({"--log_repeat_interval=200ms"}));
  const absl::Time start = absl::Now();
  int sent = 0;
  // Bad requests until a second warning appears (one interval later).
  const bool second = PollUntil(
      [&] {
        for (int i = 0; i < 10; ++i, ++sent) {
          EXPECT_FALSE(Issue("", "tenant-a", {}, "bad\xff").ok());
        }
        return Containing(NonEmptyLines(server_->Log()), "invalid UTF-8")
                   .size() >= 2;
      },
      absl::Seconds(10));
  ASSERT_TRUE(second);
  const absl::Duration elapsed = absl::Now() - start;
  const std::vector<std::string> warned =
      Containing(NonEmptyLines(server_->Log()), "invalid UTF-8");
  // At most one per 200 ms interval (and one at the start).
  EXPECT_LE(warned.size(),
            static_cast<size_t>(elapsed / absl::Milliseconds(200)) + 1);
  EXPECT_LT(warned.size(), static_cast<size_t>(sent));
  EXPECT_THAT(warned[1],
              ::testing::MatchesRegex(
                  R"(.*\([0-9]+ more like this since the last one\)$)"));
}

}  // namespace
}  // namespace registrar::testing
