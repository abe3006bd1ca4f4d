// Every kind of bad request is refused with INVALID_ARGUMENT (or
// RESOURCE_EXHAUSTED for batch and quota limits, FAILED_PRECONDITION for a
// reference that is not live and the owner's), with a message naming the
// field and a google.rpc.BadRequest field violation naming it. After each
// one the owner's records are exactly as before and a good request works.

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "client/rpc_status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_util.h"

namespace registrar {
namespace {

using ::registrar::testing::MakeOwner;
using ::registrar::testing::ServerProcess;
using ::registrar::testing::StatusText;
using ::registrar::testing::VerdictName;
using ::testing::IsEmpty;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;
constexpr absl::StatusCode kExhausted = absl::StatusCode::kResourceExhausted;
constexpr absl::StatusCode kPrecondition =
    absl::StatusCode::kFailedPrecondition;

// One server for the suite (bad requests change nothing; every test uses
// its own owner): --max_batch=10, --max_message_bytes=64 KiB.
class BadRequestsTest : public testing::SharedServerTest {
 protected:
  static void SetUpTestSuite() {
    ServerProcess::Options options;
    options.args = {"--max_batch=10", "--max_message_bytes=65536"};
    StartSharedServer(options);
  }

  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(SharedServerTest::SetUp());
    auto thread = client_->IssueIds(v1::KIND_THREAD, owner_);
    ASSERT_TRUE(thread.ok()) << StatusText(thread.status());
    thread_ = thread->front();
    IssueOptions run_options;
    run_options.parent_id = thread_;
    auto run = client_->IssueIds(v1::KIND_RUN, owner_, 1, run_options);
    ASSERT_TRUE(run.ok()) << StatusText(run.status());
    run_ = run->front();
    auto conn = client_->IssueIds(v1::KIND_CONNECTION, owner_);
    ASSERT_TRUE(conn.ok()) << StatusText(conn.status());
    conn_ = conn->front();
    before_ = testing::Snapshot(*client_, owner_);
    ASSERT_EQ(before_.size(), 3u);
  }

  // `status` is `code` with "field" in its message and a BadRequest field
  // violation for exactly `field`; then nothing changed and a good request
  // still works.
  void Check(const std::string& what, const absl::Status& status,
             absl::StatusCode code, const std::string& field) {
    SCOPED_TRACE(what);
    EXPECT_EQ(absl::StatusCodeToString(status.code()),
              absl::StatusCodeToString(code))
        << StatusText(status);
    EXPECT_TRUE(absl::StrContains(std::string(status.message()), field))
        << "message does not name " << field << ": " << StatusText(status);
    auto bad = grpc_status::GetBadRequest(status);
    if (!bad.has_value()) {
      ADD_FAILURE() << "no google.rpc.BadRequest detail: "
                    << StatusText(status);
    } else {
      std::vector<std::string> fields;
      for (const auto& v : bad->field_violations()) {
        fields.push_back(v.field());
        EXPECT_FALSE(v.description().empty()) << v.field();
      }
      EXPECT_THAT(fields, ::testing::Contains(field)) << StatusText(status);
    }
    ExpectUnchanged();
  }

  template <typename T>
  void Check(const std::string& what, const absl::StatusOr<T>& result,
             absl::StatusCode code, const std::string& field) {
    Check(what, result.status(), code, field);
  }

  void ExpectUnchanged() {
    EXPECT_EQ(testing::Snapshot(*client_, owner_), before_)
        << "a refused request changed the owner's records";
    EXPECT_EQ(VerdictName(testing::VerdictOf(*client_, thread_, owner_)),
              "VERDICT_VALID")
        << "a good request after the bad one";
  }

  v1::IssueRequest GoodIssue(v1::Kind kind = v1::KIND_THREAD) const {
    v1::IssueRequest r;
    r.set_kind(kind);
    *r.mutable_owner() = owner_;
    return r;
  }

