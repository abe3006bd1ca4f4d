// AdminService's lease calls on in-process gRPC servers: served from the
// registry on a replica that takes them itself, and on a follower passed on
// to the writer as they came (the real cluster::Forwarder), so the reply
// is the writer's, from the writer's leases, and the follower's registry is
// never asked.

#include "service/api/admin_service.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registrar/v1/admin.grpc.pb.h"
#include "service/api/access_control.h"
#include "service/api/cluster_hook.h"
#include "service/cluster/forwarder.h"
#include "service/common/clock.h"
#include "service/id/id_generator.h"
#include "service/id/key_ring.h"
#include "service/registry/registry.h"

namespace registrar {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// A replica as AdminService sees it: its own registry, reads ready at
// once, and either the writer (takes every call) or a follower (hands the
// lease calls to `writer` through a real Forwarder).
class FakeReplica final : public ClusterHook {
 public:
  FakeReplica(std::shared_ptr<Registry> registry, std::string writer)
      : registry_(std::move(registry)),
        writer_(std::move(writer)),
        forwarder_(grpc::InsecureChannelCredentials(), "follower:0") {}

  std::shared_ptr<Registry> registry() override {
    ++registry_asked_;
    return registry_;
  }
  void BeforeRead(absl::Time, ReadReady ready) override {
    ready(absl::OkStatus());
  }
  bool Forward(grpc::CallbackServerContext* ctx, Method method,
               const grpc::ByteBuffer& request, grpc::ByteBuffer* response,
               ForwardDone done) override {
    forwarded_.push_back(method);
    if (writer_.empty()) return false;  // this one is the writer
    const MethodInfo& info = InfoOf(method);
    forwarder_.Forward(writer_,
                       absl::StrCat("/", std::string(info.service), "/",
                                    std::string(info.name)),
                       ctx, request, response, std::move(done));
    return true;
  }

  std::vector<Method> forwarded_;
  std::atomic<int> registry_asked_{0};

 private:
  std::shared_ptr<Registry> registry_;
  const std::string writer_;
  cluster::Forwarder forwarder_;
};

// One AdminService on 127.0.0.1:0.
struct Served {
  Served(std::shared_ptr<Registry> registry, const std::string& writer)
      : access(nullptr), replica(std::move(registry), writer) {
    service = std::make_unique<AdminService>(
        nullptr, &access, AdminLeases{.cluster = &replica, .limits = {}});
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.RegisterService(service.get());
    server = builder.BuildAndStart();
    address = absl::StrCat("127.0.0.1:", port);
    stub = v1::Admin::NewStub(
        grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  }
  ~Served() {
    server->Shutdown(std::chrono::system_clock::now());
    server->Wait();
  }

  AccessControl access;
  FakeReplica replica;
  std::unique_ptr<AdminService> service;
  int port = 0;
  std::unique_ptr<grpc::Server> server;
  std::string address;
  std::unique_ptr<v1::Admin::Stub> stub;
};

class AdminServiceTest : public ::testing::Test {
 protected:
  AdminServiceTest()
      : keys_(KeyRing::Generate()),
        ids_(clock_, keys_, 0),
        writer_registry_(std::make_shared<Registry>(RegistryOptions{}, clock_,
                                                    ids_, nullptr)),
        follower_registry_(std::make_shared<Registry>(RegistryOptions{}, clock_,
                                                      ids_, nullptr)),
        writer_(writer_registry_, ""),
        follower_(follower_registry_, writer_.address) {}

  static grpc::Status List(v1::Admin::Stub& stub, const std::string& holder,
                           v1::ListLeasesResponse* response) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    v1::ListLeasesRequest request;
    request.set_holder(holder);
    return stub.ListLeases(&ctx, request, response);
  }
  static grpc::Status Revoke(v1::Admin::Stub& stub, const std::string& holder,
                             v1::RevokeLeasesResponse* response) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    v1::RevokeLeasesRequest request;
    request.set_holder(holder);
    return stub.RevokeLeases(&ctx, request, response);
  }

  FakeClock clock_;
  KeyRing keys_;
  IdGenerator ids_;
  std::shared_ptr<Registry> writer_registry_;
  std::shared_ptr<Registry> follower_registry_;
  Served writer_;
  Served follower_;
};

TEST_F(AdminServiceTest, TheWriterAnswersFromItsRegistry) {
  const std::string lease =
      writer_registry_->GrantLease("gw-1", absl::Seconds(30))->lease_id;
  v1::ListLeasesResponse listed;
  ASSERT_TRUE(List(*writer_.stub, "gw-1", &listed).ok());
  ASSERT_EQ(listed.leases_size(), 1);
  EXPECT_EQ(listed.leases(0).lease_id(), lease);
  EXPECT_EQ(listed.leases(0).remaining_ms(), 30'000u);  // the clock stands
  v1::RevokeLeasesResponse revoked;
  ASSERT_TRUE(Revoke(*writer_.stub, "gw-1", &revoked).ok());
  EXPECT_THAT(revoked.revoked(), ElementsAre(lease));
  // Both asked whether to pass the call on; the writer kept both.
  EXPECT_THAT(writer_.replica.forwarded_,
              ElementsAre(Method::kListLeases, Method::kRevokeLeases));
}

TEST_F(AdminServiceTest, AFollowerPassesBothCallsToTheWriter) {
  const std::string lease =
      writer_registry_->GrantLease("gw-1", absl::Seconds(30))->lease_id;
  // A lease only the follower holds (as a follower never renews leases,
  // what it holds is not what counts).
  ASSERT_TRUE(follower_registry_->GrantLease("gw-1", absl::Seconds(30)).ok());

  v1::ListLeasesResponse listed;
  ASSERT_TRUE(List(*follower_.stub, "gw-1", &listed).ok());
  ASSERT_EQ(listed.leases_size(), 1);
  EXPECT_EQ(listed.leases(0).lease_id(), lease);
  v1::RevokeLeasesResponse revoked;
  const grpc::Status s = Revoke(*follower_.stub, "gw-1", &revoked);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(revoked.revoked(), ElementsAre(lease));
  EXPECT_EQ(writer_registry_->Stats().leases, 0u);
  EXPECT_EQ(follower_registry_->Stats().leases, 1u);
  EXPECT_EQ(follower_.replica.registry_asked_.load(), 0);
  // Errors come back as the writer gave them.
  const grpc::Status bad = Revoke(*follower_.stub, "", &revoked);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(bad.error_message(), "holder: is required");
  v1::ListLeasesResponse after;
  ASSERT_TRUE(List(*follower_.stub, "", &after).ok());
  EXPECT_THAT(after.leases(), IsEmpty());
}

}  // namespace
}  // namespace registrar
