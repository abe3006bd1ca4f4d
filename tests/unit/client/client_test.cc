// Client against a real in-process gRPC server (FakeRegistrar): honouring
// RetryInfo on RESOURCE_EXHAUSTED, bearer token metadata, option errors
// from Client::Create, and TLS / mutual TLS with certificates made by
// openssl at test time.

#include "client/client.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/rpc_status.h"
#include "gmock/gmock.h"
#include "grpcpp/security/server_credentials.h"
#include "gtest/gtest.h"
#include "tests/time_scale.h"
#include "tests/unit/client/fake_registrar.h"

namespace registrar {
namespace {

using client_test::FakeServer;
using client_test::ObservedCall;
using ::testing::HasSubstr;
using ::testing::Optional;

v1::Owner TestOwner() {
  v1::Owner owner;
  owner.set_tenant("acme");
  owner.set_user_id("u1");
  return owner;
}

ClientOptions FastOptions(const std::string& target) {
  ClientOptions options;
  options.target = target;
  options.initial_backoff = absl::Milliseconds(5);
  options.max_backoff = absl::Milliseconds(20);
  return options;
}

class ClientRetryTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(server_.started()); }

  FakeServer server_;
};

TEST_F(ClientRetryTest, RetriesIssueAfterRetryInfoDelay) {
  const absl::Duration delay = absl::Milliseconds(300);
  server_.service().FailIssue(2, delay);
  Client client(FastOptions(server_.target()));

  absl::StatusOr<std::vector<std::string>> ids =
      client.IssueIds(v1::KIND_THREAD, TestOwner(), 2);

  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(ids->size(), 2u);
  std::vector<ObservedCall> calls = server_.service().issue_calls();
  ASSERT_EQ(calls.size(), 3u);
  // The server timestamps a call before replying; the client waits the
  // delay after reading the reply: arrivals are at least the delay apart,
  // although the backoff (at most 20 ms here) is much shorter.
  EXPECT_GE(calls[1].at - calls[0].at, delay);
  EXPECT_GE(calls[2].at - calls[1].at, delay);
}

