// Hostile text against the real server: newlines with a forged log line,
// terminal escapes, invalid UTF-8 and megabyte strings in every string field
// of every RPC, and as the tenant of a caller scoped to another tenant
// (PERMISSION_DENIED, which is logged). Each call adds exactly one access
// log line or PERMISSION_DENIED line (and at most the parser's rate-limited
// complaint about invalid UTF-8), every line is well formed (no injected line,
// no escape byte), the log grows by a bounded amount, and every error message
// and its details stay far below gRPC's 8 KiB metadata default.

#include <grpcpp/grpcpp.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "service/auth/callers_file.h"
#include "service/common/text.h"
#include "tests/integration/own_server_test.h"
#include "tests/integration/test_util.h"

namespace registrar::testing {
namespace {

using grpc::StatusCode;
using Stub = v1::Registrar::Stub;

// What a hostile caller sends.
struct Hostile {
  std::string name;
  std::string value;
};

const std::vector<Hostile>& HostileValues() {
  static const auto* values = new std::vector<Hostile>{
      {"forged line",
       "x\n[2026-12-02 10:00:00.000] [critical] caller admin revoked all "
       "leases\r\n"},
      {"terminal escapes", "\x1b[2J\x1b[31mred\x1b]0;pwned\x07\x1b[0m"},
      {"invalid utf-8", "bad\xff\xfe utf8 \xc0\xaf \xed\xa0\x80"},
      {"megabyte", std::string(1 << 20, 'A') + "\n[critical] tail"},
      {"megabyte printable", std::string(1 << 20, 'B')},
  };
  return *values;
}

// One string field of one RPC, filled with a hostile value in an otherwise
// valid request.
struct FieldCase {
  std::string rpc;
  std::string field;
  std::function<grpc::Status(Stub&, grpc::ClientContext&, const std::string&)>
      call;
};

v1::Owner GoodOwner() { return MakeOwner("tenant-a", "u1"); }

grpc::Status Watch(Stub& stub, grpc::ClientContext& ctx,
                   const v1::WatchRequest& req) {
  auto reader = stub.Watch(&ctx, req);
  v1::WatchEvent event;
  while (reader->Read(&event)) {
  }
  return reader->Finish();
}

template <typename Req, typename Resp>
using Method = grpc::Status (Stub::*)(grpc::ClientContext*, const Req&, Resp*);

// A case calling `method` with the request `fill` builds.
template <typename Req, typename Resp>
FieldCase Case(std::string rpc, std::string field, Method<Req, Resp> method,
               std::function<void(Req&, const std::string&)> fill) {
  return {std::move(rpc), std::move(field),
          [method, fill](Stub& stub, grpc::ClientContext& ctx,
                         const std::string& v) {
            Req req;
            fill(req, v);
            Resp resp;
            return (stub.*method)(&ctx, req, &resp);
          }};
}

std::vector<FieldCase> EveryStringField() {
  using namespace v1;  // NOLINT: request types only
  std::vector<FieldCase> cases;
  auto issue = [&](std::string field,
                   std::function<void(IssueRequest&, const std::string&)> f) {
    cases.push_back(Case<IssueRequest, IssueResponse>(
        "Issue", std::move(field), &Stub::Issue,
        [f](IssueRequest& r, const std::string& v) {
          r.set_kind(KIND_THREAD);
          *r.mutable_owner() = GoodOwner();
          f(r, v);
        }));
  };
  issue("owner.tenant",
        [](auto& r, auto& v) { r.mutable_owner()->set_tenant(v); });
  issue("owner.user_id",
        [](auto& r, auto& v) { r.mutable_owner()->set_user_id(v); });
  issue("parent_id", [](auto& r, auto& v) {
    r.set_kind(KIND_RUN);
    r.set_parent_id(v);
  });
  issue("connection_id", [](auto& r, auto& v) {
    r.set_kind(KIND_REQUEST);
    r.set_connection_id(v);
  });
  issue("lease_id", [](auto& r, auto& v) {
    r.set_kind(KIND_CONNECTION);
    r.set_lease_id(v);
  });
  issue("labels[key]",
        [](auto& r, auto& v) { (*r.mutable_labels())[v] = "x"; });
  issue("labels[value]",
        [](auto& r, auto& v) { (*r.mutable_labels())["k"] = v; });

  auto open =
      [&](std::string field,
          std::function<void(OpenContextRequest&, const std::string&)> f) {
        cases.push_back(Case<OpenContextRequest, OpenContextResponse>(
            "OpenContext", std::move(field), &Stub::OpenContext,
            [f](OpenContextRequest& r, const std::string& v) {
              *r.mutable_owner() = GoodOwner();
              f(r, v);
            }));
      };
  open("owner.tenant",
       [](auto& r, auto& v) { r.mutable_owner()->set_tenant(v); });
  open("owner.user_id",
       [](auto& r, auto& v) { r.mutable_owner()->set_user_id(v); });
  open("thread_id", [](auto& r, auto& v) { r.set_thread_id(v); });
  open("connection_id", [](auto& r, auto& v) { r.set_connection_id(v); });
  open("labels[key]", [](auto& r, auto& v) { (*r.mutable_labels())[v] = "x"; });

  auto validate =
      [&](std::string field,
          std::function<void(ValidateRequest&, const std::string&)> f) {
        cases.push_back(Case<ValidateRequest, ValidateResponse>(
            "Validate", std::move(field), &Stub::Validate,
            [f](ValidateRequest& r, const std::string& v) {
              *r.mutable_owner() = GoodOwner();
              r.add_items()->set_id("thr_00000000000000000000000000");
              f(r, v);
            }));
      };
  validate("owner.tenant",
           [](auto& r, auto& v) { r.mutable_owner()->set_tenant(v); });
  validate("items[0].id",
           [](auto& r, auto& v) { r.mutable_items(0)->set_id(v); });
  validate("items[0].owner.user_id", [](auto& r, auto& v) {
    *r.mutable_items(0)->mutable_owner() = MakeOwner("tenant-a", v);
  });

  auto cleanup =
      [&](std::string field,
          std::function<void(CleanupRequest&, const std::string&)> f) {
        cases.push_back(Case<CleanupRequest, CleanupResponse>(
            "Cleanup", std::move(field), &Stub::Cleanup,
            [f](CleanupRequest& r, const std::string& v) {
              *r.mutable_owner() = GoodOwner();
              r.set_all_owned(true);
              f(r, v);
            }));
      };
  cleanup("owner.tenant",
          [](auto& r, auto& v) { r.mutable_owner()->set_tenant(v); });
  cleanup("reason", [](auto& r, auto& v) { r.set_reason(v); });
  cleanup("ids.ids[0]", [](auto& r, auto& v) { r.mutable_ids()->add_ids(v); });
  cleanup("connection_id", [](auto& r, auto& v) { r.set_connection_id(v); });

  cases.push_back(Case<GrantLeaseRequest, GrantLeaseResponse>(
      "GrantLease", "holder", &Stub::GrantLease,
      [](GrantLeaseRequest& r, const std::string& v) {
        r.set_holder(v);
        r.set_ttl_seconds(30);
      }));
  cases.push_back(Case<KeepAliveRequest, KeepAliveResponse>(
      "KeepAlive", "lease_id", &Stub::KeepAlive,
      [](KeepAliveRequest& r, const std::string& v) { r.set_lease_id(v); }));
  cases.push_back(Case<RevokeLeaseRequest, RevokeLeaseResponse>(
      "RevokeLease", "lease_id", &Stub::RevokeLease,
      [](RevokeLeaseRequest& r, const std::string& v) { r.set_lease_id(v); }));
  cases.push_back(Case<DescribeRequest, DescribeResponse>(
      "Describe", "id", &Stub::Describe,
      [](DescribeRequest& r, const std::string& v) { r.set_id(v); }));

  auto list =
      [&](std::string field,
          std::function<void(ListOwnedRequest&, const std::string&)> f) {
        cases.push_back(Case<ListOwnedRequest, ListOwnedResponse>(
            "ListOwned", std::move(field), &Stub::ListOwned,
            [f](ListOwnedRequest& r, const std::string& v) {
              *r.mutable_owner() = GoodOwner();
              f(r, v);
            }));
      };
  list("owner.tenant",
       [](auto& r, auto& v) { r.mutable_owner()->set_tenant(v); });
  list("owner.user_id",
       [](auto& r, auto& v) { r.mutable_owner()->set_user_id(v); });
  list("page_token", [](auto& r, auto& v) { r.set_page_token(v); });

  cases.push_back(
      {"Watch", "tenant",
       [](Stub& stub, grpc::ClientContext& ctx, const std::string& v) {
         v1::WatchRequest req;
         req.set_tenant(v);
         return Watch(stub, ctx, req);
       }});
  return cases;
}

// The RPCs whose request names a tenant: a caller scoped to another tenant
// is refused (PERMISSION_DENIED, logged) before the request is checked.
std::vector<FieldCase> TenantFields() {
  std::vector<FieldCase> out;
  for (FieldCase& c : EveryStringField()) {
    if (c.field == "owner.tenant" || c.rpc == "Watch") {
      out.push_back(std::move(c));
    }
  }
  return out;
}

// The log's lines after byte `from` (complete lines only).
std::vector<std::string> LinesAfter(const std::string& log, size_t from) {
  return from >= log.size() ? std::vector<std::string>{}
                            : NonEmptyLines(log.substr(from));
}

// A line as the server writes it: spdlog's "[date time] [level] message",
// printable UTF-8 (no escape byte, no control character) and bounded.
void ExpectWellFormed(const std::string& line) {
  static const std::regex kLine(
      R"(^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] \[(trace|debug|info|warning|error|critical|access)\] .*$)");
  EXPECT_TRUE(std::regex_match(line, kLine)) << LogSafe(line, 300);
  EXPECT_TRUE(IsPrintableUtf8(line)) << LogSafe(line, 300);
  EXPECT_LE(line.size(), 2048u) << LogSafe(line, 300);
}

// A refusal fits any client's metadata budget and carries only printable
// text.
void ExpectBoundedStatus(const grpc::Status& s) {
  EXPECT_LE(s.error_message().size(), kMaxStatusMessageBytes + 32);
  EXPECT_TRUE(IsPrintableUtf8(s.error_message())) << LogSafe(s.error_message());
  EXPECT_LE(s.error_message().size() + s.error_details().size(), 4096u);
}

std::unique_ptr<grpc::ClientContext> Context(const std::string& token) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(10 * SanitizerTimeScale()));
  return ctx;
}

