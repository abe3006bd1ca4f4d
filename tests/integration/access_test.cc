// Authentication, roles and tenants against the real server: every RPC for
// every role in the caller's own tenant and in another, with bearer tokens
// from a callers file; unauthenticated calls; lease ownership; reloading
// the callers file; per-caller rate limits with RetryInfo/QuotaFailure.

#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "service/auth/callers_file.h"
#include "tests/integration/metrics_scrape.h"
#include "tests/integration/test_util.h"
#include "tests/quota_details.h"

namespace registrar::testing {
namespace {

using grpc::StatusCode;

struct TestCaller {
  std::string name;
  std::string role;  // callers.proto Role name
  std::vector<std::string> tenants;
  std::string token;
};

const std::vector<TestCaller>& Callers() {
  static const auto* callers = new std::vector<TestCaller>{
      {"gw-a", "ROLE_GATEWAY", {"tenant-a"}, "token-gw-a"},
      {"gw-b", "ROLE_GATEWAY", {"tenant-b"}, "token-gw-b"},
      {"reader-a", "ROLE_READER", {"tenant-a"}, "token-reader-a"},
      {"admin", "ROLE_ADMIN", {"*"}, "token-admin"},
  };
  return *callers;
}

std::string CallersJson(const std::vector<TestCaller>& callers) {
  std::string json = "{\"callers\": [";
  for (size_t i = 0; i < callers.size(); ++i) {
    const TestCaller& c = callers[i];
    std::string tenants;
    for (const std::string& t : c.tenants) {
      absl::StrAppend(&tenants, tenants.empty() ? "" : ", ", "\"", t, "\"");
    }
    absl::StrAppend(&json, i ? ", " : "", "{\"name\": \"", c.name,
                    "\", \"role\": \"", c.role, "\", \"tenants\": [", tenants,
                    "], \"token_sha256\": [\"", HashToken(c.token), "\"]}");
  }
  return json + "]}";
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
}

enum class Rpc {
  kIssue,
  kOpenContext,
  kValidate,
  kCleanup,
  kGrantLease,
  kKeepAlive,
  kRevokeLease,
  kDescribe,
  kListOwned,
  kWatch
};
const Rpc kAllRpcs[] = {Rpc::kIssue,       Rpc::kOpenContext, Rpc::kValidate,
                        Rpc::kCleanup,     Rpc::kGrantLease,  Rpc::kKeepAlive,
                        Rpc::kRevokeLease, Rpc::kDescribe,    Rpc::kListOwned,
                        Rpc::kWatch};

std::string RpcName(Rpc rpc) {
  static const char* names[] = {
      "Issue",     "OpenContext", "Validate", "Cleanup",   "GrantLease",
      "KeepAlive", "RevokeLease", "Describe", "ListOwned", "Watch"};
  return names[static_cast<int>(rpc)];
}

// What the issue's roles allow, independent of tenants.
bool RoleMayCall(const std::string& role, Rpc rpc) {
  if (role == "ROLE_ADMIN") return true;
  if (role == "ROLE_GATEWAY") {
    return rpc != Rpc::kDescribe && rpc != Rpc::kListOwned &&
           rpc != Rpc::kWatch;
  }
  return rpc == Rpc::kValidate || rpc == Rpc::kDescribe ||
         rpc == Rpc::kListOwned || rpc == Rpc::kWatch;
}

class AccessTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/access_test_" +
                           std::to_string(getpid()));
    std::filesystem::create_directories(*dir_);
    WriteFile(CallersPath(), CallersJson(Callers()));
    ServerProcess::Options options;
    options.args = {"--callers_file=" + CallersPath(), "--store=memory"};
    auto server = ServerProcess::Start(options);
    ASSERT_TRUE(server.ok()) << StatusText(server.status());
    server_ = server->release();
    channel_ = new std::shared_ptr<grpc::Channel>(grpc::CreateChannel(
        server_->grpc_address(), grpc::InsecureChannelCredentials()));
  }
  static void TearDownTestSuite() {
    if (server_ != nullptr) {
      EXPECT_EQ(StopServer(*server_), 0) << server_->Log();
      delete server_;
      server_ = nullptr;
    }
    delete channel_;
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }
  static std::string CallersPath() { return *dir_ + "/callers.json"; }

  static std::unique_ptr<v1::Registrar::Stub> Stub() {
    return v1::Registrar::NewStub(*channel_);
  }

  static void Authorize(grpc::ClientContext& ctx, const std::string& token,
                        absl::Duration deadline = absl::Seconds(5)) {
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     absl::ToChronoMilliseconds(deadline));
  }

  // A lease granted by `token`'s caller.
  static std::string GrantLease(const std::string& token) {
    grpc::ClientContext ctx;
    Authorize(ctx, token);
    v1::GrantLeaseRequest req;
    req.set_holder("gateway-1");
    req.set_ttl_seconds(60);
    v1::GrantLeaseResponse resp;
    grpc::Status s = Stub()->GrantLease(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.lease_id();
  }

  // A thread of `tenant`/u1, made by the admin.
  static std::string AdminThread(const std::string& tenant) {
    grpc::ClientContext ctx;
    Authorize(ctx, "token-admin");
    v1::IssueRequest req;
    req.set_kind(v1::KIND_THREAD);
    *req.mutable_owner() = MakeOwner(tenant, "u1");
    v1::IssueResponse resp;
    grpc::Status s = Stub()->Issue(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.ids_size() == 1 ? resp.ids(0) : "";
  }

  // Calls `rpc` as `token`'s caller, acting for `tenant` where the request
  // names one. Lease calls use a lease granted by `lease_owner_token`.
  static grpc::Status Call(Rpc rpc, const std::string& token,
                           const std::string& tenant,
                           const std::string& lease_owner_token) {
    auto stub = Stub();
    grpc::ClientContext ctx;
    const v1::Owner owner = MakeOwner(tenant, "u1");
    switch (rpc) {
      case Rpc::kIssue: {
        Authorize(ctx, token);
        v1::IssueRequest req;
        req.set_kind(v1::KIND_THREAD);
        *req.mutable_owner() = owner;
        v1::IssueResponse resp;
        return stub->Issue(&ctx, req, &resp);
      }
      case Rpc::kOpenContext: {
        Authorize(ctx, token);
        v1::OpenContextRequest req;
        *req.mutable_owner() = owner;
        v1::OpenContextResponse resp;
        return stub->OpenContext(&ctx, req, &resp);
      }
      case Rpc::kValidate: {
        const std::string id = AdminThread(tenant);
        Authorize(ctx, token);
        v1::ValidateRequest req;
        *req.mutable_owner() = owner;
        req.add_items()->set_id(id);
        v1::ValidateResponse resp;
        return stub->Validate(&ctx, req, &resp);
      }
      case Rpc::kCleanup: {
        const std::string id = AdminThread(tenant);
        Authorize(ctx, token);
        v1::CleanupRequest req;
        *req.mutable_owner() = owner;
        req.mutable_ids()->add_ids(id);
        v1::CleanupResponse resp;
        return stub->Cleanup(&ctx, req, &resp);
      }
      case Rpc::kGrantLease: {
        Authorize(ctx, token);
        v1::GrantLeaseRequest req;
        req.set_holder("gateway-1");
        req.set_ttl_seconds(30);
        v1::GrantLeaseResponse resp;
        return stub->GrantLease(&ctx, req, &resp);
      }
      case Rpc::kKeepAlive: {
        const std::string lease = GrantLease(lease_owner_token);
        Authorize(ctx, token);
        v1::KeepAliveRequest req;
        req.set_lease_id(lease);
        v1::KeepAliveResponse resp;
        return stub->KeepAlive(&ctx, req, &resp);
      }
      case Rpc::kRevokeLease: {
        const std::string lease = GrantLease(lease_owner_token);
        Authorize(ctx, token);
        v1::RevokeLeaseRequest req;
        req.set_lease_id(lease);
        v1::RevokeLeaseResponse resp;
        return stub->RevokeLease(&ctx, req, &resp);
      }
      case Rpc::kDescribe: {
        const std::string id = AdminThread(tenant);
        Authorize(ctx, token);
        v1::DescribeRequest req;
        req.set_id(id);
        v1::DescribeResponse resp;
        return stub->Describe(&ctx, req, &resp);
      }
      case Rpc::kListOwned: {
        Authorize(ctx, token);
        v1::ListOwnedRequest req;
        *req.mutable_owner() = owner;
        v1::ListOwnedResponse resp;
        return stub->ListOwned(&ctx, req, &resp);
      }
      case Rpc::kWatch: {
        // An allowed watch waits for events: it ends at its deadline.
        Authorize(ctx, token, absl::Milliseconds(500));
        v1::WatchRequest req;
        req.set_tenant(tenant);
        auto reader = stub->Watch(&ctx, req);
        v1::WatchEvent event;
        while (reader->Read(&event)) {
        }
        return reader->Finish();
      }
    }
    return grpc::Status(StatusCode::INTERNAL, "unknown rpc");
  }

  static inline ServerProcess* server_ = nullptr;
  static inline std::shared_ptr<grpc::Channel>* channel_ = nullptr;
  static inline std::string* dir_ = nullptr;
};

std::string Code(const grpc::Status& s) {
  return absl::StrCat(s.error_code(), " ", s.error_message());
}

// Every role x RPC x (own tenant, other tenant) cell.
TEST_F(AccessTest, RoleRpcTenantMatrix) {
  for (const TestCaller& caller : Callers()) {
    for (Rpc rpc : kAllRpcs) {
      for (const std::string tenant : {"tenant-a", "tenant-b", "tenant-c"}) {
        SCOPED_TRACE(absl::StrCat(caller.name, " ", RpcName(rpc), " ", tenant));
        const bool tenant_ok =
            caller.role == "ROLE_ADMIN" || caller.tenants.front() == tenant;
        // Leases are the caller's own, not a tenant's.
        const bool lease_rpc = rpc == Rpc::kGrantLease ||
                               rpc == Rpc::kKeepAlive ||
                               rpc == Rpc::kRevokeLease;
        const bool allowed =
            RoleMayCall(caller.role, rpc) && (lease_rpc || tenant_ok);
        // Lease calls use one of the caller's own leases (a reader has
        // none: an admin's, which it may not touch either way).
        const std::string lease_owner =
            RoleMayCall(caller.role, Rpc::kGrantLease) ? caller.token
                                                       : "token-admin";
        const grpc::Status s = Call(rpc, caller.token, tenant, lease_owner);
        if (allowed) {
          if (rpc == Rpc::kWatch) {
            EXPECT_EQ(s.error_code(), StatusCode::DEADLINE_EXCEEDED) << Code(s);
          } else {
            EXPECT_TRUE(s.ok()) << Code(s);
          }
        } else {
          EXPECT_EQ(s.error_code(), StatusCode::PERMISSION_DENIED) << Code(s);
          EXPECT_NE(s.error_message().find(caller.name), std::string::npos)
              << Code(s);
        }
      }
    }
  }
}

TEST_F(AccessTest, NoOrUnknownCredentialsAreUnauthenticatedForEveryRpc) {
  for (Rpc rpc : kAllRpcs) {
    for (const std::string token : {"", "not-a-known-token"}) {
      SCOPED_TRACE(absl::StrCat(RpcName(rpc), " token=", token));
      const grpc::Status s = Call(rpc, token, "tenant-a", "token-gw-a");
      EXPECT_EQ(s.error_code(), StatusCode::UNAUTHENTICATED) << Code(s);
      // The token is never echoed.
      if (!token.empty()) {
        EXPECT_EQ(s.error_message().find(token), std::string::npos);
      }
    }
  }
  EXPECT_EQ(server_->Log().find("not-a-known-token"), std::string::npos);
}

TEST_F(AccessTest, LeasesBelongToTheCallerThatGrantedThem) {
  // gw-b may not keep alive, revoke or bind connections to gw-a's lease.
  for (Rpc rpc : {Rpc::kKeepAlive, Rpc::kRevokeLease}) {
    const grpc::Status s = Call(rpc, "token-gw-b", "tenant-b", "token-gw-a");
    EXPECT_EQ(s.error_code(), StatusCode::PERMISSION_DENIED) << Code(s);
  }
  const std::string lease = GrantLease("token-gw-a");
  grpc::ClientContext ctx;
  Authorize(ctx, "token-gw-b");
  v1::IssueRequest req;
  req.set_kind(v1::KIND_CONNECTION);
  *req.mutable_owner() = MakeOwner("tenant-b", "u1");
  req.set_lease_id(lease);
  v1::IssueResponse resp;
  grpc::Status s = Stub()->Issue(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), StatusCode::PERMISSION_DENIED) << Code(s);
  // Its grantor binds to it; an admin may revoke it.
  grpc::ClientContext ctx2;
  Authorize(ctx2, "token-gw-a");
  *req.mutable_owner() = MakeOwner("tenant-a", "u1");
  s = Stub()->Issue(&ctx2, req, &resp);
  EXPECT_TRUE(s.ok()) << Code(s);
  grpc::ClientContext ctx3;
  Authorize(ctx3, "token-admin");
  v1::RevokeLeaseRequest revoke;
  revoke.set_lease_id(lease);
  v1::RevokeLeaseResponse revoked;
  s = Stub()->RevokeLease(&ctx3, revoke, &revoked);
  EXPECT_TRUE(s.ok()) << Code(s);
  EXPECT_EQ(revoked.released_size(), 1);
}

