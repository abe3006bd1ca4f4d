// The ID strings that broke the old system (substring-matched cleanup,
// embedded user names, two formats, empty IDs) name nothing in Registrar:
// Validate says MALFORMED (or FORGED for a well-formed look-alike), Cleanup
// reports them unknown and releases nothing, Describe refuses them.

#include <cctype>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/time/clock.h"
#include "client/client.h"
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
using ::testing::UnorderedElementsAreArray;

struct Legacy {
  std::string name;  // for messages
  std::string text;
};

// The next lowercase Crockford base32 character after `c` (wrapping).
char NextBase32(char c) {
  static const std::string kAlphabet = "0123456789abcdefghjkmnpqrstvwxyz";
  const size_t i = kAlphabet.find(c);
  return kAlphabet[(i + 1) % kAlphabet.size()];
}

class LegacyIdsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = ServerProcess::Start();
    ASSERT_TRUE(server.ok()) << StatusText(server.status());
    server_ = *std::move(server);
    client_ = testing::MakeClient(*server_);

    // Users whose names look like the legacy IDs' embedded users.
    user_a_ = MakeOwner("acme", "user_a");
    user_b_ = MakeOwner("acme", "user_b");
    for (const v1::Owner* owner : {&user_a_, &user_b_}) {
      auto conn = client_->IssueIds(v1::KIND_CONNECTION, *owner);
      ASSERT_TRUE(conn.ok()) << StatusText(conn.status());
      v1::OpenContextRequest open;
      *open.mutable_owner() = *owner;
      open.set_connection_id(conn->front());
      auto ctx = client_->OpenContext(open);
      ASSERT_TRUE(ctx.ok()) << StatusText(ctx.status());
      std::vector<std::string>& ids = owner == &user_a_ ? a_ids_ : b_ids_;
      ids = {conn->front(), ctx->thread_id(), ctx->run_id(), ctx->request_id()};
    }
    real_thread_ = a_ids_[1];

    legacy_ = {
        {"user_a_ws_1_xyz", "user_a_ws_1_xyz"},
        {"user_b_thread_2_abc", "user_b_thread_2_abc"},
        {"bare prefix thread_", "thread_"},
        {"old gateway format", "ws_conn_test_use_1757601055956_1_ceecb3c0"},
        {"empty", ""},
        {"10 KB", std::string(10 * 1024, 'a')},
        {"10 KB thread_", "thread_" + std::string(10 * 1024, '0')},
        {"uppercase copy", absl::AsciiStrToUpper(real_thread_)},
        {"uppercase suffix",
         "thread_" + absl::AsciiStrToUpper(real_thread_.substr(7))},
        {"prefix only changed to uppercase",
         "THREAD_" + real_thread_.substr(7)},
        {"real ID with a trailing space", real_thread_ + " "},
        {"real ID with one char removed",
         real_thread_.substr(0, real_thread_.size() - 1)},
        {"real ID with one char added", real_thread_ + "0"},
        {"first suffix char above 7", "thread_8" + real_thread_.substr(8)},
        {"unknown prefix", "ws_" + real_thread_.substr(7)},
        {"embedded NUL", std::string("thread_\0", 8) + real_thread_.substr(8)},
    };
  }

  void TearDown() override {
    if (server_ != nullptr) {
      EXPECT_EQ(testing::StopServer(*server_), 0) << server_->Log();
    }
  }

  // `real_thread_` with its last character changed: still 26 Crockford
  // characters, version and variant intact (they are not in the last
  // character), so it parses; only the tag differs.
  std::string OneCharChanged() const {
    std::string id = real_thread_;
    id.back() = NextBase32(id.back());
    return id;
  }

  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Client> client_;
  v1::Owner user_a_, user_b_;
  std::vector<std::string> a_ids_, b_ids_;
  std::string real_thread_;
  std::vector<Legacy> legacy_;
};