using HostileTextTest = OwnServerTest;

TEST_F(HostileTextTest,
       EveryStringFieldOfEveryRpcLogsNothingForgedOrUnbounded) {
  // The access log (on stderr, beside the server's own lines) writes one
  // line per call, with the tenant and caller metadata.
  ASSERT_NO_FATAL_FAILURE(Start({"--access_log=stderr"}));
  const std::vector<FieldCase> cases = EveryStringField();
  // Every RPC of the service has at least one case.
  std::set<std::string> rpcs;
  for (const FieldCase& c : cases) rpcs.insert(c.rpc);
  ASSERT_EQ(rpcs.size(), 10u);
  size_t calls = 0;
  const size_t before = server_->Log().size();
  for (const FieldCase& c : cases) {
    for (const Hostile& h : HostileValues()) {
      SCOPED_TRACE(absl::StrCat(c.rpc, " ", c.field, " = ", h.name));
      const size_t mark = server_->Log().size();
      auto ctx = Context("");
      // Hostile metadata too (printable: gRPC refuses others client-side;
      // and under its 8 KiB metadata limit, or the call never arrives).
      ctx->AddMetadata("x-request-id", std::string(4000, 'R'));
      ctx->AddMetadata("traceparent", "00-\"forged\" [critical] x");
      const grpc::Status s = c.call(*stub_, *ctx, h.value);
      ++calls;
      // Refused or answered, never left waiting (Watch included).
      EXPECT_NE(s.error_code(), StatusCode::DEADLINE_EXCEEDED);
      ExpectBoundedStatus(s);
      const std::vector<std::string> lines = LinesAfter(server_->Log(), mark);
      // Exactly one access line for the call; at most one other (the
      // parser's complaint about a string that is not UTF-8, rate-limited).
      size_t access = 0;
      for (const std::string& line : lines) {
        ExpectWellFormed(line);
        if (line.find("] [access] ") != std::string::npos) ++access;
      }
      EXPECT_EQ(access, 1u) << LogSafe(server_->Log().substr(mark), 2000);
      EXPECT_LE(lines.size(), 2u);
    }
  }
  ASSERT_GT(calls, 100u);
  const std::string log = server_->Log();
  // No hostile text started a line of its own, and the log grew by at most
  // one bounded line per call (megabyte strings sent: several MB).
  EXPECT_EQ(log.find("\n[critical] tail"), std::string::npos);
  EXPECT_EQ(log.find("\n[2026-12-02 10:00:00.000]"), std::string::npos);
  EXPECT_EQ(log.find('\x1b'), std::string::npos);
  EXPECT_LE(log.size() - before, calls * 2 * 2048);
  for (const std::string& line : LinesAfter(log, before)) {
    ExpectWellFormed(line);
  }
}

