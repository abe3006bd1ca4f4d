#include "service/api/request_validation.h"

#include <functional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/field_error.h"

namespace registrar {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;

v1::Owner MakeOwner(std::string tenant, std::string user) {
  v1::Owner o;
  o.set_tenant(std::move(tenant));
  o.set_user_id(std::move(user));
  return o;
}

v1::IssueRequest GoodIssue() {
  v1::IssueRequest r;
  r.set_kind(v1::KIND_THREAD);
  *r.mutable_owner() = MakeOwner("acme", "alice");
  r.set_count(1);
  return r;
}

// Asserts `s` failed with `code` naming `field`, and the message names it.
void ExpectFieldError(const absl::Status& s, absl::StatusCode code,
                      const std::string& field) {
  EXPECT_EQ(s.code(), code) << std::string(s.message());
  EXPECT_THAT(ErrorField(s), Optional(field)) << std::string(s.message());
  EXPECT_THAT(std::string(s.message()), HasSubstr(field));
}

TEST(PrintableUtf8Test, AcceptsTextAndRejectsControlAndBrokenBytes) {
  EXPECT_TRUE(IsPrintableUtf8("alice"));
  EXPECT_TRUE(IsPrintableUtf8("Zoë 日本 🙂"));
  EXPECT_FALSE(IsPrintableUtf8(std::string("a\0b", 3)));
  EXPECT_FALSE(IsPrintableUtf8("tab\there"));
  EXPECT_FALSE(IsPrintableUtf8("new\nline"));
  EXPECT_FALSE(IsPrintableUtf8("del\x7f"));
  EXPECT_FALSE(IsPrintableUtf8("\xc2\x85"));          // C1 control (NEL)
  EXPECT_FALSE(IsPrintableUtf8("\xff\xfe"));          // not UTF-8
  EXPECT_FALSE(IsPrintableUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsPrintableUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsPrintableUtf8("\xf4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsPrintableUtf8("\xe6\x97"));          // truncated
}

TEST(CheckIssueTest, AcceptsAGoodRequest) {
  EXPECT_TRUE(CheckIssue(GoodIssue(), ApiLimits{}).ok());
}

TEST(CheckIssueTest, RejectsUnspecifiedAndUnknownKinds) {
  v1::IssueRequest r = GoodIssue();
  r.set_kind(v1::KIND_UNSPECIFIED);
  ExpectFieldError(CheckIssue(r, ApiLimits{}),
                   absl::StatusCode::kInvalidArgument, "kind");
  r.set_kind(static_cast<v1::Kind>(99));
  ExpectFieldError(CheckIssue(r, ApiLimits{}),
                   absl::StatusCode::kInvalidArgument, "kind");
}

TEST(CheckIssueTest, OwnerFieldsAreRequiredBoundedAndPrintable) {
  const ApiLimits limits;
  struct Case {
    std::string tenant, user, field;
  } cases[] = {
      {"", "alice", "owner.tenant"},
      {"acme", "", "owner.user_id"},
      {std::string(257, 't'), "alice", "owner.tenant"},
      {"acme", std::string(257, 'u'), "owner.user_id"},
      {"acme", "al\x01ice", "owner.user_id"},
      {"ac\xffme", "alice", "owner.tenant"},
  };
  for (const Case& c : cases) {
    v1::IssueRequest r = GoodIssue();
    *r.mutable_owner() = MakeOwner(c.tenant, c.user);
    ExpectFieldError(CheckIssue(r, limits), absl::StatusCode::kInvalidArgument,
                     c.field);
  }
  v1::IssueRequest at_limit = GoodIssue();
  *at_limit.mutable_owner() = MakeOwner("acme", std::string(256, 'u'));
  EXPECT_TRUE(CheckIssue(at_limit, limits).ok());
}

TEST(CheckIssueTest, CountAboveMaxBatchIsResourceExhausted) {
  ApiLimits limits;
  limits.max_batch = 10;
  v1::IssueRequest r = GoodIssue();
  r.set_count(10);
  EXPECT_TRUE(CheckIssue(r, limits).ok());
  r.set_count(11);
  ExpectFieldError(CheckIssue(r, limits), absl::StatusCode::kResourceExhausted,
                   "count");
  EXPECT_THAT(std::string(CheckIssue(r, limits).message()), HasSubstr("10"));
}

// Every ID field of every request, checked with an ID of `size` bytes in
// that field (and valid values elsewhere).
struct IdFieldCase {
  std::string field;
  std::function<absl::Status(const std::string& id, const ApiLimits&)> check;
};

std::vector<IdFieldCase> IdFieldCases() {
  return {
      {"parent_id",
       [](const std::string& id, const ApiLimits& l) {
         v1::IssueRequest r = GoodIssue();
         r.set_parent_id(id);
         return CheckIssue(r, l);
       }},
      {"connection_id",
       [](const std::string& id, const ApiLimits& l) {
         v1::IssueRequest r = GoodIssue();
         r.set_connection_id(id);
         return CheckIssue(r, l);
       }},
      {"lease_id",
       [](const std::string& id, const ApiLimits& l) {
         v1::IssueRequest r = GoodIssue();
         r.set_lease_id(id);
         return CheckIssue(r, l);
       }},
      {"thread_id",
       [](const std::string& id, const ApiLimits& l) {
         v1::OpenContextRequest r;
         *r.mutable_owner() = MakeOwner("acme", "alice");
         r.set_thread_id(id);
         return CheckOpenContext(r, l);
       }},
      {"connection_id",
       [](const std::string& id, const ApiLimits& l) {
         v1::OpenContextRequest r;
         *r.mutable_owner() = MakeOwner("acme", "alice");
         r.set_connection_id(id);
         return CheckOpenContext(r, l);
       }},
      {"connection_id",
       [](const std::string& id, const ApiLimits& l) {
         v1::CleanupRequest r;
         *r.mutable_owner() = MakeOwner("acme", "alice");
         r.set_connection_id(id);
         return CheckCleanup(r, l);
       }},
      // KeepAlive and RevokeLease check their lease_id with CheckLeaseId.
      {"lease_id", [](const std::string& id,
                      const ApiLimits& l) { return CheckLeaseId(id, l); }},
      {"id",
       [](const std::string& id, const ApiLimits& l) {
         v1::DescribeRequest r;
         r.set_id(id);
         return CheckDescribe(r, l);
       }},
  };
}

TEST(RequestValidationTest, IdFieldsAreLengthCapped) {
  const std::vector<IdFieldCase> cases = IdFieldCases();
  ASSERT_EQ(cases.size(), 8u);
  for (const uint32_t limit : {64u, 10u}) {
    ApiLimits limits;
    limits.max_id_bytes = limit;
    for (const IdFieldCase& c : cases) {
      SCOPED_TRACE(c.field + " limit " + std::to_string(limit));
      EXPECT_TRUE(c.check(std::string(limit, 'a'), limits).ok());
      const absl::Status over = c.check(std::string(limit + 1, 'a'), limits);
      ExpectFieldError(over, absl::StatusCode::kInvalidArgument, c.field);
      EXPECT_THAT(std::string(over.message()),
                  HasSubstr(absl::StrCat("limit is ", limit)));
    }
  }
}

// The two lists of IDs are not capped per ID, by design: an oversized ID in
// Validate is a verdict (INVALID) and in Cleanup an `unknown`, like any text
// that is not an ID; the lists themselves are bounded by max_batch.
TEST(RequestValidationTest, IdListsAreBoundedByBatchNotPerId) {
  ApiLimits limits;
  limits.max_batch = 2;
  v1::ValidateRequest validate;
  *validate.mutable_owner() = MakeOwner("acme", "alice");
  validate.add_items()->set_id(std::string(10'000, 'x'));
  EXPECT_TRUE(CheckValidate(validate, limits).ok());
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = MakeOwner("acme", "alice");
  cleanup.mutable_ids()->add_ids(std::string(10'000, 'x'));
  EXPECT_TRUE(CheckCleanup(cleanup, limits).ok());
  for (int i = 0; i < 2; ++i) cleanup.mutable_ids()->add_ids("x");
  ExpectFieldError(CheckCleanup(cleanup, limits),
                   absl::StatusCode::kResourceExhausted, "ids.ids");
}

TEST(CheckIssueTest, LabelsAreBounded) {
  ApiLimits limits;
  limits.max_labels = 2;
  v1::IssueRequest r = GoodIssue();
  (*r.mutable_labels())["a"] = "1";
  (*r.mutable_labels())["b"] = "2";
  EXPECT_TRUE(CheckIssue(r, limits).ok());
  (*r.mutable_labels())["c"] = "3";
  ExpectFieldError(CheckIssue(r, limits), absl::StatusCode::kInvalidArgument,
                   "labels");

  v1::IssueRequest long_value = GoodIssue();
  (*long_value.mutable_labels())["k"] = std::string(257, 'v');
  ExpectFieldError(CheckIssue(long_value, ApiLimits{}),
                   absl::StatusCode::kInvalidArgument, "labels[\"k\"]");
  v1::IssueRequest empty_key = GoodIssue();
  (*empty_key.mutable_labels())[""] = "v";
  ExpectFieldError(CheckIssue(empty_key, ApiLimits{}),
                   absl::StatusCode::kInvalidArgument, "labels[key]");
}

TEST(CheckValidateTest, BatchLimitOwnersAndKinds) {
  ApiLimits limits;
  limits.max_batch = 2;
  v1::ValidateRequest r;
  *r.mutable_owner() = MakeOwner("acme", "alice");
  r.add_items()->set_id("x");
  r.add_items()->set_id(std::string(10000, 'x'));  // a bad ID is a verdict
  EXPECT_TRUE(CheckValidate(r, limits).ok());
  r.add_items()->set_id("y");
  ExpectFieldError(CheckValidate(r, limits),
                   absl::StatusCode::kResourceExhausted, "items");

  v1::ValidateRequest no_owner;
  no_owner.add_items()->set_id("x");
  ExpectFieldError(CheckValidate(no_owner, limits),
                   absl::StatusCode::kInvalidArgument, "items[0].owner");

  v1::ValidateRequest bad_kind;
  *bad_kind.mutable_owner() = MakeOwner("acme", "alice");
  bad_kind.add_items()->set_id("x");
  bad_kind.add_items()->set_expected_kind(static_cast<v1::Kind>(42));
  ExpectFieldError(CheckValidate(bad_kind, limits),
                   absl::StatusCode::kInvalidArgument,
                   "items[1].expected_kind");

  v1::ValidateRequest bad_item_owner;
  *bad_item_owner.mutable_owner() = MakeOwner("acme", "alice");
  *bad_item_owner.add_items()->mutable_owner() = MakeOwner("acme", "");
  ExpectFieldError(CheckValidate(bad_item_owner, limits),
                   absl::StatusCode::kInvalidArgument,
                   "items[0].owner.user_id");

  v1::ValidateRequest empty;
  *empty.mutable_owner() = MakeOwner("acme", "alice");
  ExpectFieldError(CheckValidate(empty, limits),
                   absl::StatusCode::kInvalidArgument, "items");
}

TEST(CheckCleanupTest, NeedsATargetAndBoundsIds) {
  ApiLimits limits;
  limits.max_batch = 1;
  v1::CleanupRequest r;
  *r.mutable_owner() = MakeOwner("acme", "alice");
  ExpectFieldError(CheckCleanup(r, limits), absl::StatusCode::kInvalidArgument,
                   "target");
  r.mutable_ids()->add_ids("a");
  EXPECT_TRUE(CheckCleanup(r, limits).ok());
  r.mutable_ids()->add_ids("b");
  ExpectFieldError(CheckCleanup(r, limits),
                   absl::StatusCode::kResourceExhausted, "ids.ids");
  r.set_all_owned(false);
  ExpectFieldError(CheckCleanup(r, limits), absl::StatusCode::kInvalidArgument,
                   "all_owned");
  r.set_connection_id("");
  ExpectFieldError(CheckCleanup(r, limits), absl::StatusCode::kInvalidArgument,
                   "connection_id");
  r.set_all_owned(true);
  r.set_reason(std::string(300, 'r'));
  ExpectFieldError(CheckCleanup(r, limits), absl::StatusCode::kInvalidArgument,
                   "reason");
}

TEST(CheckLeaseTest, HolderTtlAndLeaseId) {
  v1::GrantLeaseRequest g;
  g.set_ttl_seconds(10);
  ExpectFieldError(CheckGrantLease(g, ApiLimits{}),
                   absl::StatusCode::kInvalidArgument, "holder");
  g.set_holder("gw-1");
  EXPECT_TRUE(CheckGrantLease(g, ApiLimits{}).ok());
  g.set_ttl_seconds(0);
  ExpectFieldError(CheckGrantLease(g, ApiLimits{}),
                   absl::StatusCode::kInvalidArgument, "ttl_seconds");
  ExpectFieldError(CheckLeaseId("", ApiLimits{}),
                   absl::StatusCode::kInvalidArgument, "lease_id");
  ExpectFieldError(CheckLeaseId(std::string(100, 'l'), ApiLimits{}),
                   absl::StatusCode::kInvalidArgument, "lease_id");
}

TEST(CheckListOwnedTest, KindAndPageToken) {
  v1::ListOwnedRequest r;
  *r.mutable_owner() = MakeOwner("acme", "alice");
  EXPECT_TRUE(CheckListOwned(r, ApiLimits{}).ok());
  r.set_kind(static_cast<v1::Kind>(7));
  ExpectFieldError(CheckListOwned(r, ApiLimits{}),
                   absl::StatusCode::kInvalidArgument, "kind");
  r.set_kind(v1::KIND_RUN);
  r.set_page_token(std::string(65, 'p'));
  ExpectFieldError(CheckListOwned(r, ApiLimits{}),
                   absl::StatusCode::kInvalidArgument, "page_token");
}

}  // namespace
}  // namespace registrar
