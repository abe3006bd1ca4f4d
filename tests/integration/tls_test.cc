// Transport security of the real server: TLS, mutual TLS with certificates
// made by openssl for the test (good, wrong CA, expired, none), plaintext
// to a TLS port, certificate identity as the caller, certificate reload
// without dropping an open stream, and the loopback-only plaintext rule.

#include <grpcpp/grpcpp.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "service/auth/callers_file.h"
#include "tests/integration/test_util.h"

namespace registrar::testing {
namespace {

using grpc::StatusCode;

// A scratch PKI in a temp dir, built with the openssl command.
class Pki {
 public:
  Pki() {
    dir_ = ::testing::TempDir() + "/tls_test_" + std::to_string(getpid()) +
           "_" + std::to_string(counter_++);
    std::filesystem::create_directories(dir_);
  }
  ~Pki() { std::filesystem::remove_all(dir_); }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  // A self-signed CA `name` (name.crt, name.key).
  bool MakeCa(const std::string& name) {
    return Run(absl::StrCat(
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
        "-nodes -keyout ",
        Path(name + ".key"), " -out ", Path(name + ".crt"),
        " -days 2 -subj /CN=", name));
  }

  // A certificate `name` signed by CA `ca`, with subjectAltName `san` and
  // extendedKeyUsage `usage`, valid from `start` to `end` (openssl ca
  // dates, e.g. 20200101000000Z; empty: now to tomorrow).
  bool MakeCert(const std::string& name, const std::string& ca,
                const std::string& san, const std::string& usage,
                const std::string& start = "", const std::string& end = "") {
    const std::string cnf = Path(name + ".cnf");
    std::ofstream(cnf) << "[ca]\ndefault_ca = t\n[t]\ndatabase = "
                       << Path(name + ".index") << "\nnew_certs_dir = " << dir_
                       << "\nserial = " << Path(name + ".serial")
                       << "\ndefault_md = sha256\npolicy = p\n"
                          "x509_extensions = e\ndefault_days = 1\n"
                          "[p]\ncommonName = supplied\n[e]\nsubjectAltName = "
                       << san << "\nextendedKeyUsage = " << usage << "\n";
    std::ofstream(Path(name + ".index")).close();
    // openssl wants an even number of hex digits.
    std::ofstream(Path(name + ".serial"))
        << absl::StrFormat("%04X\n", 0x1000 + counter_++);
    std::string dates;
    if (!start.empty()) dates = " -startdate " + start + " -enddate " + end;
    return Run(absl::StrCat(
               "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
               "-nodes -keyout ",
               Path(name + ".key"), " -out ", Path(name + ".csr"),
               " -subj /CN=", name)) &&
           Run(absl::StrCat("openssl ca -batch -notext -config ", cnf,
                            " -cert ", Path(ca + ".crt"), " -keyfile ",
                            Path(ca + ".key"), " -in ", Path(name + ".csr"),
                            " -out ", Path(name + ".crt"), dates));
  }

  std::string Read(const std::string& name) const {
    return ReadFile(Path(name));
  }

