// The operator's lease calls through the real server (registrar.v1.Admin
// ListLeases and RevokeLeases, admin role only): who may call them, what a
// bad holder gets, and revoke-by-holder of a gateway with several leases
// releasing exactly what was bound to them (and surviving a restart),
// another holder's leases and records untouched.

#include <grpcpp/grpcpp.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/rpc_status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registrar/v1/admin.grpc.pb.h"
#include "service/auth/callers_file.h"
#include "tests/integration/data_dir.h"
#include "tests/integration/metrics_scrape.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_util.h"

namespace registrar {
namespace {

using ::registrar::testing::MakeOwner;
using ::registrar::testing::OptionsFor;
using ::registrar::testing::ServerProcess;
using ::registrar::testing::StartOrFail;
using ::registrar::testing::StatusText;
using ::registrar::testing::TestDir;
using ::registrar::testing::VerdictOf;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;

// An admin, a gateway and a reader.
std::string WriteCallers(const std::string& dir) {
  const std::string path = dir + "/callers.json";
  auto caller = [](const char* name, const char* role, const char* token) {
    return absl::StrCat("{\"name\": \"", name, "\", \"role\": \"", role,
                        "\", \"tenants\": [\"*\"], \"token_sha256\": [\"",
                        HashToken(token), "\"]}");
  };
  std::ofstream(path) << "{\"callers\": ["
                      << caller("ops", "ROLE_ADMIN", "token-ops") << ", "
                      << caller("gw", "ROLE_GATEWAY", "token-gw") << ", "
                      << caller("rd", "ROLE_READER", "token-rd") << "]}";
  return path;
}

class LeaseAdminTest : public ::testing::Test {
 protected:
  LeaseAdminTest() : dir_("lease-admin") {}

  void SetUp() override {
    callers_ = WriteCallers(dir_.path());
    Start();
  }

  void Start() {
    server_ = StartOrFail(OptionsFor(dir_, {"--callers_file=" + callers_}));
    ASSERT_NE(server_, nullptr);
    channel_ = grpc::CreateChannel(server_->grpc_address(),
                                   grpc::InsecureChannelCredentials());
    ClientOptions options;
    options.target = server_->grpc_address();
    options.deadline = absl::Seconds(10);
    options.bearer_token = "token-gw";
    gateway_ = std::make_unique<Client>(options);
  }

  void Restart() {
    ASSERT_EQ(testing::StopServer(*server_), 0) << server_->Log();
    Start();
  }

  grpc::Status List(const std::string& token, const std::string& holder,
                    v1::ListLeasesResponse* response,
                    const std::string& page_token = "",
                    uint32_t page_size = 0) {
    grpc::ClientContext ctx;
    Prepare(ctx, token);
    v1::ListLeasesRequest request;
    request.set_holder(holder);
    request.set_page_token(page_token);
    request.set_page_size(page_size);
    return v1::Admin::NewStub(channel_)->ListLeases(&ctx, request, response);
  }
  grpc::Status Revoke(const std::string& token, const std::string& holder,
                      v1::RevokeLeasesResponse* response) {
    grpc::ClientContext ctx;
    Prepare(ctx, token);
    v1::RevokeLeasesRequest request;
    request.set_holder(holder);
    return v1::Admin::NewStub(channel_)->RevokeLeases(&ctx, request, response);
  }
  // Lease IDs of `holder` ("" every holder), every page, as the admin.
  std::vector<std::string> LeaseIds(const std::string& holder) {
    std::vector<std::string> out;
    std::string token;
    for (int page = 0; page < 1000; ++page) {
      v1::ListLeasesResponse response;
      const grpc::Status s = List("token-ops", holder, &response, token, 2);
      EXPECT_TRUE(s.ok()) << s.error_message();
      for (const v1::LeaseInfo& l : response.leases()) {
        out.push_back(l.lease_id());
      }
      token = response.next_page_token();
      if (!s.ok() || token.empty()) break;
    }
    return out;
  }