TEST_F(LegacyIdsTest, LegacyStringsAreMalformedForEveryOwnerAndKind) {
  for (const v1::Owner* owner : {&user_a_, &user_b_}) {
    for (v1::Kind kind :
         {v1::KIND_UNSPECIFIED, v1::KIND_THREAD, v1::KIND_CONNECTION}) {
      v1::ValidateRequest request;
      *request.mutable_owner() = *owner;
      for (const Legacy& l : legacy_) {
        v1::ValidateItem* item = request.add_items();
        item->set_id(l.text);
        item->set_expected_kind(kind);
      }
      auto response = client_->Validate(request);
      ASSERT_TRUE(response.ok()) << StatusText(response.status());
      ASSERT_EQ(response->results_size(), static_cast<int>(legacy_.size()));
      for (size_t i = 0; i < legacy_.size(); ++i) {
        EXPECT_EQ(VerdictName(response->results(i).verdict()),
                  "VERDICT_MALFORMED")
            << legacy_[i].name << " claimed by " << owner->user_id()
            << " expecting " << v1::Kind_Name(kind);
        // Echoed unless oversized (the reply never amplifies a request).
        if (legacy_[i].text.size() <= 64) {
          EXPECT_EQ(response->results(i).id(), legacy_[i].text)
              << legacy_[i].name;
        } else {
          EXPECT_LE(response->results(i).id().size(), 64u) << legacy_[i].name;
        }
        EXPECT_FALSE(response->results(i).has_record()) << legacy_[i].name;
      }
    }
  }
}

// Non-UTF-8 bytes ("\xff\xfe...") in an ID. The C++ client sends them (it
// only logs that a proto3 `string` field holds invalid UTF-8), and the
// server's protobuf runtime refuses to parse such a request before the
// service sees it. The contract allows two answers: the item's verdict is
// MALFORMED (Validate never fails a batch for one bad ID), or, if the
// request cannot be parsed at all, the call fails with INVALID_ARGUMENT
// ("INVALID_ARGUMENT for malformed requests"). Anything else (UNIMPLEMENTED
// claims the method does not exist; INTERNAL blames the server) is wrong.
TEST_F(LegacyIdsTest, NonUtf8IdIsMalformedOrRejectedAsInvalidArgument) {
  const std::string non_utf8 =
      "\xff\xfe"
      "thread_"
      "\xc3\x28"
      "\x80";
  v1::ValidateRequest request;
  *request.mutable_owner() = user_a_;
  request.add_items()->set_id(non_utf8);
  request.add_items()->set_id(real_thread_);
  auto response = client_->Validate(request);
  if (response.ok()) {
    ASSERT_EQ(response->results_size(), 2);
    EXPECT_EQ(VerdictName(response->results(0).verdict()), "VERDICT_MALFORMED");
    EXPECT_EQ(VerdictName(response->results(1).verdict()), "VERDICT_VALID");
  } else {
    EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument)
        << "Validate with a non-UTF-8 item: " << StatusText(response.status());
  }

  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = user_a_;
  cleanup.mutable_ids()->add_ids(non_utf8);
  auto cleaned = client_->Cleanup(cleanup);
  if (cleaned.ok()) {
    EXPECT_THAT(cleaned->released(), IsEmpty());
    EXPECT_THAT(cleaned->refused(), IsEmpty());
  } else {
    EXPECT_EQ(cleaned.status().code(), absl::StatusCode::kInvalidArgument)
        << "Cleanup with a non-UTF-8 id: " << StatusText(cleaned.status());
  }

  v1::DescribeRequest describe;
  describe.set_id(non_utf8);
  auto described = client_->Describe(describe);
  EXPECT_EQ(described.status().code(), absl::StatusCode::kInvalidArgument)
      << "Describe of a non-UTF-8 id: " << StatusText(described.status());

  // Nothing changed, the server still answers.
  EXPECT_EQ(testing::VerdictOf(*client_, real_thread_, user_a_),
            v1::VERDICT_VALID);
  EXPECT_EQ(testing::Snapshot(*client_, user_a_).size(), 4u);
}