TEST_F(HostileTextTest, PermissionDeniedForAHostileTenantLogsOneEscapedLine) {
  const std::string callers = dir_ + "/callers.json";
  // A gateway and a reader of tenant-a: between them every RPC that names
  // a tenant.
  std::ofstream(callers)
      << "{\"callers\": [{\"name\": \"gw-a\", \"role\": \"ROLE_GATEWAY\", "
         "\"tenants\": [\"tenant-a\"], \"token_sha256\": [\""
      << HashToken("token-gw-a")
      << "\"]}, {\"name\": \"reader-a\", \"role\": \"ROLE_READER\", "
         "\"tenants\": [\"tenant-a\"], \"token_sha256\": [\""
      << HashToken("token-reader-a") << "\"]}]}";
  ASSERT_NO_FATAL_FAILURE(Start({"--callers_file=" + callers}));
  const std::vector<FieldCase> cases = TenantFields();
  ASSERT_EQ(cases.size(), 6u);  // Issue OpenContext Validate Cleanup
                                // ListOwned Watch
  size_t denied = 0;
  const size_t before = server_->Log().size();
  for (const FieldCase& c : cases) {
    for (const Hostile& h : HostileValues()) {
      SCOPED_TRACE(absl::StrCat(c.rpc, " ", c.field, " = ", h.name));
      const bool reader = c.rpc == "ListOwned" || c.rpc == "Watch";
      const std::string caller = reader ? "reader-a" : "gw-a";
      const size_t mark = server_->Log().size();
      auto ctx = Context(reader ? "token-reader-a" : "token-gw-a");
      const grpc::Status s = c.call(*stub_, *ctx, h.value);
      ExpectBoundedStatus(s);
      const std::vector<std::string> lines = LinesAfter(server_->Log(), mark);
      if (h.name == "invalid utf-8") {
        // Not a string at all: refused as unparseable before any tenant
        // check, with at most the parser's own (routed, well-formed) line.
        EXPECT_NE(s.error_code(), StatusCode::OK);
        EXPECT_NE(s.error_code(), StatusCode::PERMISSION_DENIED);
        EXPECT_LE(lines.size(), 1u);
      } else {
        ++denied;
        EXPECT_EQ(s.error_code(), StatusCode::PERMISSION_DENIED)
            << LogSafe(s.error_message());
        EXPECT_NE(s.error_message().find("caller " + caller),
                  std::string::npos);
        ASSERT_EQ(lines.size(), 1u) << LogSafe(server_->Log().substr(mark));
        EXPECT_NE(lines[0].find("permission denied: caller " + caller),
                  std::string::npos);
        // The tenant appears escaped, cut to its bound, with its size.
        if (h.value.size() > kLogTextBytes) {
          EXPECT_NE(
              lines[0].find(absl::StrCat("...(", h.value.size(), " bytes)")),
              std::string::npos)
              << lines[0];
        }
      }
      for (const std::string& line : lines) ExpectWellFormed(line);
    }
  }
  ASSERT_EQ(denied, cases.size() * (HostileValues().size() - 1));
  const std::string log = server_->Log();
  // The forged line's text is there (escaped), never at a line's start.
  EXPECT_EQ(log.find("\n[2026-12-02 10:00:00.000]"), std::string::npos);
  EXPECT_NE(log.find("x\\n[2026-12-02 10:00:00.000] [critical] caller admin"),
            std::string::npos);
  EXPECT_EQ(log.find('\x1b'), std::string::npos);
  // Megabyte tenants sent in 12 calls; the log grew by lines of bounded
  // size.
  EXPECT_LE(log.size() - before, cases.size() * HostileValues().size() * 2048);
}

}  // namespace
}  // namespace registrar::testing
