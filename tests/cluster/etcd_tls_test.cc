// service/etcd's connection options: a single-member etcd that requires
// client certificates (mTLS) serves a client that presents one and refuses
// one that does not; bad options are refused with the option's name.

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "service/etcd/connection.h"
#include "service/etcd/kv.h"
#include "tests/cluster/await.h"
#include "tests/cluster/etcd_cluster.h"

namespace registrar::etcd {
namespace {

using ::registrar::testing::Call;
using ::registrar::testing::EtcdCluster;

// A CA, a server certificate for 127.0.0.1 and a client certificate, made
// with the openssl command line (scripts/install-deps.sh installs it).
bool MakeCertificates(const std::string& dir) {
  const std::string script = R"(set -e
k="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $k -keyout ca.key -out ca.crt -days 1 \
  -subj /CN=registrar-test-ca
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' \
  > server.ext
openssl req $k -keyout server.key -out server.csr -subj /CN=etcd
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
  -out server.crt -days 1 -extfile server.ext
printf 'extendedKeyUsage=clientAuth\n' > client.ext
openssl req $k -keyout client.key -out client.csr -subj /CN=client
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
  -out client.crt -days 1 -extfile client.ext
)";
  std::ofstream(dir + "/make-certs.sh") << script;
  const std::string cmd = absl::StrCat("cd '", dir,
                                       "' && bash make-certs.sh "
                                       ">make-certs.log 2>&1");
  return std::system(cmd.c_str()) == 0;
}

class EtcdTlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char dir_template[] = "/tmp/registrar-etcd-tls-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = new std::string(dir_template);
    ASSERT_TRUE(MakeCertificates(*dir_));
    EtcdCluster::Options o;
    o.members = 1;
    o.tls = EtcdCluster::Options::Tls{
        *dir_ + "/server.crt", *dir_ + "/server.key", *dir_ + "/ca.crt",
        *dir_ + "/ca.crt",     *dir_ + "/client.crt", *dir_ + "/client.key"};
    auto c = EtcdCluster::Start(o);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
    if (dir_ != nullptr) std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  static TlsOptions Tls(bool client_cert) {
    TlsOptions t;
    t.ca_file = *dir_ + "/ca.crt";
    if (client_cert) {
      t.cert_file = *dir_ + "/client.crt";
      t.key_file = *dir_ + "/client.key";
    }
    return t;
  }

  static EtcdCluster* cluster_;
  static std::string* dir_;
};
EtcdCluster* EtcdTlsTest::cluster_ = nullptr;
std::string* EtcdTlsTest::dir_ = nullptr;

TEST_F(EtcdTlsTest, ClientWithCertificateIsServed) {
  ASSERT_NE(cluster_, nullptr);
  ConnectionOptions o;
  o.endpoints = {"https://" + cluster_->client_endpoint(0)};
  o.tls = Tls(/*client_cert=*/true);
  auto conn = Connection::Create(o);
  ASSERT_TRUE(conn.ok()) << conn.status();
  Kv kv(*conn);
  auto put =
      Call<pb::PutResponse>([&](auto cb) { kv.Put("/tls/k", "v", 0, cb); });
  ASSERT_TRUE(put.ok()) << put.status();
  pb::RangeRequest req;
  req.set_key("/tls/k");
  auto got = Call<pb::RangeResponse>([&](auto cb) { kv.Range(req, cb); });
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->kvs_size(), 1);
  EXPECT_EQ(got->kvs(0).value(), "v");
}

TEST_F(EtcdTlsTest, ClientWithoutCertificateOrTlsIsRefused) {
  ASSERT_NE(cluster_, nullptr);
  for (bool tls : {true, false}) {
    ConnectionOptions o;
    o.endpoints = {cluster_->client_endpoint(0)};
    if (tls) o.tls = Tls(/*client_cert=*/false);
    o.call_timeout = absl::Seconds(2);
    auto conn = Connection::Create(o);
    ASSERT_TRUE(conn.ok()) << conn.status();
    Kv kv(*conn);
    auto put = Call<pb::PutResponse>(
        [&](auto cb) { kv.Put("/tls/refused", "v", 0, cb); });
    EXPECT_FALSE(put.ok()) << "tls=" << tls;
  }
}

TEST(EtcdConnectionOptionsTest, BadOptionsNameTheOption) {
  ConnectionOptions none;
  auto r = Connection::Create(none);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_NE(r.status().message().find("endpoints"), std::string::npos);

  ConnectionOptions bad;
  bad.endpoints = {"127.0.0.1"};  // no port
  r = Connection::Create(bad);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_NE(r.status().message().find("endpoints"), std::string::npos);

  ConnectionOptions https;
  https.endpoints = {"https://127.0.0.1:2379"};  // https without TLS
  r = Connection::Create(https);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));

  ConnectionOptions missing;
  missing.endpoints = {"127.0.0.1:2379"};
  missing.tls = TlsOptions{"/nonexistent/ca.crt", "", "", ""};
  r = Connection::Create(missing);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_NE(r.status().message().find("ca_file"), std::string::npos);

  ConnectionOptions half;
  half.endpoints = {"127.0.0.1:2379"};
  half.tls = TlsOptions{"", "/some/client.crt", "", ""};
  r = Connection::Create(half);
  EXPECT_TRUE(absl::IsInvalidArgument(r.status()));
  EXPECT_NE(r.status().message().find("key_file"), std::string::npos);

  ConnectionOptions good;
  good.endpoints = {"http://127.0.0.1:2379/", "127.0.0.2:2380"};
  r = Connection::Create(good);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)->size(), 2);
  EXPECT_EQ((*r)->endpoint(0).address, "127.0.0.1:2379");
}

}  // namespace
}  // namespace registrar::etcd