// A real ID with one character changed still parses (TypeID-shaped, version
// and variant intact): it is FORGED, never VALID and never the original.
TEST_F(LegacyIdsTest, RealIdWithOneCharChangedIsForged) {
  const std::string changed = OneCharChanged();
  ASSERT_NE(changed, real_thread_);
  for (const v1::Owner* owner : {&user_a_, &user_b_}) {
    EXPECT_EQ(VerdictName(testing::VerdictOf(*client_, changed, *owner)),
              "VERDICT_FORGED")
        << "claimed by " << owner->user_id();
  }
  // And each of the 26 suffix positions, changed in turn: never VALID, and
  // never NOT_OWNER/RELEASED (it must not resolve to some other record).
  for (size_t pos = 7; pos < real_thread_.size(); ++pos) {
    std::string id = real_thread_;
    id[pos] = NextBase32(id[pos]);
    const v1::Verdict v = testing::VerdictOf(*client_, id, user_a_);
    EXPECT_TRUE(v == v1::VERDICT_MALFORMED || v == v1::VERDICT_FORGED)
        << id << " (position " << pos << "): " << VerdictName(v);
  }
}

// A real ID under another kind's prefix (same 128 bits): the record says
// it is a thread, so as a connection it is FORGED; it names nothing to
// Cleanup or Describe.
TEST_F(LegacyIdsTest, RelabeledRealIdIsForgedAndNamesNothing) {
  const std::string relabeled = "conn_" + real_thread_.substr(7);
  EXPECT_EQ(VerdictName(testing::VerdictOf(*client_, relabeled, user_a_)),
            "VERDICT_FORGED");
  EXPECT_EQ(VerdictName(testing::VerdictOf(*client_, relabeled, user_a_,
                                           v1::KIND_CONNECTION)),
            "VERDICT_FORGED");
  EXPECT_EQ(VerdictName(testing::VerdictOf(*client_, relabeled, user_a_,
                                           v1::KIND_THREAD)),
            "VERDICT_WRONG_KIND");
  EXPECT_EQ(VerdictName(testing::VerdictOf(*client_, relabeled, user_b_)),
            "VERDICT_FORGED");
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = user_a_;
  cleanup.mutable_ids()->add_ids(relabeled);
  cleanup.mutable_ids()->add_ids("run_" + real_thread_.substr(7));
  auto response = client_->Cleanup(cleanup);
  ASSERT_TRUE(response.ok()) << StatusText(response.status());
  EXPECT_THAT(response->released(), IsEmpty());
  EXPECT_THAT(response->refused(), IsEmpty());
  EXPECT_EQ(response->unknown_size(), 2);
  v1::CleanupRequest by_conn;
  *by_conn.mutable_owner() = user_a_;
  by_conn.set_connection_id(relabeled);
  auto conn_response = client_->Cleanup(by_conn);
  ASSERT_TRUE(conn_response.ok()) << StatusText(conn_response.status());
  EXPECT_THAT(conn_response->released(), IsEmpty());
  EXPECT_THAT(conn_response->unknown(), UnorderedElementsAreArray({relabeled}));
  v1::DescribeRequest describe;
  describe.set_id(relabeled);
  EXPECT_EQ(client_->Describe(describe).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(testing::VerdictOf(*client_, real_thread_, user_a_),
            v1::VERDICT_VALID);
}

TEST_F(LegacyIdsTest, CleanupWithLegacyStringsReleasesNothing) {
  const auto before_a = testing::Snapshot(*client_, user_a_);
  const auto before_b = testing::Snapshot(*client_, user_b_);
  ASSERT_EQ(before_a.size(), 4u);
  ASSERT_EQ(before_b.size(), 4u);

  // user_a cleans up with every legacy string (the old system's
  // "cleanup user_a_ws_1_xyz" also ended user_b_thread_2_abc).
  for (const v1::Owner* owner : {&user_a_, &user_b_}) {
    v1::CleanupRequest cleanup;
    *cleanup.mutable_owner() = *owner;
    std::vector<std::string> echoed;
    for (const Legacy& l : legacy_) {
      cleanup.mutable_ids()->add_ids(l.text);
      if (l.text.size() <= 64) echoed.push_back(l.text);
    }
    cleanup.mutable_ids()->add_ids(OneCharChanged());
    echoed.push_back(OneCharChanged());
    auto response = client_->Cleanup(cleanup);
    ASSERT_TRUE(response.ok()) << StatusText(response.status());
    EXPECT_THAT(response->released(), IsEmpty());
    EXPECT_THAT(response->already_ended(), IsEmpty());
    EXPECT_THAT(response->refused(), IsEmpty());
    // Oversized strings are not echoed back; everything else is unknown.
    EXPECT_THAT(response->unknown(), UnorderedElementsAreArray(echoed));
  }

  EXPECT_EQ(testing::Snapshot(*client_, user_a_), before_a);
  EXPECT_EQ(testing::Snapshot(*client_, user_b_), before_b);
  for (const std::string& id : a_ids_) {
    EXPECT_EQ(testing::VerdictOf(*client_, id, user_a_), v1::VERDICT_VALID)
        << id;
  }
  for (const std::string& id : b_ids_) {
    EXPECT_EQ(testing::VerdictOf(*client_, id, user_b_), v1::VERDICT_VALID)
        << id;
  }
}

TEST_F(LegacyIdsTest, CleanupByLegacyConnectionIdIsRejected) {
  const auto before = testing::Snapshot(*client_, user_a_);
  for (const std::string& text :
       {std::string("user_a_ws_1_xyz"),
        std::string("ws_conn_test_use_1757601055956_1_ceecb3c0"),
        std::string("thread_"), real_thread_}) {
    v1::CleanupRequest cleanup;
    *cleanup.mutable_owner() = user_a_;
    cleanup.set_connection_id(text);
    auto response = client_->Cleanup(cleanup);
    EXPECT_EQ(response.status().code(), absl::StatusCode::kInvalidArgument)
        << text << ": " << StatusText(response.status());
  }
  EXPECT_EQ(testing::Snapshot(*client_, user_a_), before);
}

TEST_F(LegacyIdsTest, DescribeRefusesLegacyStrings) {
  for (const Legacy& l : legacy_) {
    v1::DescribeRequest describe;
    describe.set_id(l.text);
    auto response = client_->Describe(describe);
    const absl::StatusCode code = response.status().code();
    EXPECT_TRUE(code == absl::StatusCode::kInvalidArgument ||
                code == absl::StatusCode::kNotFound)
        << l.name << ": " << StatusText(response.status());
  }
  // The well-formed look-alike has no record.
  v1::DescribeRequest describe;
  describe.set_id(OneCharChanged());
  auto response = client_->Describe(describe);
  EXPECT_EQ(response.status().code(), absl::StatusCode::kNotFound)
      << StatusText(response.status());
  // The real one does.
  describe.set_id(real_thread_);
  EXPECT_TRUE(client_->Describe(describe).ok());
}

TEST_F(LegacyIdsTest, LegacyThreadIdInOpenContextMintsAFreshThread) {
  for (const std::string& text :
       {std::string("user_b_thread_2_abc"), std::string("thread_"),
        absl::AsciiStrToUpper(b_ids_[1]), OneCharChanged(), b_ids_[1]}) {
    v1::OpenContextRequest open;
    *open.mutable_owner() = user_a_;
    open.set_thread_id(text);
    auto ctx = client_->OpenContext(open);
    ASSERT_TRUE(ctx.ok()) << text << ": " << StatusText(ctx.status());
    EXPECT_FALSE(ctx->thread_reused()) << text;
    EXPECT_NE(ctx->thread_id(), text);
    EXPECT_NE(ctx->thread_id(), real_thread_);
    EXPECT_EQ(testing::VerdictOf(*client_, ctx->thread_id(), user_a_),
              v1::VERDICT_VALID);
  }
  // user_b's thread was not touched or adopted.
  EXPECT_EQ(testing::VerdictOf(*client_, b_ids_[1], user_b_),
            v1::VERDICT_VALID);
}

TEST_F(LegacyIdsTest, LegacyParentIdIsInvalidArgument) {
  const auto before = testing::Snapshot(*client_, user_a_);
  for (const std::string& text :
       {std::string("user_a_ws_1_xyz"), std::string("thread_"),
        absl::AsciiStrToUpper(real_thread_)}) {
    IssueOptions options;
    options.parent_id = text;
    auto ids = client_->IssueIds(v1::KIND_RUN, user_a_, 1, options);
    EXPECT_EQ(ids.status().code(), absl::StatusCode::kInvalidArgument)
        << text << ": " << StatusText(ids.status());
    auto bad = grpc_status::GetBadRequest(ids.status());
    ASSERT_TRUE(bad.has_value()) << text;
    ASSERT_GE(bad->field_violations_size(), 1);
    EXPECT_EQ(bad->field_violations(0).field(), "parent_id");
  }
  EXPECT_EQ(testing::Snapshot(*client_, user_a_), before);
}

// Once a released record's tombstone is dropped (--tombstone_retention),
// its genuine ID is UNKNOWN to its owner and FORGED to anyone else: still
// never VALID, never another owner's.
TEST(TombstoneTest, ReleasedIdIsUnknownAfterRetentionAndForgedForOthers) {
  ServerProcess::Options options;
  options.args = {"--tombstone_retention=1s", "--tick_interval=50ms"};
  auto server = ServerProcess::Start(options);
  ASSERT_TRUE(server.ok()) << StatusText(server.status());
  auto client = testing::MakeClient(**server);
  const v1::Owner alice = MakeOwner("acme", "alice");
  const v1::Owner bob = MakeOwner("acme", "bob");
  auto ids = client->IssueIds(v1::KIND_THREAD, alice, 2);
  ASSERT_TRUE(ids.ok()) << StatusText(ids.status());
  const std::string gone = (*ids)[0];
  const std::string kept = (*ids)[1];
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = alice;
  cleanup.mutable_ids()->add_ids(gone);
  ASSERT_TRUE(client->Cleanup(cleanup).ok());
  EXPECT_EQ(VerdictName(testing::VerdictOf(*client, gone, alice)),
            "VERDICT_RELEASED");

  // The server drops the tombstone on its ticker once retention (1 s) has
  // passed, in its own process: poll it (bounded).
  EXPECT_TRUE(testing::PollUntil(
      [&] {
        return testing::VerdictOf(*client, gone, alice) == v1::VERDICT_UNKNOWN;
      },
      absl::Seconds(10)))
      << "the tombstone was not dropped";
  EXPECT_EQ(VerdictName(testing::VerdictOf(*client, gone, bob)),
            "VERDICT_FORGED");
  EXPECT_EQ(VerdictName(testing::VerdictOf(*client, kept, alice)),
            "VERDICT_VALID");
  v1::DescribeRequest describe;
  describe.set_id(gone);
  EXPECT_EQ(client->Describe(describe).status().code(),
            absl::StatusCode::kNotFound);
  auto again = client->Cleanup(cleanup);
  ASSERT_TRUE(again.ok()) << StatusText(again.status());
  EXPECT_THAT(again->released(), IsEmpty());
  EXPECT_THAT(again->unknown(), UnorderedElementsAreArray({gone}));
  auto listed = testing::ListAll(*client, alice, /*include_ended=*/true);
  ASSERT_TRUE(listed.ok()) << StatusText(listed.status());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].id(), kept);
  // Reusing the dropped thread in OpenContext mints a new one.
  v1::OpenContextRequest open;
  *open.mutable_owner() = alice;
  open.set_thread_id(gone);
  auto ctx = client->OpenContext(open);
  ASSERT_TRUE(ctx.ok()) << StatusText(ctx.status());
  EXPECT_FALSE(ctx->thread_reused());
  EXPECT_NE(ctx->thread_id(), gone);

  EXPECT_EQ(testing::StopServer(**server), 0) << (*server)->Log();
}

}  // namespace
}  // namespace registrar
