// Replicas forwarding changes over TLS (service/cluster/DESIGN.md,
// "Forwarding"): one certificate shared by every replica that names a DNS
// name and no address, mutual TLS on the API port, and certificates
// renewed while the replicas run.

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "client/rpc_status.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "tests/cluster/replicas_fixture.h"

namespace registrar {
namespace {

using ::registrar::testing::Call;
using ::registrar::testing::KillNine;
using ::registrar::testing::Node;
using ::registrar::testing::PollUntil;
using ::registrar::testing::ReplicasFixture;
using ::registrar::testing::Retry;
using ::registrar::testing::Text;

class ReplicasTlsTest : public ReplicasFixture {};

// A CA and a certificate it signed in `dir` (ca.crt, r.crt, r.key): EC
// P-256, valid a day, naming DNS:registrar.test and no address, good for
// server and client authentication.
bool MakeCertificates(const std::string& dir) {
  const std::string script = absl::StrCat(R"(set -e
mkdir -p ')",
                                          dir, R"('; cd ')", dir, R"('
k="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $k -keyout ca.key -out ca.crt -days 1 -subj /CN=replicas-ca
printf 'subjectAltName=DNS:registrar.test\nextendedKeyUsage=serverAuth,clientAuth\n' > r.ext
openssl req $k -keyout r.key -out r.csr -subj /CN=registrar.test
openssl x509 -req -in r.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out r.crt -days 1 -extfile r.ext
)");
  return std::system(absl::StrCat("bash -c '",
                                  absl::StrReplaceAll(script, {{"'", "'\\''"}}),
                                  "' >/dev/null 2>&1")
                         .c_str()) == 0;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A stub to `n` over mutual TLS with the files in `dir`, checking the
// server's certificate for registrar.test.
std::unique_ptr<v1::Registrar::Stub> TlsStub(Node& n, const std::string& dir) {
  grpc::SslCredentialsOptions creds;
  creds.pem_root_certs = ReadFile(dir + "/ca.crt");
  creds.pem_cert_chain = ReadFile(dir + "/r.crt");
  creds.pem_private_key = ReadFile(dir + "/r.key");
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("registrar.test");
  return v1::Registrar::NewStub(grpc::CreateCustomChannel(
      n.process->grpc_address(), grpc::SslCredentials(creds), args));
}

// One certificate for every replica, naming a DNS name and no address (as
// a Kubernetes Secret shared by a Deployment's pods names the Service, not
// each pod's IP), and mutual TLS on the API port: a follower forwards a
// change to the writer by checking the writer's certificate against
// --cluster_tls_ca and --cluster_tls_server_name and presenting its own.
// Without the name, the check fails against the writer's address.
TEST_F(ReplicasTlsTest, ChangesOnAFollowerAreForwardedOverMutualTls) {
  const std::string dir = cluster_->dir() + "/replica-tls";
  ASSERT_TRUE(MakeCertificates(dir));
  const std::vector<std::string> tls = {"--tls_cert=" + dir + "/r.crt",
                                        "--tls_key=" + dir + "/r.key",
                                        "--tls_client_ca=" + dir + "/ca.crt",
                                        "--cluster_tls_ca=" + dir + "/ca.crt"};
  std::vector<std::string> named = tls;
  named.push_back("--cluster_tls_server_name=registrar.test");
  ASSERT_NO_FATAL_FAILURE(StartNodes(2, named));
  const int leader = AwaitLeader();
  ASSERT_GE(leader, 0);

  auto stub_to = [&](Node& n) { return TlsStub(n, dir); };
  auto follower = stub_to(nodes_[1 - leader]);
  auto writer = stub_to(nodes_[leader]);
  v1::IssueResponse issued;
  grpc::Status s = Retry(*follower, &v1::Registrar::Stub::Issue,
                         IssueOf(v1::KIND_THREAD, 3), &issued);
  ASSERT_TRUE(s.ok()) << Text(s);
  ASSERT_EQ(issued.ids_size(), 3);
  v1::ValidateRequest validate;
  *validate.mutable_owner() = owner_;
  for (const std::string& id : issued.ids()) validate.add_items()->set_id(id);
  v1::ValidateResponse verdicts;
  s = Call(*writer, &v1::Registrar::Stub::Validate, validate, &verdicts);
  ASSERT_TRUE(s.ok()) << Text(s);
  for (const auto& r : verdicts.results()) {
    EXPECT_EQ(r.verdict(), v1::VERDICT_VALID);
  }

  // A third replica without the name cannot check the writer's
  // certificate against 127.0.0.1: its changes are refused, not applied.
  nodes_.push_back(StartNode(tls));
  ASSERT_NE(nodes_.back().process, nullptr);
  auto unnamed = stub_to(nodes_.back());
  ASSERT_TRUE(PollUntil(
      [&] {
        v1::ValidateResponse r;
        return Call(*unnamed, &v1::Registrar::Stub::Validate, validate, &r)
            .ok();
      },
      absl::Seconds(20)));
  v1::IssueResponse refused;
  s = Call(*unnamed, &v1::Registrar::Stub::Issue, IssueOf(v1::KIND_THREAD, 1),
           &refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << Text(s);
  EXPECT_TRUE(grpc_status::IsNotApplied(grpc_status::ToAbsl(s))) << Text(s);
}

// Every replica's certificate and CA are renewed while they run (a new CA
// and a certificate it signed, renamed over the files the flags name), and
// then the writer dies. The follower that forwards to the next writer
// opens a new connection, whose handshake needs the new files on both
// sides: the writer's server now asks for a client certificate of the new
// CA, and the follower must check the writer's new certificate against the
// new CA. It works within a few reload intervals and no restart; a
// follower that read its forwarding certificate only at start would
// present the old one for ever.
TEST_F(ReplicasTlsTest, RenewedCertificatesReachForwardingWithoutARestart) {
  const std::string dir = cluster_->dir() + "/replica-renew";
  const std::string live = dir + "/live";
  ASSERT_TRUE(MakeCertificates(dir + "/old"));
  ASSERT_TRUE(MakeCertificates(dir + "/new"));
  namespace fs = std::filesystem;
  fs::create_directories(live);
  // Copies then renames, so a reload never reads a half-written file.
  auto install = [&](const std::string& from) {
    for (const char* name : {"ca.crt", "r.key", "r.crt"}) {
      fs::copy_file(from + "/" + name, live + "/" + name + ".tmp",
                    fs::copy_options::overwrite_existing);
      fs::rename(live + "/" + name + ".tmp", live + "/" + name);
    }
  };
  install(dir + "/old");
  ASSERT_NO_FATAL_FAILURE(StartNodes(
      3, {"--tls_cert=" + live + "/r.crt", "--tls_key=" + live + "/r.key",
          "--tls_client_ca=" + live + "/ca.crt",
          "--cluster_tls_ca=" + live + "/ca.crt",
          "--cluster_tls_server_name=registrar.test",
          "--tls_reload_interval=1s"}));
  const int first = AwaitLeader();
  ASSERT_GE(first, 0);
  {
    auto follower = TlsStub(nodes_[(first + 1) % 3], dir + "/old");
    v1::IssueResponse issued;
    grpc::Status s = Retry(*follower, &v1::Registrar::Stub::Issue,
                           IssueOf(v1::KIND_THREAD, 1), &issued);
    ASSERT_TRUE(s.ok()) << "forwarding before the renewal: " << Text(s);
  }

  install(dir + "/new");
  KillNine(*nodes_[first].process);
  const int next = AwaitLeader();
  ASSERT_GE(next, 0);
  ASSERT_NE(next, first);
  const int follower = 3 - first - next;
  auto via_follower = TlsStub(nodes_[follower], dir + "/new");
  v1::IssueResponse issued;
  grpc::Status s;
  EXPECT_TRUE(PollUntil(
      [&] {
        issued.Clear();
        s = Call(*via_follower, &v1::Registrar::Stub::Issue,
                 IssueOf(v1::KIND_THREAD, 2), &issued);
        return s.ok();
      },
      absl::Seconds(30)))
      << "a change on the follower after the renewal: " << Text(s);
  ASSERT_EQ(issued.ids_size(), 2);
  // It was the writer that took it.
  auto writer = TlsStub(nodes_[next], dir + "/new");
  v1::ValidateRequest validate;
  *validate.mutable_owner() = owner_;
  for (const std::string& id : issued.ids()) validate.add_items()->set_id(id);
  v1::ValidateResponse verdicts;
  s = Call(*writer, &v1::Registrar::Stub::Validate, validate, &verdicts);
  ASSERT_TRUE(s.ok()) << Text(s);
  ASSERT_EQ(verdicts.results_size(), 2);
  for (const auto& r : verdicts.results()) {
    EXPECT_EQ(r.verdict(), v1::VERDICT_VALID);
  }
}

}  // namespace
}  // namespace registrar