  std::string Grant(const std::string& holder) {
    v1::GrantLeaseRequest request;
    request.set_holder(holder);
    request.set_ttl_seconds(600);
    auto granted = gateway_->GrantLease(request);
    EXPECT_TRUE(granted.ok()) << StatusText(granted.status());
    return granted.ok() ? granted->lease_id() : "";
  }
  // A connection of `owner` on `lease` and a context opened through it: the
  // connection, run and request, which end with the lease (the thread
  // outlives it and goes to *threads).
  std::vector<std::string> Bind(const std::string& lease,
                                const v1::Owner& owner,
                                std::vector<std::string>* threads) {
    IssueOptions on_lease;
    on_lease.lease_id = lease;
    auto conn = gateway_->IssueIds(v1::KIND_CONNECTION, owner, 1, on_lease);
    EXPECT_TRUE(conn.ok()) << StatusText(conn.status());
    if (!conn.ok()) return {};
    v1::OpenContextRequest open;
    *open.mutable_owner() = owner;
    open.set_connection_id(conn->front());
    auto ctx = gateway_->OpenContext(open);
    EXPECT_TRUE(ctx.ok()) << StatusText(ctx.status());
    if (!ctx.ok()) return {};
    threads->push_back(ctx->thread_id());
    return {conn->front(), ctx->run_id(), ctx->request_id()};
  }

  static void Prepare(grpc::ClientContext& ctx, const std::string& token) {
    if (!token.empty()) ctx.AddMetadata("authorization", "Bearer " + token);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
  }