TEST_F(AccessTest, DescribeDoesNotRevealWhetherARecordExists) {
  const std::string other = AdminThread("tenant-b");
  const std::string unknown = "thread_01jdsxq8bsf3y9yq1z2x3c4v5b";
  grpc::Status s1, s2;
  v1::DescribeResponse resp;
  {
    grpc::ClientContext ctx;
    Authorize(ctx, "token-reader-a");
    v1::DescribeRequest req;
    req.set_id(other);
    s1 = Stub()->Describe(&ctx, req, &resp);
  }
  {
    grpc::ClientContext ctx;
    Authorize(ctx, "token-reader-a");
    v1::DescribeRequest req;
    req.set_id(unknown);
    s2 = Stub()->Describe(&ctx, req, &resp);
  }
  EXPECT_EQ(s1.error_code(), StatusCode::PERMISSION_DENIED) << Code(s1);
  EXPECT_EQ(s2.error_code(), StatusCode::PERMISSION_DENIED) << Code(s2);
  EXPECT_EQ(s1.error_message(), s2.error_message());
}

TEST_F(AccessTest, ValidateAndCleanupDoNotRevealAnotherTenantsRecords) {
  // A gateway scoped to tenant-a claims its own user for tenant-b's real
  // thread and for a made-up one: the same answers for both (issue 14:
  // NOT_OWNER/refused for the real one was an existence oracle).
  const std::string other = AdminThread("tenant-b");
  const std::string made_up = "thread_01jdsxq8bsf3y9yq1z2x3c4v5b";
  const std::string same_tenant = AdminThread("tenant-a");  // owner u1
  v1::ValidateResponse verdicts;
  {
    grpc::ClientContext ctx;
    Authorize(ctx, "token-gw-a");
    v1::ValidateRequest req;
    *req.mutable_owner() = MakeOwner("tenant-a", "u2");
    for (const std::string& id : {other, made_up, same_tenant}) {
      req.add_items()->set_id(id);
    }
    const grpc::Status s = Stub()->Validate(&ctx, req, &verdicts);
    ASSERT_TRUE(s.ok()) << Code(s);
  }
  ASSERT_EQ(verdicts.results_size(), 3);
  EXPECT_EQ(verdicts.results(0).verdict(), v1::VERDICT_FORGED);
  EXPECT_EQ(verdicts.results(1).verdict(), v1::VERDICT_FORGED);
  // Within its own tenant, another user's record is still NOT_OWNER.
  EXPECT_EQ(verdicts.results(2).verdict(), v1::VERDICT_NOT_OWNER);

  v1::CleanupResponse cleaned;
  {
    grpc::ClientContext ctx;
    Authorize(ctx, "token-gw-a");
    v1::CleanupRequest req;
    *req.mutable_owner() = MakeOwner("tenant-a", "u2");
    for (const std::string& id : {other, made_up, same_tenant}) {
      req.mutable_ids()->add_ids(id);
    }
    const grpc::Status s = Stub()->Cleanup(&ctx, req, &cleaned);
    ASSERT_TRUE(s.ok()) << Code(s);
  }
  EXPECT_THAT(cleaned.unknown(),
              ::testing::UnorderedElementsAre(other, made_up));
  EXPECT_THAT(cleaned.refused(), ::testing::ElementsAre(same_tenant));
  EXPECT_EQ(cleaned.released_size(), 0);

  // An admin (every tenant) still learns that tenant-b's record exists.
  v1::ValidateResponse admin_verdicts;
  {
    grpc::ClientContext ctx;
    Authorize(ctx, "token-admin");
    v1::ValidateRequest req;
    *req.mutable_owner() = MakeOwner("tenant-a", "u2");
    req.add_items()->set_id(other);
    const grpc::Status s = Stub()->Validate(&ctx, req, &admin_verdicts);
    ASSERT_TRUE(s.ok()) << Code(s);
  }
  ASSERT_EQ(admin_verdicts.results_size(), 1);
  EXPECT_EQ(admin_verdicts.results(0).verdict(), v1::VERDICT_NOT_OWNER);
}

