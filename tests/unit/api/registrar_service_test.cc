// RegistrarService with access control and a per-caller rate limit, in one
// process: a real Registry on a MemoryStore behind a real gRPC server on
// 127.0.0.1:0, called with a plain generated stub and bearer tokens from a
// callers table. Checks authentication, role and tenant authorization,
// lease ownership, the rate limit's refusal (and that a refused call did
// nothing), and that request checks answer INVALID_ARGUMENT naming the
// field, all through the RPCs rather than the service's internals.

#include "service/api/registrar_service.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "service/api/access_control.h"
#include "service/api/rate_limiter.h"
#include "service/auth/callers_file.h"
#include "service/common/clock.h"
#include "service/id/id_generator.h"
#include "service/id/key_ring.h"
#include "service/registry/registry.h"
#include "service/store/memory_store.h"
#include "tests/quota_details.h"
#include "tests/unit/in_process_server.h"

namespace registrar {
namespace {

using grpc::StatusCode;
using ::testing::HasSubstr;

std::string Caller(const std::string& name, const std::string& role,
                   const std::string& tenants, const std::string& token) {
  return absl::StrCat("{\"name\": \"", name, "\", \"role\": \"", role,
                      "\", \"tenants\": [", tenants, "], \"token_sha256\": [\"",
                      HashToken(token), "\"]}");
}

std::string CallersJson() {
  return absl::StrCat(
      "{\"callers\": [",
      Caller("gw-a", "ROLE_GATEWAY", "\"tenant-a\"", "token-gw-a"), ", ",
      Caller("gw-b", "ROLE_GATEWAY", "\"tenant-b\"", "token-gw-b"), ", ",
      Caller("reader-a", "ROLE_READER", "\"tenant-a\"", "token-reader-a"), ", ",
      Caller("admin", "ROLE_ADMIN", "\"*\"", "token-admin"), "]}");
}

v1::Owner OwnerOf(const std::string& tenant, const std::string& user) {
  v1::Owner o;
  o.set_tenant(tenant);
  o.set_user_id(user);
  return o;
}

class RegistrarServiceTest : public ::testing::Test {
 protected:
  RegistrarServiceTest()
      : keys_(KeyRing::Generate()),
        ids_(clock_, keys_, 0),
        registry_(RegistryOptions{}, clock_, ids_, nullptr, &store_),
        access_(nullptr),
        // Two calls per caller, then refused for a very long time: the
        // refusal does not depend on how fast the test runs.
        limiter_(RateLimit{.rate = 0.001, .burst = 2}) {}

  void SetUp() override {
    ASSERT_TRUE(registry_.Recover().ok());
    absl::StatusOr<CallerTable> table = ParseCallersFile(CallersJson());
    ASSERT_TRUE(table.ok()) << table.status();
    access_.SetCallers(std::make_shared<const CallerTable>(*std::move(table)));
    ASSERT_TRUE(access_.enabled());
  }

  // Starts the service; with the rate limit when `limited`.
  void StartServer(bool limited) {
    service_ = std::make_unique<RegistrarService>(
        registry_, ApiLimits{}, nullptr, nullptr, &access_,
        limited ? &limiter_ : nullptr);
    server_ = std::make_unique<testing::InProcessServer>(service_.get());
    ASSERT_TRUE(server_->started());
    stub_ = &server_->stub();
  }

  // A context with `token` as bearer token ("" sends none).
  static std::unique_ptr<grpc::ClientContext> Context(
      const std::string& token) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::seconds(30));
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    return ctx;
  }

  grpc::Status Issue(const std::string& token, const std::string& tenant,
                     v1::IssueResponse* response = nullptr,
                     const std::string& parent_id = "") {
    v1::IssueRequest request;
    request.set_kind(parent_id.empty() ? v1::KIND_THREAD : v1::KIND_RUN);
    *request.mutable_owner() = OwnerOf(tenant, "alice");
    request.set_parent_id(parent_id);
    v1::IssueResponse ignored;
    return stub_->Issue(Context(token).get(), request,
                        response != nullptr ? response : &ignored);
  }

  grpc::Status Describe(const std::string& token, const std::string& id) {
    v1::DescribeRequest request;
    request.set_id(id);
    v1::DescribeResponse response;
    return stub_->Describe(Context(token).get(), request, &response);
  }

  FakeClock clock_;
  KeyRing keys_;
  IdGenerator ids_;
  MemoryStore store_;
  Registry registry_;
  AccessControl access_;
  RateLimiter limiter_;
  std::unique_ptr<RegistrarService> service_;
  // Declared after what it serves: destroyed (stopped) first.
  std::unique_ptr<testing::InProcessServer> server_;
  v1::Registrar::Stub* stub_ = nullptr;
};