  TestDir dir_;
  std::string callers_;
  std::unique_ptr<ServerProcess> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<Client> gateway_;
};

TEST_F(LeaseAdminTest, OnlyAdminsMayListOrRevoke) {
  const std::string lease = Grant("gw-guarded");
  for (const char* token : {"token-gw", "token-rd"}) {
    v1::ListLeasesResponse listed;
    EXPECT_EQ(List(token, "", &listed).error_code(),
              grpc::StatusCode::PERMISSION_DENIED)
        << token;
    v1::RevokeLeasesResponse revoked;
    const grpc::Status s = Revoke(token, "gw-guarded", &revoked);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << token;
    EXPECT_THAT(s.error_message(), HasSubstr("RevokeLeases")) << token;
  }
  v1::RevokeLeasesResponse revoked;
  EXPECT_EQ(Revoke("", "gw-guarded", &revoked).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Revoke("token-unknown", "gw-guarded", &revoked).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  // Nothing was revoked by the refused calls.
  EXPECT_THAT(LeaseIds("gw-guarded"), ElementsAreArray({lease}));
}

TEST_F(LeaseAdminTest, BadHolderIsInvalidArgumentNamingTheFieldAndLimit) {
  const std::string too_long(257, 'h');
  const std::string hostile = "gw\x1b[31m\n";
  struct Case {
    std::string holder;
    bool revoke;
    std::string says;
  };
  for (const Case& c : std::vector<Case>{
           {too_long, false, "holder: is 257 bytes, limit is 256"},
           {too_long, true, "holder: is 257 bytes, limit is 256"},
           {hostile, false, "holder: must be printable UTF-8"},
           {hostile, true, "holder: must be printable UTF-8"},
           {"", true, "holder: is required"}}) {
    grpc::Status s;
    if (c.revoke) {
      v1::RevokeLeasesResponse response;
      s = Revoke("token-ops", c.holder, &response);
    } else {
      v1::ListLeasesResponse response;
      s = List("token-ops", c.holder, &response);
    }
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.says;
    EXPECT_THAT(s.error_message(), HasSubstr(c.says));
    const auto bad = grpc_status::GetBadRequest(grpc_status::ToAbsl(s));
    ASSERT_TRUE(bad.has_value()) << c.says;
    ASSERT_EQ(bad->field_violations_size(), 1);
    EXPECT_EQ(bad->field_violations(0).field(), "holder");
  }
  v1::ListLeasesResponse response;
  EXPECT_EQ(List("token-ops", "", &response, "no-such-token").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  // The caller's text never reaches the log raw.
  EXPECT_THAT(server_->Log(), ::testing::Not(HasSubstr("\x1b[31m")));
}

TEST_F(LeaseAdminTest, RevokeByHolderReleasesExactlyItsRecords) {
  const v1::Owner alice = MakeOwner("acme", "alice");
  const v1::Owner bob = MakeOwner("acme", "bob");
  std::vector<std::string> threads;
  std::vector<std::string> dead_leases, doomed, kept;
  for (int i = 0; i < 3; ++i) dead_leases.push_back(Grant("gw-dead"));
  const std::string live_lease = Grant("gw-live");
  for (const std::string& id : Bind(dead_leases[0], alice, &threads)) {
    doomed.push_back(id);
  }
  for (const std::string& id : Bind(dead_leases[0], bob, &threads)) {
    doomed.push_back(id);
  }
  for (const std::string& id : Bind(dead_leases[1], alice, &threads)) {
    doomed.push_back(id);
  }
  kept = Bind(live_lease, alice, &threads);

  v1::ListLeasesResponse listed;
  ASSERT_TRUE(List("token-ops", "gw-dead", &listed).ok());
  ASSERT_EQ(listed.leases_size(), 3);
  EXPECT_EQ(listed.leases(0).lease_id(), dead_leases[0]);
  EXPECT_EQ(listed.leases(0).holder(), "gw-dead");
  EXPECT_EQ(listed.leases(0).grantor(), "gw");
  EXPECT_EQ(listed.leases(0).ttl_seconds(), 600u);
  EXPECT_GT(listed.leases(0).remaining_ms(), 500'000u);
  EXPECT_LE(listed.leases(0).remaining_ms(), 600'000u);
  EXPECT_EQ(listed.leases(0).connections(), 2u);
  EXPECT_EQ(listed.leases(1).connections(), 1u);
  EXPECT_EQ(listed.leases(2).connections(), 0u);
  EXPECT_THAT(LeaseIds(""),
              UnorderedElementsAreArray({dead_leases[0], dead_leases[1],
                                         dead_leases[2], live_lease}));

  v1::RevokeLeasesResponse revoked;
  const grpc::Status s = Revoke("token-ops", "gw-dead", &revoked);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(revoked.revoked(), ElementsAreArray(dead_leases));
  EXPECT_EQ(revoked.released(), doomed.size());
  EXPECT_FALSE(revoked.more());

  auto check = [&] {
    for (const std::string& id : doomed) {
      const v1::Owner& owner =
          id == doomed[3] || id == doomed[4] || id == doomed[5] ? bob : alice;
      EXPECT_EQ(VerdictOf(*gateway_, id, owner), v1::VERDICT_RELEASED) << id;
    }
    for (const std::string& id : kept) {
      EXPECT_EQ(VerdictOf(*gateway_, id, alice), v1::VERDICT_VALID) << id;
    }
    EXPECT_THAT(LeaseIds("gw-dead"), IsEmpty());
    EXPECT_THAT(LeaseIds(""), ElementsAreArray({live_lease}));
  };
  check();
  v1::KeepAliveRequest keep;
  keep.set_lease_id(dead_leases[0]);
  EXPECT_EQ(gateway_->KeepAlive(keep).status().code(),
            absl::StatusCode::kNotFound);
  keep.set_lease_id(live_lease);
  EXPECT_TRUE(gateway_->KeepAlive(keep).ok());
  // Nothing left: an empty answer, not an error.
  ASSERT_TRUE(Revoke("token-ops", "gw-dead", &revoked).ok());
  EXPECT_THAT(revoked.revoked(), IsEmpty());
  EXPECT_EQ(revoked.released(), 0u);

  // Timed under its own label.
  EXPECT_EQ(testing::ScrapeValue(*server_, "registrar_core_op_seconds_count",
                                 {{"op", "revoke_leases"}}),
            2.0);

  // What was revoked stays revoked: the store has it.
  Restart();
  check();
}

}  // namespace
}  // namespace registrar