TEST_F(AccessTest, HealthAndReflectionNeedNoCredentials) {
  auto health = grpc::health::v1::Health::NewStub(*channel_);
  grpc::ClientContext ctx;
  grpc::health::v1::HealthCheckRequest req;
  req.set_service("registrar.v1.Registrar");
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status s = health->Check(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << Code(s);
  EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  // Reflection, on the same channel without a token: the service list and
  // the Registrar service's file descriptor.
  auto reflection = grpc::reflection::v1::ServerReflection::NewStub(*channel_);
  grpc::ClientContext rctx;
  rctx.set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(10 * SanitizerTimeScale()));
  auto stream = reflection->ServerReflectionInfo(&rctx);
  grpc::reflection::v1::ServerReflectionRequest list;
  list.set_list_services("");
  grpc::reflection::v1::ServerReflectionResponse listed;
  ASSERT_TRUE(stream->Write(list) && stream->Read(&listed))
      << Code(stream->Finish());
  ASSERT_TRUE(listed.has_list_services_response()) << listed.ShortDebugString();
  std::vector<std::string> services;
  for (const auto& service : listed.list_services_response().service()) {
    services.push_back(service.name());
  }
  EXPECT_THAT(services, ::testing::Contains("registrar.v1.Registrar"));
  grpc::reflection::v1::ServerReflectionRequest symbol;
  symbol.set_file_containing_symbol("registrar.v1.Registrar");
  grpc::reflection::v1::ServerReflectionResponse described;
  ASSERT_TRUE(stream->Write(symbol) && stream->Read(&described))
      << Code(stream->Finish());
  ASSERT_TRUE(described.has_file_descriptor_response())
      << described.ShortDebugString();
  EXPECT_GT(described.file_descriptor_response().file_descriptor_proto_size(),
            0);
  stream->WritesDone();
  const grpc::Status closed = stream->Finish();
  EXPECT_TRUE(closed.ok()) << Code(closed);
}