TEST_F(ClientRetryTest, ResourceExhaustedWithoutRetryInfoIsNotRetried) {
  server_.service().FailIssue(1, std::nullopt);
  Client client(FastOptions(server_.target()));

  absl::StatusOr<v1::IssueResponse> response = client.Issue(v1::IssueRequest());

  EXPECT_EQ(response.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(server_.service().issue_calls().size(), 1u);
  EXPECT_FALSE(grpc_status::IsRetryableThrottle(response.status()));
  EXPECT_EQ(grpc_status::GetRetryDelay(response.status()), std::nullopt);
  std::optional<google::rpc::QuotaFailure> quota =
      grpc_status::GetQuotaFailure(response.status());
  ASSERT_TRUE(quota.has_value());
  ASSERT_EQ(quota->violations_size(), 1);
  EXPECT_EQ(quota->violations(0).subject(), "caller:test");
}

TEST_F(ClientRetryTest, DeadlineBoundsThrottledRetries) {
  server_.service().FailIssue(1000, absl::Milliseconds(200));
  ClientOptions options = FastOptions(server_.target());
  options.max_attempts = 1000;
  Client client(options);

  const absl::Time start = absl::Now();
  absl::StatusOr<v1::IssueResponse> response =
      client.Issue(v1::IssueRequest(), absl::Milliseconds(700));
  const absl::Duration elapsed = absl::Now() - start;

  // Attempts near 0, 200, 400 and 600 ms; the next wait would pass the
  // deadline, so the last RESOURCE_EXHAUSTED (with its RetryInfo) returns.
  EXPECT_EQ(response.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(grpc_status::IsRetryableThrottle(response.status()));
  EXPECT_THAT(grpc_status::GetRetryDelay(response.status()),
              Optional(absl::Milliseconds(200)));
  // Returned by the deadline (plus scheduling slack, scaled in sanitizer
  // builds): not after the 1000 attempts the server would allow.
  EXPECT_LT(elapsed,
            absl::Milliseconds(700) +
                absl::Milliseconds(300) * testing::SanitizerTimeScale());
  const size_t calls = server_.service().issue_calls().size();
  EXPECT_GE(calls, 2u);
  EXPECT_LE(calls, 4u);
}

TEST_F(ClientRetryTest, RetryDelayBeyondDeadlineReturnsAtOnce) {
  server_.service().FailIssue(1, absl::Seconds(10));
  Client client(FastOptions(server_.target()));

  const absl::Time start = absl::Now();
  absl::StatusOr<v1::IssueResponse> response =
      client.Issue(v1::IssueRequest(), absl::Seconds(2));

  EXPECT_EQ(response.status().code(), absl::StatusCode::kResourceExhausted);
  // At once: well before the 10 s delay, and before the 2 s deadline
  // (which would also end a client that waited).
  EXPECT_LT(absl::Now() - start,
            std::min(absl::Seconds(1) * testing::SanitizerTimeScale(),
                     absl::Milliseconds(1500)));
  EXPECT_EQ(server_.service().issue_calls().size(), 1u);
}

TEST_F(ClientRetryTest, MaxAttemptsBoundsThrottledRetries) {
  server_.service().FailIssue(10, absl::Milliseconds(10));
  ClientOptions options = FastOptions(server_.target());
  options.max_attempts = 3;
  Client client(options);

  absl::StatusOr<v1::IssueResponse> response = client.Issue(v1::IssueRequest());

  EXPECT_EQ(response.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(server_.service().issue_calls().size(), 3u);
}

TEST_F(ClientRetryTest, UnavailableIssueIsStillNotRetried) {
  // Even with a RetryInfo: an UNAVAILABLE Issue may have been applied.
  server_.service().FailIssue(1, absl::Milliseconds(10),
                              grpc::StatusCode::UNAVAILABLE);
  Client client(FastOptions(server_.target()));

  absl::StatusOr<v1::IssueResponse> response = client.Issue(v1::IssueRequest());

  EXPECT_EQ(response.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(server_.service().issue_calls().size(), 1u);
}

TEST_F(ClientRetryTest, BearerTokenIsSentOnEveryCallIncludingWatch) {
  server_.service().FailIssue(1, absl::Milliseconds(10));
  ClientOptions options = FastOptions(server_.target());
  options.bearer_token = "s3cr3t-token";
  Client client(options);

  ASSERT_TRUE(client.Issue(v1::IssueRequest()).ok());
  std::vector<uint64_t> revisions;
  v1::WatchRequest watch;
  watch.set_start_revision(42);
  absl::Status status = client.Watch(watch, [&](const v1::WatchEvent& event) {
    revisions.push_back(event.revision());
    return true;
  });
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_THAT(revisions, ::testing::ElementsAre(42u));
  // With a caller-supplied context too.
  grpc::ClientContext context;
  ASSERT_TRUE(
      client
          .Watch(
              watch, [](const v1::WatchEvent&) { return false; }, &context)
          .ok());

  std::vector<ObservedCall> issues = server_.service().issue_calls();
  ASSERT_EQ(issues.size(), 2u);  // the throttled attempt and its retry
  for (const ObservedCall& call : issues) {
    EXPECT_THAT(call.authorization,
                Optional(std::string("Bearer s3cr3t-token")));
  }
  std::vector<ObservedCall> watches = server_.service().watch_calls();
  ASSERT_EQ(watches.size(), 2u);
  for (const ObservedCall& call : watches) {
    EXPECT_THAT(call.authorization,
                Optional(std::string("Bearer s3cr3t-token")));
  }
}

TEST_F(ClientRetryTest, NoTokenSendsNoAuthorization) {
  Client client(FastOptions(server_.target()));
  ASSERT_TRUE(client.Issue(v1::IssueRequest()).ok());
  ASSERT_EQ(server_.service().issue_calls().size(), 1u);
  EXPECT_EQ(server_.service().issue_calls()[0].authorization, std::nullopt);
}

TEST(ClientCreateTest, MissingCaFileNamesOptionAndPath) {
  ClientOptions options;
  options.tls_ca_file = "/nonexistent/registrar-ca.pem";
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(options);
  ASSERT_EQ(client.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(client.status().message(), HasSubstr("tls_ca_file"));
  EXPECT_THAT(client.status().message(),
              HasSubstr("/nonexistent/registrar-ca.pem"));
}

TEST(ClientCreateTest, OtherOptionErrors) {
  ClientOptions cert_only;
  cert_only.tls_cert_file = "/etc/hostname";
  EXPECT_THAT(Client::Create(cert_only).status().message(),
              HasSubstr("tls_key_file"));

  ClientOptions not_pem;
  not_pem.tls_ca_file = "/proc/self/cmdline";
  absl::Status status = Client::Create(not_pem).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("no PEM data"));

  ClientOptions bad_token;
  bad_token.bearer_token = "line\nbreak";
  status = Client::Create(bad_token).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("bearer_token"));
  EXPECT_THAT(status.message(), ::testing::Not(HasSubstr("break")));

  ClientOptions plain;
  EXPECT_TRUE(Client::Create(plain).ok());
}

TEST(ClientCreateTest, ConstructorReportsOptionErrorsFromEveryCall) {
  ClientOptions options;
  options.tls_ca_file = "/nonexistent/registrar-ca.pem";
  Client client(options);
  absl::StatusOr<v1::IssueResponse> issue = client.Issue(v1::IssueRequest());
  EXPECT_EQ(issue.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(issue.status().message(), HasSubstr("tls_ca_file"));
  absl::Status watch = client.Watch(v1::WatchRequest(),
                                    [](const v1::WatchEvent&) { return true; });
  EXPECT_EQ(watch.code(), absl::StatusCode::kInvalidArgument);
}

// --- TLS -------------------------------------------------------------------

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

// A CA, a server certificate for "registrar.test" and a client certificate
// for the URI SAN "spiffe://test/gateway", made with openssl.
class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    std::string tmpl = ::testing::TempDir() + "registrar-client-tls-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = new std::string(tmpl);
    const std::string d = *dir_;
    std::ofstream(d + "/server.ext") << "subjectAltName=DNS:registrar.test\n";
    std::ofstream(d + "/client.ext")
        << "subjectAltName=URI:spiffe://test/gateway\n";
    const std::string key =
        "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    const std::string script = absl::StrCat(
        "set -e; cd '", d, "'; exec 2>openssl.log; ", "openssl req -x509 ", key,
        " -keyout ca.key -out ca.pem -days 1 -subj /CN=test-ca; ",
        "openssl req -x509 ", key,
        " -keyout other-ca.key -out other-ca.pem -days 1 -subj /CN=other-ca; ",
        "for n in server client; do ", "openssl req ", key,
        " -keyout $n.key -out $n.csr -subj /CN=$n; ",
        "openssl x509 -req -in $n.csr -CA ca.pem -CAkey ca.key ",
        "-CAcreateserial -out $n.pem -days 1 -extfile $n.ext; done");
    ASSERT_EQ(std::system(script.c_str()), 0) << ReadFile(d + "/openssl.log");
  }
  static void TearDownTestSuite() {
    if (dir_ != nullptr) {
      std::system(("rm -rf '" + *dir_ + "'").c_str());
      delete dir_;
      dir_ = nullptr;
    }
  }

  static std::string Path(const std::string& name) {
    return *dir_ + "/" + name;
  }

  // Server credentials requiring and verifying client certificates.
  static std::shared_ptr<grpc::ServerCredentials> MutualTlsServer() {
    grpc::SslServerCredentialsOptions ssl(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = ReadFile(Path("ca.pem"));
    ssl.pem_key_cert_pairs.push_back(
        {ReadFile(Path("server.key")), ReadFile(Path("server.pem"))});
    return grpc::SslServerCredentials(ssl);
  }

  static ClientOptions TlsOptions(const std::string& target) {
    ClientOptions options;
    options.target = target;
    options.deadline = absl::Seconds(3);
    options.max_attempts = 1;
    options.tls_ca_file = Path("ca.pem");
    options.tls_cert_file = Path("client.pem");
    options.tls_key_file = Path("client.key");
    options.tls_server_name = "registrar.test";
    return options;
  }

  static std::string* dir_;
};

std::string* TlsTest::dir_ = nullptr;

TEST_F(TlsTest, MutualTlsWithServerNameOverride) {
  FakeServer server(MutualTlsServer());
  ASSERT_TRUE(server.started());
  absl::StatusOr<std::unique_ptr<Client>> client =
      Client::Create(TlsOptions(server.target()));
  ASSERT_TRUE(client.ok()) << client.status();

  absl::StatusOr<v1::IssueResponse> response =
      (*client)->Issue(v1::IssueRequest());

  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(server.service().issue_calls().size(), 1u);
  EXPECT_THAT(server.service().issue_calls()[0].peer_identity,
              HasSubstr("spiffe://test/gateway"));
}

TEST_F(TlsTest, RefusedWithoutClientCertificate) {
  FakeServer server(MutualTlsServer());
  ASSERT_TRUE(server.started());
  ClientOptions options = TlsOptions(server.target());
  options.tls_cert_file.clear();
  options.tls_key_file.clear();
  absl::StatusOr<std::unique_ptr<Client>> client = Client::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();

  EXPECT_FALSE((*client)->Issue(v1::IssueRequest()).ok());
  EXPECT_TRUE(server.service().issue_calls().empty());
}

TEST_F(TlsTest, RefusesServerOfAnotherCaOrName) {
  FakeServer server(MutualTlsServer());
  ASSERT_TRUE(server.started());

  ClientOptions wrong_ca = TlsOptions(server.target());
  wrong_ca.tls_ca_file = Path("other-ca.pem");
  EXPECT_FALSE(Client(wrong_ca).Issue(v1::IssueRequest()).ok());

  // Without the override the name checked is 127.0.0.1, not in the cert.
  ClientOptions no_override = TlsOptions(server.target());
  no_override.tls_server_name.clear();
  EXPECT_FALSE(Client(no_override).Issue(v1::IssueRequest()).ok());

  ClientOptions plaintext;
  plaintext.target = server.target();
  plaintext.deadline = absl::Seconds(3);
  EXPECT_FALSE(Client(plaintext).Issue(v1::IssueRequest()).ok());

  EXPECT_TRUE(server.service().issue_calls().empty());
}

}  // namespace
}  // namespace registrar