 private:
  static bool Run(const std::string& command) {
    return std::system((command + " >/dev/null 2>&1").c_str()) == 0;
  }
  std::string dir_;
  static inline int counter_ = 0;
};

std::string ServerSan() { return "DNS:localhost,IP:127.0.0.1"; }

// Channel credentials trusting `roots` (PEM), optionally presenting a
// client certificate.
std::shared_ptr<grpc::ChannelCredentials> Tls(const std::string& roots,
                                              const std::string& cert = "",
                                              const std::string& key = "") {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = roots;
  options.pem_cert_chain = cert;
  options.pem_private_key = key;
  return grpc::SslCredentials(options);
}

grpc::Status IssueOne(const std::string& address,
                      std::shared_ptr<grpc::ChannelCredentials> creds,
                      const std::string& tenant = "tenant-a",
                      v1::IssueResponse* out = nullptr) {
  auto stub = v1::Registrar::NewStub(grpc::CreateChannel(address, creds));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::IssueRequest req;
  req.set_kind(v1::KIND_THREAD);
  *req.mutable_owner() = MakeOwner(tenant, "u1");
  v1::IssueResponse resp;
  grpc::Status s = stub->Issue(&ctx, req, out ? out : &resp);
  return s;
}

std::string Code(const grpc::Status& s) {
  return absl::StrCat(s.error_code(), " ", s.error_message());
}

TEST(TlsTest, ServesTlsAndRefusesPlaintextAndUntrustedClients) {
  Pki pki;
  ASSERT_TRUE(pki.MakeCa("ca"));
  ASSERT_TRUE(pki.MakeCa("other-ca"));
  ASSERT_TRUE(pki.MakeCert("server", "ca", ServerSan(), "serverAuth"));
  ServerProcess::Options options;
  options.args = {"--store=memory", "--tls_cert=" + pki.Path("server.crt"),
                  "--tls_key=" + pki.Path("server.key")};
  auto server = StartOrFail(options);
  ASSERT_NE(server, nullptr);

  grpc::Status s = IssueOne(server->grpc_address(), Tls(pki.Read("ca.crt")));
  EXPECT_TRUE(s.ok()) << Code(s);
  // Plaintext to the TLS port.
  s = IssueOne(server->grpc_address(), grpc::InsecureChannelCredentials());
  EXPECT_EQ(s.error_code(), StatusCode::UNAVAILABLE) << Code(s);
  // A client that does not trust the server's CA.
  s = IssueOne(server->grpc_address(), Tls(pki.Read("other-ca.crt")));
  EXPECT_EQ(s.error_code(), StatusCode::UNAVAILABLE) << Code(s);
  EXPECT_EQ(StopServer(*server), 0);
}

TEST(TlsTest, MutualTlsRequiresAValidClientCertificateAndUsesItsIdentity) {
  Pki pki;
  ASSERT_TRUE(pki.MakeCa("ca"));
  ASSERT_TRUE(pki.MakeCa("other-ca"));
  ASSERT_TRUE(pki.MakeCert("server", "ca", ServerSan(), "serverAuth"));
  ASSERT_TRUE(pki.MakeCert("gw", "ca", "URI:spiffe://test/gw-a", "clientAuth"));
  ASSERT_TRUE(pki.MakeCert("rogue", "other-ca", "URI:spiffe://test/gw-a",
                           "clientAuth"));
  ASSERT_TRUE(pki.MakeCert("expired", "ca", "URI:spiffe://test/gw-a",
                           "clientAuth", "20200101000000Z", "20200102000000Z"));
  ASSERT_TRUE(
      pki.MakeCert("stranger", "ca", "URI:spiffe://test/nobody", "clientAuth"));
  std::ofstream(pki.Path("callers.json"))
      << "{\"callers\": [{\"name\": \"gw-a\", \"role\": \"ROLE_GATEWAY\", "
         "\"tenants\": [\"tenant-a\"], \"cert_identities\": "
         "[\"spiffe://test/gw-a\"]}]}";
  ServerProcess::Options options;
  options.args = {"--store=memory", "--tls_cert=" + pki.Path("server.crt"),
                  "--tls_key=" + pki.Path("server.key"),
                  "--tls_client_ca=" + pki.Path("ca.crt"),
                  "--callers_file=" + pki.Path("callers.json")};
  auto server = StartOrFail(options);
  ASSERT_NE(server, nullptr);
  const std::string roots = pki.Read("ca.crt");
  const std::string& address = server->grpc_address();

  grpc::Status s =
      IssueOne(address, Tls(roots, pki.Read("gw.crt"), pki.Read("gw.key")));
  EXPECT_TRUE(s.ok()) << Code(s);
  // The certificate is the caller: gw-a may not act for another tenant.
  s = IssueOne(address, Tls(roots, pki.Read("gw.crt"), pki.Read("gw.key")),
               "tenant-b");
  EXPECT_EQ(s.error_code(), StatusCode::PERMISSION_DENIED) << Code(s);
  // A valid certificate that names no caller.
  s = IssueOne(address,
               Tls(roots, pki.Read("stranger.crt"), pki.Read("stranger.key")));
  EXPECT_EQ(s.error_code(), StatusCode::UNAUTHENTICATED) << Code(s);
  // Refused at the handshake: no certificate, wrong CA, expired, plaintext.
  s = IssueOne(address, Tls(roots));
  EXPECT_EQ(s.error_code(), StatusCode::UNAVAILABLE) << Code(s);
  s = IssueOne(address,
               Tls(roots, pki.Read("rogue.crt"), pki.Read("rogue.key")));
  EXPECT_EQ(s.error_code(), StatusCode::UNAVAILABLE) << Code(s);
  s = IssueOne(address,
               Tls(roots, pki.Read("expired.crt"), pki.Read("expired.key")));
  EXPECT_EQ(s.error_code(), StatusCode::UNAVAILABLE) << Code(s);
  s = IssueOne(address, grpc::InsecureChannelCredentials());
  EXPECT_EQ(s.error_code(), StatusCode::UNAVAILABLE) << Code(s);
  EXPECT_EQ(StopServer(*server), 0);
}

TEST(TlsTest, ReplacedCertificateIsServedWithoutDroppingAnOpenStream) {
  Pki pki;
  ASSERT_TRUE(pki.MakeCa("ca1"));
  ASSERT_TRUE(pki.MakeCa("ca2"));
  ASSERT_TRUE(pki.MakeCert("server1", "ca1", ServerSan(), "serverAuth"));
  ASSERT_TRUE(pki.MakeCert("server2", "ca2", ServerSan(), "serverAuth"));
  std::filesystem::copy_file(pki.Path("server1.crt"), pki.Path("live.crt"));
  std::filesystem::copy_file(pki.Path("server1.key"), pki.Path("live.key"));
  ServerProcess::Options options;
  options.args = {"--store=memory", "--tls_cert=" + pki.Path("live.crt"),
                  "--tls_key=" + pki.Path("live.key"),
                  "--tls_reload_interval=1s"};
  auto server = StartOrFail(options);
  ASSERT_NE(server, nullptr);
  const std::string& address = server->grpc_address();

  // A watch over a connection made with the first certificate.
  auto channel = grpc::CreateChannel(address, Tls(pki.Read("ca1.crt")));
  auto stub = v1::Registrar::NewStub(channel);
  grpc::ClientContext watch_ctx;
  v1::WatchRequest watch;
  watch.set_tenant("tenant-a");
  auto reader = stub->Watch(&watch_ctx, watch);
  // Make sure the stream is established before the swap.
  ASSERT_TRUE(IssueOne(address, Tls(pki.Read("ca1.crt"))).ok());
  v1::WatchEvent event;
  ASSERT_TRUE(reader->Read(&event));

  // Swap the files (rename: a reader never sees half a file).
  std::filesystem::copy_file(pki.Path("server2.crt"), pki.Path("new.crt"));
  std::filesystem::copy_file(pki.Path("server2.key"), pki.Path("new.key"));
  std::filesystem::rename(pki.Path("new.key"), pki.Path("live.key"));
  std::filesystem::rename(pki.Path("new.crt"), pki.Path("live.crt"));

  // New connections get the new certificate once the server process has
  // re-read it, which it tells no one: poll it (bounded).
  grpc::Status s;
  testing::PollUntil(
      [&] {
        s = IssueOne(address, Tls(pki.Read("ca2.crt")));
        return s.ok();
      },
      absl::Seconds(10));
  ASSERT_TRUE(s.ok()) << Code(s);
  // The open stream is still up and delivers what happened since, in order.
  v1::IssueResponse issued;
  ASSERT_TRUE(
      IssueOne(address, Tls(pki.Read("ca2.crt")), "tenant-a", &issued).ok());
  std::string last;
  while (reader->Read(&event)) {
    last = event.record().id();
    if (last == issued.ids(0)) break;
  }
  EXPECT_EQ(last, issued.ids(0));
  watch_ctx.TryCancel();
  while (reader->Read(&event)) {
  }
  reader->Finish();
  EXPECT_EQ(StopServer(*server), 0);
}

TEST(TlsTest, PlaintextOnANonLoopbackAddressIsRefused) {
  ServerProcess::Options options;
  options.args = {"--store=memory", "--listen=0.0.0.0:0"};
  auto server = ServerProcess::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_NE(std::string(server.status().message()).find("--allow_insecure"),
            std::string::npos)
      << server.status().message();
  // With --allow_insecure it serves (and says so).
  options.args.push_back("--allow_insecure");
  auto allowed = StartOrFail(options);
  ASSERT_NE(allowed, nullptr);
  EXPECT_NE(allowed->Log().find("PLAINTEXT"), std::string::npos);
  EXPECT_EQ(StopServer(*allowed), 0);
}

TEST(TlsTest, BadTlsFlagsAreRefusedNamingTheFlag) {
  Pki pki;
  ASSERT_TRUE(pki.MakeCa("ca"));
  ServerProcess::Options options;
  options.args = {"--store=memory", "--tls_cert=" + pki.Path("ca.crt")};
  auto server = ServerProcess::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_NE(std::string(server.status().message()).find("--tls_key"),
            std::string::npos);
  options.args = {"--store=memory", "--tls_cert=" + pki.Path("missing.crt"),
                  "--tls_key=" + pki.Path("ca.key")};
  server = ServerProcess::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_NE(std::string(server.status().message()).find("--tls_cert="),
            std::string::npos);
}

}  // namespace
}  // namespace registrar::testing