TEST_F(AccessTest, RefusalsAreCountedInMetrics) {
  (void)Call(Rpc::kIssue, "", "tenant-a", "");
  (void)Call(Rpc::kIssue, "token-reader-a", "tenant-a", "");
  auto samples = testing::ScrapeMetrics(*server_);
  ASSERT_TRUE(samples.ok()) << StatusText(samples.status());
  for (const char* reason : {"no_credentials", "permission_denied"}) {
    std::optional<double> count = testing::FindSample(
        *samples, "registrar_rejected_calls_total", {{"reason", reason}});
    ASSERT_TRUE(count.has_value()) << reason;
    EXPECT_GT(*count, 0) << reason;
  }
}

TEST_F(AccessTest, CallersFileChangesApplyWithoutRestart) {
  std::vector<TestCaller> callers = Callers();
  callers.push_back({"gw-new", "ROLE_GATEWAY", {"tenant-a"}, "token-new"});
  EXPECT_EQ(Call(Rpc::kIssue, "token-new", "tenant-a", "").error_code(),
            StatusCode::UNAUTHENTICATED);
  WriteFile(CallersPath(), CallersJson(callers));
  // Picked up by the file watch (about a second) or SIGHUP: send both.
  // The reload happens in the server process, which tells no one: poll it
  // (bounded).
  server_->Signal(SIGHUP);
  grpc::Status s;
  EXPECT_TRUE(PollUntil(
      [&] {
        s = Call(Rpc::kIssue, "token-new", "tenant-a", "");
        return s.ok();
      },
      absl::Seconds(5)))
      << Code(s);
  // A broken file keeps the callers loaded before: wait (bounded) until the
  // server has read it and said so, then the new caller still works.
  WriteFile(CallersPath(), "{ not json");
  server_->Signal(SIGHUP);
  EXPECT_TRUE(PollUntil(
      [&] {
        return server_->Log().find("keeping the callers loaded before") !=
               std::string::npos;
      },
      absl::Seconds(5)))
      << server_->Log();
  s = Call(Rpc::kIssue, "token-new", "tenant-a", "");
  EXPECT_TRUE(s.ok()) << Code(s);
  WriteFile(CallersPath(), CallersJson(Callers()));
  server_->Signal(SIGHUP);
}