TEST_F(RegistrarServiceTest, UnknownOrMissingTokenIsUnauthenticated) {
  ASSERT_NO_FATAL_FAILURE(StartServer(false));
  EXPECT_EQ(Issue("", "tenant-a").error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Issue("token-nobody", "tenant-a").error_code(),
            StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(Issue("token-gw-a", "tenant-a").ok());
}

TEST_F(RegistrarServiceTest, RolesAndTenantsAreEnforcedPerCall) {
  ASSERT_NO_FATAL_FAILURE(StartServer(false));
  v1::IssueResponse issued;
  ASSERT_TRUE(Issue("token-gw-a", "tenant-a", &issued).ok());
  ASSERT_EQ(issued.ids_size(), 1);
  // Another tenant: refused, naming the field.
  const grpc::Status other = Issue("token-gw-a", "tenant-b");
  EXPECT_EQ(other.error_code(), StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(other.error_message(), HasSubstr("owner.tenant"));
  // A reader may not change anything, even in its tenant, but may read.
  EXPECT_EQ(Issue("token-reader-a", "tenant-a").error_code(),
            StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Describe("token-reader-a", issued.ids(0)).ok());
  // A gateway may not read records one by one.
  EXPECT_EQ(Describe("token-gw-a", issued.ids(0)).error_code(),
            StatusCode::PERMISSION_DENIED);
  // An admin may do both, in any tenant.
  EXPECT_TRUE(Issue("token-admin", "tenant-b").ok());
  EXPECT_TRUE(Describe("token-admin", issued.ids(0)).ok());
}

TEST_F(RegistrarServiceTest, OtherTenantsRecordAndUnknownIdLookTheSame) {
  ASSERT_NO_FATAL_FAILURE(StartServer(false));
  v1::IssueResponse theirs;
  ASSERT_TRUE(Issue("token-gw-b", "tenant-b", &theirs).ok());
  ASSERT_EQ(theirs.ids_size(), 1);
  const std::string id = theirs.ids(0);
  // A well-formed ID of no record: the same ID with its last character
  // changed (a forged tag, unknown to the registry).
  std::string unknown = id;
  unknown.back() = unknown.back() == '0' ? '1' : '0';
  const grpc::Status other = Describe("token-reader-a", id);
  const grpc::Status missing = Describe("token-reader-a", unknown);
  EXPECT_EQ(other.error_code(), StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(missing.error_code(), StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(other.error_message(), missing.error_message());
  // The admin sees the difference.
  EXPECT_TRUE(Describe("token-admin", id).ok());
  EXPECT_EQ(Describe("token-admin", unknown).error_code(),
            StatusCode::NOT_FOUND);
}

TEST_F(RegistrarServiceTest, ALeaseIsItsGrantorsOnly) {
  ASSERT_NO_FATAL_FAILURE(StartServer(false));
  v1::GrantLeaseRequest grant;
  grant.set_holder("gw-a-1");
  grant.set_ttl_seconds(60);
  v1::GrantLeaseResponse granted;
  ASSERT_TRUE(
      stub_->GrantLease(Context("token-gw-a").get(), grant, &granted).ok());
  v1::KeepAliveRequest keep;
  keep.set_lease_id(granted.lease_id());
  v1::KeepAliveResponse kept;
  EXPECT_EQ(
      stub_->KeepAlive(Context("token-gw-b").get(), keep, &kept).error_code(),
      StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(stub_->KeepAlive(Context("token-gw-a").get(), keep, &kept).ok());
  v1::RevokeLeaseRequest revoke;
  revoke.set_lease_id(granted.lease_id());
  v1::RevokeLeaseResponse revoked;
  EXPECT_EQ(stub_->RevokeLease(Context("token-gw-b").get(), revoke, &revoked)
                .error_code(),
            StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(
      stub_->RevokeLease(Context("token-gw-a").get(), revoke, &revoked).ok());
}

TEST_F(RegistrarServiceTest,
       RateLimitRefusesPerCallerAndTheRefusalDoesNothing) {
  ASSERT_NO_FATAL_FAILURE(StartServer(true));
  EXPECT_TRUE(Issue("token-gw-a", "tenant-a").ok());
  EXPECT_TRUE(Issue("token-gw-a", "tenant-a").ok());
  const grpc::Status limited = Issue("token-gw-a", "tenant-a");
  ASSERT_EQ(limited.error_code(), StatusCode::RESOURCE_EXHAUSTED);
  const testing::QuotaDetails details = testing::QuotaDetailsOf(limited);
  ASSERT_TRUE(details.parsed);
  ASSERT_TRUE(details.retry_delay.has_value());
  EXPECT_GT(*details.retry_delay, absl::Seconds(1));  // a token per 1,000 s
  EXPECT_EQ(details.subjects,
            std::optional<std::vector<std::string>>({"caller:gw-a"}));
  // Another caller has its own bucket.
  EXPECT_TRUE(Issue("token-gw-b", "tenant-b").ok());
  // The refused Issue minted nothing: the owner holds the two.
  v1::ListOwnedRequest list;
  *list.mutable_owner() = OwnerOf("tenant-a", "alice");
  v1::ListOwnedResponse listed;
  ASSERT_TRUE(
      stub_->ListOwned(Context("token-admin").get(), list, &listed).ok());
  EXPECT_EQ(listed.records_size(), 2);
}

TEST_F(RegistrarServiceTest, RequestChecksNameTheFieldAndChangeNothing) {
  ASSERT_NO_FATAL_FAILURE(StartServer(false));
  const grpc::Status long_parent =
      Issue("token-gw-a", "tenant-a", nullptr, std::string(65, 'a'));
  EXPECT_EQ(long_parent.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(long_parent.error_message(), HasSubstr("parent_id"));
  google::rpc::Status details;
  ASSERT_TRUE(details.ParseFromString(long_parent.error_details()));
  bool named = false;
  for (const auto& any : details.details()) {
    google::rpc::BadRequest bad;
    if (any.UnpackTo(&bad)) {
      ASSERT_EQ(bad.field_violations_size(), 1);
      EXPECT_EQ(bad.field_violations(0).field(), "parent_id");
      named = true;
    }
  }
  EXPECT_TRUE(named) << "no BadRequest naming the field";
  v1::ListOwnedRequest list;
  *list.mutable_owner() = OwnerOf("tenant-a", "alice");
  list.set_include_ended(true);
  v1::ListOwnedResponse listed;
  ASSERT_TRUE(
      stub_->ListOwned(Context("token-admin").get(), list, &listed).ok());
  EXPECT_EQ(listed.records_size(), 0);
}

}  // namespace
}  // namespace registrar