  std::string thread_, run_, conn_;
  std::vector<std::string> before_;
};

// --- Issue ------------------------------------------------------------------

TEST_F(BadRequestsTest, IssueKind) {
  v1::IssueRequest r = GoodIssue();
  r.set_kind(v1::KIND_UNSPECIFIED);
  Check("kind unspecified", client_->Issue(r), kInvalid, "kind");
  r.set_kind(static_cast<v1::Kind>(99));
  Check("kind 99", client_->Issue(r), kInvalid, "kind");
}

TEST_F(BadRequestsTest, IssueOwner) {
  v1::IssueRequest r = GoodIssue();
  r.clear_owner();
  Check("owner missing", client_->Issue(r), kInvalid, "owner.tenant");
  r = GoodIssue();
  r.mutable_owner()->set_tenant("");
  Check("empty tenant", client_->Issue(r), kInvalid, "owner.tenant");
  r = GoodIssue();
  r.mutable_owner()->set_user_id("");
  Check("empty user_id", client_->Issue(r), kInvalid, "owner.user_id");
  r = GoodIssue();
  r.mutable_owner()->set_user_id(std::string(257, 'u'));
  Check("257-byte user_id", client_->Issue(r), kInvalid, "owner.user_id");
  r = GoodIssue();
  r.mutable_owner()->set_tenant(std::string(257, 't'));
  Check("257-byte tenant", client_->Issue(r), kInvalid, "owner.tenant");
  for (const std::string& bad :
       {std::string("bob\x01"), std::string("bob\n"), std::string("bob\x7f"),
        std::string("bob\t"), std::string("bob\xc2\x85") /* U+0085 NEL */,
        std::string("a\0b", 3)}) {
    r = GoodIssue();
    r.mutable_owner()->set_user_id(bad);
    Check("control character in user_id", client_->Issue(r), kInvalid,
          "owner.user_id");
  }
  r = GoodIssue();
  r.mutable_owner()->set_tenant("ac\x1bme");
  Check("control character in tenant", client_->Issue(r), kInvalid,
        "owner.tenant");
}

// Invalid UTF-8 in an owner. The C++ protobuf runtime only logs when it
// serializes such a proto3 string, so a C++ client can send it; the server
// must answer INVALID_ARGUMENT naming the field (or at least
// INVALID_ARGUMENT when it cannot parse the request), not a code that
// misleads the caller.
TEST_F(BadRequestsTest, IssueOwnerInvalidUtf8) {
  v1::IssueRequest r = GoodIssue();
  r.mutable_owner()->set_user_id("bob\xff\xfe");
  auto result = client_->Issue(r);
  EXPECT_EQ(absl::StatusCodeToString(result.status().code()),
            absl::StatusCodeToString(kInvalid))
      << "Issue with a non-UTF-8 user_id: " << StatusText(result.status());
  ExpectUnchanged();
}

TEST_F(BadRequestsTest, IssueCountOverMaxBatch) {
  v1::IssueRequest r = GoodIssue();
  r.set_count(11);
  Check("count 11 > --max_batch=10", client_->Issue(r), kExhausted, "count");
  r.set_count(1000000);
  Check("count 1000000", client_->Issue(r), kExhausted, "count");
}

TEST_F(BadRequestsTest, IssueParentAndReferences) {
  v1::IssueRequest r = GoodIssue(v1::KIND_RUN);
  r.set_parent_id(conn_);
  Check("run under a connection", client_->Issue(r), kInvalid, "parent_id");
  r.set_parent_id(run_);
  Check("run under a run", client_->Issue(r), kInvalid, "parent_id");
  r = GoodIssue(v1::KIND_REQUEST);
  r.set_parent_id(thread_);
  Check("request under a thread", client_->Issue(r), kInvalid, "parent_id");
  r = GoodIssue(v1::KIND_THREAD);
  r.set_parent_id(thread_);
  Check("thread with a parent", client_->Issue(r), kInvalid, "parent_id");
  r = GoodIssue(v1::KIND_CONNECTION);
  r.set_parent_id(thread_);
  Check("connection with a parent", client_->Issue(r), kInvalid, "parent_id");
  r = GoodIssue(v1::KIND_RUN);
  r.set_parent_id(std::string(100, 'x'));
  Check("100-byte parent_id", client_->Issue(r), kInvalid, "parent_id");
  r.set_parent_id("thread_" + std::string(93, '0'));
  Check("100-byte thread-looking parent_id", client_->Issue(r), kInvalid,
        "parent_id");
  r.set_parent_id("thread_xyz");
  Check("malformed parent_id", client_->Issue(r), kInvalid, "parent_id");

  r = GoodIssue(v1::KIND_RUN);
  r.set_connection_id(thread_);
  Check("connection_id is a thread", client_->Issue(r), kInvalid,
        "connection_id");
  r.set_connection_id(std::string(65, 'c'));
  Check("65-byte connection_id", client_->Issue(r), kInvalid, "connection_id");
  r = GoodIssue(v1::KIND_CONNECTION);
  r.set_connection_id(conn_);
  Check("connection through a connection", client_->Issue(r), kInvalid,
        "connection_id");
  r = GoodIssue(v1::KIND_THREAD);
  r.set_lease_id("lease_01jf8x2k3m4n5p6q7r8s9t0v1w");
  Check("lease_id on a thread", client_->Issue(r), kInvalid, "lease_id");
  r = GoodIssue(v1::KIND_CONNECTION);
  r.set_lease_id(thread_);
  Check("lease_id is a thread", client_->Issue(r), kInvalid, "lease_id");
  r.set_lease_id("lease_");
  Check("malformed lease_id", client_->Issue(r), kInvalid, "lease_id");
}

TEST_F(BadRequestsTest, IssueLabels) {
  v1::IssueRequest r = GoodIssue();
  for (int i = 0; i < 33; ++i) (*r.mutable_labels())[absl::StrCat("k", i)] = "v";
  Check("33 labels", client_->Issue(r), kInvalid, "labels");
  r = GoodIssue();
  (*r.mutable_labels())[std::string(65, 'k')] = "v";
  Check("65-byte label key", client_->Issue(r), kInvalid, "labels[key]");
  r = GoodIssue();
  (*r.mutable_labels())[""] = "v";
  Check("empty label key", client_->Issue(r), kInvalid, "labels[key]");
  r = GoodIssue();
  (*r.mutable_labels())["k"] = std::string(257, 'v');
  Check("257-byte label value", client_->Issue(r), kInvalid, "labels[\"k\"]");
  r = GoodIssue();
  (*r.mutable_labels())["k"] = "line\nbreak";
  Check("control char in label value", client_->Issue(r), kInvalid,
        "labels[\"k\"]");
}

// The limits themselves are allowed (off-by-one check on every bound above).
TEST_F(BadRequestsTest, LimitsAreInclusive) {
  v1::IssueRequest r = GoodIssue();
  r.mutable_owner()->set_user_id(std::string(256, 'u'));
  r.mutable_owner()->set_tenant(std::string(256, 't'));
  r.set_count(10);
  for (int i = 0; i < 31; ++i) (*r.mutable_labels())[absl::StrCat("k", i)] = "v";
  (*r.mutable_labels())[std::string(64, 'k')] = std::string(256, 'v');
  auto issued = client_->Issue(r);
  ASSERT_TRUE(issued.ok()) << StatusText(issued.status());
  EXPECT_EQ(issued->ids_size(), 10);
  r.mutable_owner()->set_user_id("caf\xc3\xa9 \xe2\x9c\x93");  // printable UTF-8
  r.set_count(1);
  EXPECT_TRUE(client_->Issue(r).ok());

  v1::ValidateRequest v;
  *v.mutable_owner() = owner_;
  for (int i = 0; i < 10; ++i) v.add_items()->set_id(thread_);
  auto validated = client_->Validate(v);
  ASSERT_TRUE(validated.ok()) << StatusText(validated.status());
  EXPECT_EQ(validated->results_size(), 10);

  v1::CleanupRequest c;
  *c.mutable_owner() = owner_;
  for (int i = 0; i < 10; ++i) c.mutable_ids()->add_ids(absl::StrCat("x", i));
  auto cleaned = client_->Cleanup(c);
  ASSERT_TRUE(cleaned.ok()) << StatusText(cleaned.status());
  EXPECT_EQ(cleaned->unknown_size(), 10);
  ExpectUnchanged();
}

// --- OpenContext --------------------------------------------------------------

TEST_F(BadRequestsTest, OpenContext) {
  v1::OpenContextRequest r;
  Check("owner missing", client_->OpenContext(r), kInvalid, "owner.tenant");
  *r.mutable_owner() = owner_;
  r.set_thread_id(std::string(100, 't'));
  Check("100-byte thread_id", client_->OpenContext(r), kInvalid, "thread_id");
  r.set_thread_id(thread_);
  r.set_connection_id(thread_);
  Check("connection_id is a thread", client_->OpenContext(r), kInvalid,
        "connection_id");
  r.set_connection_id("conn_nope");
  Check("malformed connection_id", client_->OpenContext(r), kInvalid,
        "connection_id");
  r.set_connection_id("");
  for (int i = 0; i < 33; ++i) (*r.mutable_labels())[absl::StrCat("k", i)] = "v";
  Check("33 labels", client_->OpenContext(r), kInvalid, "labels");
}

// --- Validate -----------------------------------------------------------------

TEST_F(BadRequestsTest, Validate) {
  v1::ValidateRequest r;
  *r.mutable_owner() = owner_;
  for (int i = 0; i < 11; ++i) r.add_items()->set_id(thread_);
  Check("11 items > --max_batch=10", client_->Validate(r), kExhausted,
        "items");
  r.clear_items();
  Check("no items", client_->Validate(r), kInvalid, "items");

  r.Clear();
  r.add_items()->set_id(thread_);
  Check("item without owner, no default", client_->Validate(r), kInvalid,
        "items[0].owner");

  r.Clear();
  *r.mutable_owner() = owner_;
  r.add_items()->set_id(thread_);
  v1::ValidateItem* item = r.add_items();
  item->set_id(thread_);
  item->set_expected_kind(static_cast<v1::Kind>(99));
  Check("expected_kind 99", client_->Validate(r), kInvalid,
        "items[1].expected_kind");

  r.Clear();
  *r.mutable_owner() = owner_;
  r.add_items()->set_id(thread_);
  item = r.add_items();
  item->set_id(thread_);
  item->mutable_owner()->set_tenant("acme");
  Check("item owner without user_id", client_->Validate(r), kInvalid,
        "items[1].owner.user_id");

  r.Clear();
  r.mutable_owner()->set_tenant("acme");
  r.mutable_owner()->set_user_id("x\x01");
  r.add_items()->set_id(thread_);
  Check("default owner with a control char", client_->Validate(r), kInvalid,
        "owner.user_id");
}

// --- Cleanup ------------------------------------------------------------------

TEST_F(BadRequestsTest, Cleanup) {
  v1::CleanupRequest r;
  *r.mutable_owner() = owner_;
  Check("no target", client_->Cleanup(r), kInvalid, "target");

  for (int i = 0; i < 11; ++i) r.mutable_ids()->add_ids(thread_);
  Check("11 ids > --max_batch=10", client_->Cleanup(r), kExhausted, "ids.ids");

  r.set_connection_id(thread_);
  Check("connection_id is a thread ID", client_->Cleanup(r), kInvalid,
        "connection_id");
  r.set_connection_id(run_);
  Check("connection_id is a run ID", client_->Cleanup(r), kInvalid,
        "connection_id");
  r.set_connection_id("");
  Check("connection_id empty", client_->Cleanup(r), kInvalid,
        "connection_id");
  r.set_connection_id(std::string(100, 'c'));
  Check("100-byte connection_id", client_->Cleanup(r), kInvalid,
        "connection_id");
  r.set_all_owned(false);
  Check("all_owned=false", client_->Cleanup(r), kInvalid, "all_owned");

  r.set_all_owned(true);
  r.set_reason("bye\x07");
  Check("control char in reason", client_->Cleanup(r), kInvalid, "reason");
  r.set_reason(std::string(257, 'r'));
  Check("257-byte reason", client_->Cleanup(r), kInvalid, "reason");
  r.set_reason("");
  r.clear_owner();
  Check("owner missing", client_->Cleanup(r), kInvalid, "owner.tenant");
  r.mutable_owner()->set_tenant("acme");
  Check("owner without user_id", client_->Cleanup(r), kInvalid,
        "owner.user_id");
}

// --- Leases -------------------------------------------------------------------

TEST_F(BadRequestsTest, Leases) {
  // A live lease with a connection: bad lease calls must not touch it.
  v1::GrantLeaseRequest grant;
  grant.set_holder("gw-1");
  grant.set_ttl_seconds(60);
  auto lease = client_->GrantLease(grant);
  ASSERT_TRUE(lease.ok()) << StatusText(lease.status());
  IssueOptions bind;
  bind.lease_id = lease->lease_id();
  auto bound = client_->IssueIds(v1::KIND_CONNECTION, owner_, 1, bind);
  ASSERT_TRUE(bound.ok()) << StatusText(bound.status());
  before_ = testing::Snapshot(*client_, owner_);

  grant.set_ttl_seconds(0);
  Check("ttl 0", client_->GrantLease(grant), kInvalid, "ttl_seconds");
  grant.set_ttl_seconds(86401);
  Check("ttl above --max_lease_ttl", client_->GrantLease(grant), kInvalid,
        "ttl_seconds");
  grant.set_ttl_seconds(4000000000u);
  Check("ttl 4e9", client_->GrantLease(grant), kInvalid, "ttl_seconds");
  grant.set_ttl_seconds(60);
  grant.set_holder("");
  Check("empty holder", client_->GrantLease(grant), kInvalid, "holder");
  grant.set_holder(std::string(257, 'h'));
  Check("257-byte holder", client_->GrantLease(grant), kInvalid, "holder");
  grant.set_holder("gw\x01");
  Check("control char in holder", client_->GrantLease(grant), kInvalid,
        "holder");

  for (const std::string& bad :
       {std::string(""), std::string("lease_xyz"), std::string("lease_"),
        thread_, conn_, std::string(100, 'l'),
        "LEASE" + lease->lease_id().substr(5)}) {
    v1::KeepAliveRequest keep;
    keep.set_lease_id(bad);
    Check("KeepAlive(" + bad + ")", client_->KeepAlive(keep), kInvalid,
          "lease_id");
    v1::RevokeLeaseRequest revoke;
    revoke.set_lease_id(bad);
    Check("RevokeLease(" + bad + ")", client_->RevokeLease(revoke), kInvalid,
          "lease_id");
  }

  // The lease is untouched: still renewable, its connection still valid.
  v1::KeepAliveRequest keep;
  keep.set_lease_id(lease->lease_id());
  auto renewed = client_->KeepAlive(keep);
  EXPECT_TRUE(renewed.ok()) << StatusText(renewed.status());
  EXPECT_EQ(testing::VerdictOf(*client_, bound->front(), owner_),
            v1::VERDICT_VALID);
}

// --- Describe / ListOwned ------------------------------------------------------

TEST_F(BadRequestsTest, Describe) {
  v1::DescribeRequest r;
  Check("empty id", client_->Describe(r), kInvalid, "id");
  r.set_id(std::string(100, 'i'));
  Check("100-byte id", client_->Describe(r), kInvalid, "id");
  r.set_id("thread_xyz");
  Check("malformed id", client_->Describe(r), kInvalid, "id");
}

TEST_F(BadRequestsTest, ListOwned) {
  v1::ListOwnedRequest r;
  *r.mutable_owner() = owner_;
  r.set_page_token("garbage");
  Check("page_token garbage", client_->ListOwned(r), kInvalid, "page_token");
  r.set_page_token(std::string(65, 'p'));
  Check("65-byte page_token", client_->ListOwned(r), kInvalid, "page_token");
  r.set_page_token("01JF8X2K3M4N5P6Q7R8S9T0V1W");
  Check("uppercase page_token", client_->ListOwned(r), kInvalid, "page_token");
  r.set_page_token("");
  r.set_kind(static_cast<v1::Kind>(99));
  Check("kind 99", client_->ListOwned(r), kInvalid, "kind");
  r.set_kind(v1::KIND_UNSPECIFIED);
  r.clear_owner();
  Check("owner missing", client_->ListOwned(r), kInvalid, "owner.tenant");
}

// --- Failed preconditions -------------------------------------------------------

TEST_F(BadRequestsTest, IssueUnderEndedOrForeignReferencesFailsPrecondition) {
  // Another owner's live thread, connection.
  const v1::Owner other = MakeOwner("acme", "someone-else");
  auto foreign_thread = client_->IssueIds(v1::KIND_THREAD, other);
  ASSERT_TRUE(foreign_thread.ok());
  auto foreign_conn = client_->IssueIds(v1::KIND_CONNECTION, other);
  ASSERT_TRUE(foreign_conn.ok());
  // This owner's released thread (with its run) and connection.
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = owner_;
  cleanup.mutable_ids()->add_ids(thread_);
  cleanup.mutable_ids()->add_ids(conn_);
  auto cleaned = client_->Cleanup(cleanup);
  ASSERT_TRUE(cleaned.ok()) << StatusText(cleaned.status());
  ASSERT_EQ(cleaned->released_size(), 3);
  const std::string released_thread = thread_;
  auto live_thread = client_->IssueIds(v1::KIND_THREAD, owner_);
  ASSERT_TRUE(live_thread.ok());
  thread_ = live_thread->front();
  before_ = testing::Snapshot(*client_, owner_);

  v1::IssueRequest r = GoodIssue(v1::KIND_RUN);
  r.set_parent_id(released_thread);
  Check("run under a released thread", client_->Issue(r), kPrecondition,
        "parent_id");
  r.set_parent_id(foreign_thread->front());
  Check("run under another owner's thread", client_->Issue(r), kPrecondition,
        "parent_id");
  r = GoodIssue(v1::KIND_REQUEST);
  r.set_parent_id(run_);
  Check("request under a released run", client_->Issue(r), kPrecondition,
        "parent_id");
  r = GoodIssue(v1::KIND_RUN);
  r.set_parent_id(thread_);
  r.set_connection_id(conn_);
  Check("run through a released connection", client_->Issue(r), kPrecondition,
        "connection_id");
  r.set_connection_id(foreign_conn->front());
  Check("run through another owner's connection", client_->Issue(r),
        kPrecondition, "connection_id");

  v1::OpenContextRequest open;
  *open.mutable_owner() = owner_;
  open.set_connection_id(conn_);
  Check("OpenContext through a released connection", client_->OpenContext(open),
        kPrecondition, "connection_id");
  open.set_connection_id(foreign_conn->front());
  Check("OpenContext through another owner's connection",
        client_->OpenContext(open), kPrecondition, "connection_id");

  // The other owner's records are untouched.
  EXPECT_EQ(testing::VerdictOf(*client_, foreign_thread->front(), other),
            v1::VERDICT_VALID);
  EXPECT_EQ(testing::VerdictOf(*client_, foreign_conn->front(), other),
            v1::VERDICT_VALID);
}

// Same rule for the lease reference: FAILED_PRECONDITION naming lease_id,
// with the field violation like parent_id and connection_id get.
TEST_F(BadRequestsTest, ConnectionOnARevokedLeaseFailsPrecondition) {
  v1::GrantLeaseRequest grant;
  grant.set_holder("gw");
  grant.set_ttl_seconds(60);
  auto lease = client_->GrantLease(grant);
  ASSERT_TRUE(lease.ok()) << StatusText(lease.status());
  v1::RevokeLeaseRequest revoke;
  revoke.set_lease_id(lease->lease_id());
  ASSERT_TRUE(client_->RevokeLease(revoke).ok());
  v1::IssueRequest r = GoodIssue(v1::KIND_CONNECTION);
  r.set_lease_id(lease->lease_id());
  Check("connection on a revoked lease", client_->Issue(r), kPrecondition,
        "lease_id");
  // A well-formed lease ID that was never granted.
  std::string never = lease->lease_id();
  never.back() = never.back() == '0' ? '1' : '0';
  r.set_lease_id(never);
  Check("connection on an unknown lease", client_->Issue(r), kPrecondition,
        "lease_id");
}

TEST_F(BadRequestsTest, NotFoundIsNotABadRequest) {
  // A well-formed lease that does not exist: NOT_FOUND.
  v1::GrantLeaseRequest grant;
  grant.set_holder("gw");
  grant.set_ttl_seconds(60);
  auto lease = client_->GrantLease(grant);
  ASSERT_TRUE(lease.ok());
  v1::RevokeLeaseRequest revoke;
  revoke.set_lease_id(lease->lease_id());
  ASSERT_TRUE(client_->RevokeLease(revoke).ok());
  v1::KeepAliveRequest keep;
  keep.set_lease_id(lease->lease_id());
  EXPECT_EQ(client_->KeepAlive(keep).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->RevokeLease(revoke).status().code(),
            absl::StatusCode::kNotFound);
  // A well-formed ID with no record: NOT_FOUND from Describe.
  std::string unknown = thread_;
  unknown.back() = unknown.back() == '0' ? '1' : '0';
  v1::DescribeRequest describe;
  describe.set_id(unknown);
  EXPECT_EQ(client_->Describe(describe).status().code(),
            absl::StatusCode::kNotFound);
  // A thread ID described as a connection (same bits, other prefix).
  describe.set_id("conn_" + thread_.substr(7));
  EXPECT_EQ(client_->Describe(describe).status().code(),
            absl::StatusCode::kNotFound);
  ExpectUnchanged();
}

// --- Message size ----------------------------------------------------------------

TEST_F(BadRequestsTest, MessageAboveMaxMessageBytesIsResourceExhausted) {
  v1::ValidateRequest r;
  *r.mutable_owner() = owner_;
  r.add_items()->set_id(std::string(70 * 1024, 'x'));
  auto result = client_->Validate(r);
  EXPECT_EQ(absl::StatusCodeToString(result.status().code()),
            absl::StatusCodeToString(kExhausted))
      << StatusText(result.status());
  v1::IssueRequest big = GoodIssue();
  big.set_parent_id(std::string(100 * 1024, 'p'));
  auto issued = client_->Issue(big);
  EXPECT_EQ(absl::StatusCodeToString(issued.status().code()),
            absl::StatusCodeToString(kExhausted))
      << StatusText(issued.status());
  // The server keeps answering.
  EXPECT_TRUE(server_->running());
  ExpectUnchanged();
  auto fresh = client_->IssueIds(v1::KIND_THREAD, owner_);
  EXPECT_TRUE(fresh.ok()) << StatusText(fresh.status());
  // Just under the limit is fine (one item, ~60 KiB: MALFORMED, not echoed).
  r.mutable_items(0)->set_id(std::string(60 * 1024, 'x'));
  auto under = client_->Validate(r);
  ASSERT_TRUE(under.ok()) << StatusText(under.status());
  EXPECT_EQ(VerdictName(under->results(0).verdict()), "VERDICT_MALFORMED");
  EXPECT_TRUE(under->results(0).id().empty());
}

// --- Owner quota (its own server) -------------------------------------------------

TEST(OwnerQuotaTest, QuotaIsResourceExhaustedNamingOwnerAndAtomic) {
  ServerProcess::Options options;
  options.args = {"--owner_quota=5"};
  auto server = ServerProcess::Start(options);
  ASSERT_TRUE(server.ok()) << StatusText(server.status());
  auto client = testing::MakeClient(**server);
  const v1::Owner owner = MakeOwner("acme", "quota");
  auto count_live = [&] {
    auto live = testing::ListAll(*client, owner, /*include_ended=*/false);
    EXPECT_TRUE(live.ok()) << StatusText(live.status());
    return live.ok() ? live->size() : size_t{0};
  };
  auto expect_quota = [&](const absl::Status& s, const std::string& what) {
    SCOPED_TRACE(what);
    EXPECT_EQ(absl::StatusCodeToString(s.code()),
              absl::StatusCodeToString(kExhausted))
        << StatusText(s);
    EXPECT_TRUE(absl::StrContains(std::string(s.message()), "owner"))
        << StatusText(s);
    auto bad = grpc_status::GetBadRequest(s);
    ASSERT_TRUE(bad.has_value()) << StatusText(s);
    ASSERT_EQ(bad->field_violations_size(), 1);
    EXPECT_EQ(bad->field_violations(0).field(), "owner");
  };

  auto four = client->IssueIds(v1::KIND_THREAD, owner, 4);
  ASSERT_TRUE(four.ok()) << StatusText(four.status());
  // 4 + 2 > 5: refused as a whole, nothing recorded.
  expect_quota(client->IssueIds(v1::KIND_THREAD, owner, 2).status(),
               "Issue 2 with 4 held");
  EXPECT_EQ(count_live(), 4u);
  // OpenContext reusing a thread adds 2: refused.
  v1::OpenContextRequest open;
  *open.mutable_owner() = owner;
  open.set_thread_id(four->front());
  expect_quota(client->OpenContext(open).status(), "OpenContext with 4 held");
  EXPECT_EQ(count_live(), 4u);
  // Exactly at the quota is fine.
  auto fifth = client->IssueIds(v1::KIND_CONNECTION, owner);
  ASSERT_TRUE(fifth.ok()) << StatusText(fifth.status());
  expect_quota(client->IssueIds(v1::KIND_THREAD, owner).status(),
               "Issue 1 with 5 held");
  EXPECT_EQ(count_live(), 5u);
  // Another owner (same user_id, other tenant) has its own quota.
  auto other = client->IssueIds(v1::KIND_THREAD, MakeOwner("other", "quota"), 5);
  EXPECT_TRUE(other.ok()) << StatusText(other.status());
  // Released records do not count.
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = owner;
  cleanup.mutable_ids()->add_ids(four->back());
  auto cleaned = client->Cleanup(cleanup);
  ASSERT_TRUE(cleaned.ok()) << StatusText(cleaned.status());
  auto again = client->IssueIds(v1::KIND_THREAD, owner);
  EXPECT_TRUE(again.ok()) << StatusText(again.status());
  EXPECT_EQ(count_live(), 5u);

  EXPECT_EQ(testing::StopServer(**server), 0) << (*server)->Log();
}

}  // namespace
}  // namespace registrar