// ---------------------------------------------------------------------------

TEST(RateLimitTest, ExcessCallsGetRetryInfoAndOtherCallersAreUnaffected) {
  const std::string dir =
      ::testing::TempDir() + "/rate_test_" + std::to_string(getpid());
  std::filesystem::create_directories(dir);
  WriteFile(dir + "/callers.json", CallersJson(Callers()));
  ServerProcess::Options options;
  options.args = {"--callers_file=" + dir + "/callers.json", "--store=memory",
                  "--caller_rate=2", "--caller_burst=5"};
  auto server = StartOrFail(options);
  ASSERT_NE(server, nullptr);
  auto channel = grpc::CreateChannel(server->grpc_address(),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::Registrar::NewStub(channel);
  auto issue = [&](const std::string& token, const std::string& tenant) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer " + token);
    v1::IssueRequest req;
    req.set_kind(v1::KIND_THREAD);
    *req.mutable_owner() = MakeOwner(tenant, "u1");
    v1::IssueResponse resp;
    return stub->Issue(&ctx, req, &resp);
  };
  int ok = 0;
  grpc::Status limited;
  for (int i = 0; i < 10; ++i) {
    grpc::Status s = issue("token-gw-a", "tenant-a");
    if (s.ok()) {
      ++ok;
    } else {
      limited = s;
    }
  }
  // The burst, give or take a refill during the loop.
  EXPECT_GE(ok, 5);
  EXPECT_LE(ok, 7);
  ASSERT_EQ(limited.error_code(), StatusCode::RESOURCE_EXHAUSTED)
      << Code(limited);
  EXPECT_NE(limited.error_message().find("--caller_rate"), std::string::npos);
  const QuotaDetails details = QuotaDetailsOf(limited);
  ASSERT_TRUE(details.parsed);
  ASSERT_TRUE(details.retry_delay.has_value());
  EXPECT_GT(*details.retry_delay, absl::ZeroDuration());
  EXPECT_LE(*details.retry_delay, absl::Milliseconds(500));  // a token at 2/s
  EXPECT_EQ(details.subjects,
            std::optional<std::vector<std::string>>({"caller:gw-a"}));
  // Another caller has its own bucket.
  EXPECT_TRUE(issue("token-gw-b", "tenant-b").ok());
  // After the delay the first caller may call again: the server's bucket
  // refills by its own clock, so poll it (bounded; a refused call takes no
  // token).
  EXPECT_TRUE(PollUntil([&] { return issue("token-gw-a", "tenant-a").ok(); },
                        absl::Seconds(3)));
  EXPECT_EQ(StopServer(*server), 0);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace registrar::testing
