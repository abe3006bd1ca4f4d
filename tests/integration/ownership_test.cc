// Ownership is a record, never a string pattern: two users of one tenant and
// a user of another tenant with the same user_id each hold a lease,
// connections, threads, runs and requests; every cross-owner check answers
// NOT_OWNER and every cross-owner cleanup is refused, while an owner's own
// cleanup releases exactly its records.

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/id/id.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_util.h"

namespace registrar {
namespace {

using ::registrar::testing::MakeOwner;
using ::registrar::testing::OwnerText;
using ::registrar::testing::ServerProcess;
using ::registrar::testing::StatusText;
using ::registrar::testing::ToSet;
using ::registrar::testing::VerdictName;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;

// Everything one user opened:
//   lease ── conn1 ── OpenContext → thread, run1, req1
//                 └── Issue run1b (parent thread, via conn1),
//                     Issue req1b (parent run1b, via conn1)
//            conn2 ── OpenContext(thread) → thread (reused), run2, req2
struct UserWorld {
  v1::Owner owner;
  std::string lease;
  std::string conn1, conn2;
  std::string thread;
  std::string run1, req1, run1b, req1b;
  std::string run2, req2;

  std::vector<std::string> All() const {
    return {conn1, conn2, thread, run1, req1, run1b, req1b, run2, req2};
  }
  // What releasing conn1 must end: conn1 and the runs/requests opened
  // through it (the thread outlives it).
  std::vector<std::string> OpenedThroughConn1() const {
    return {conn1, run1, req1, run1b, req1b};
  }
  // What must stay live after conn1 is released.
  std::vector<std::string> NotThroughConn1() const {
    return {conn2, thread, run2, req2};
  }
};

v1::Kind KindOfId(const std::string& id) {
  if (id.rfind("thread_", 0) == 0) return v1::KIND_THREAD;
  if (id.rfind("run_", 0) == 0) return v1::KIND_RUN;
  if (id.rfind("req_", 0) == 0) return v1::KIND_REQUEST;
  if (id.rfind("conn_", 0) == 0) return v1::KIND_CONNECTION;
  return v1::KIND_UNSPECIFIED;
}

class OwnershipTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto server = ServerProcess::Start();
    ASSERT_TRUE(server.ok()) << StatusText(server.status());
    server_ = *std::move(server);
    client_ = testing::MakeClient(*server_);
    ASSERT_NO_FATAL_FAILURE(Build(MakeOwner("acme", "alice"), "gw-a", &a_));
    ASSERT_NO_FATAL_FAILURE(Build(MakeOwner("acme", "bob"), "gw-b", &b_));
    // Same user_id as A, other tenant: a different owner.
    ASSERT_NO_FATAL_FAILURE(Build(MakeOwner("other", "alice"), "gw-c", &c_));
  }

  void TearDown() override {
    if (server_ != nullptr) {
      EXPECT_EQ(testing::StopServer(*server_), 0) << server_->Log();
    }
  }

  void Build(const v1::Owner& owner, const std::string& holder, UserWorld* w) {
    w->owner = owner;
    v1::GrantLeaseRequest grant;
    grant.set_holder(holder);
    grant.set_ttl_seconds(600);
    auto lease = client_->GrantLease(grant);
    ASSERT_TRUE(lease.ok()) << StatusText(lease.status());
    w->lease = lease->lease_id();

    IssueOptions conn_options;
    conn_options.lease_id = w->lease;
    auto conns = client_->IssueIds(v1::KIND_CONNECTION, owner, 2, conn_options);
    ASSERT_TRUE(conns.ok()) << StatusText(conns.status());
    w->conn1 = (*conns)[0];
    w->conn2 = (*conns)[1];

    v1::OpenContextRequest open;
    *open.mutable_owner() = owner;
    open.set_connection_id(w->conn1);
    auto ctx1 = client_->OpenContext(open);
    ASSERT_TRUE(ctx1.ok()) << StatusText(ctx1.status());
    EXPECT_FALSE(ctx1->thread_reused());
    w->thread = ctx1->thread_id();
    w->run1 = ctx1->run_id();
    w->req1 = ctx1->request_id();

    IssueOptions run_options;
    run_options.parent_id = w->thread;
    run_options.connection_id = w->conn1;
    auto run = client_->IssueIds(v1::KIND_RUN, owner, 1, run_options);
    ASSERT_TRUE(run.ok()) << StatusText(run.status());
    w->run1b = run->front();
    IssueOptions req_options;
    req_options.parent_id = w->run1b;
    req_options.connection_id = w->conn1;
    auto req = client_->IssueIds(v1::KIND_REQUEST, owner, 1, req_options);
    ASSERT_TRUE(req.ok()) << StatusText(req.status());
    w->req1b = req->front();

    open.set_connection_id(w->conn2);
    open.set_thread_id(w->thread);
    auto ctx2 = client_->OpenContext(open);
    ASSERT_TRUE(ctx2.ok()) << StatusText(ctx2.status());
    EXPECT_TRUE(ctx2->thread_reused());
    EXPECT_EQ(ctx2->thread_id(), w->thread);
    w->run2 = ctx2->run_id();
    w->req2 = ctx2->request_id();
  }

  // Verdict of each of `ids` claimed by `claimer`, with and without the
  // right expected_kind, in one batch; expects `want` for all of them.
  void ExpectVerdicts(const v1::Owner& claimer,
                      const std::vector<std::string>& ids, v1::Verdict want,
                      const std::string& what) {
    v1::ValidateRequest request;
    *request.mutable_owner() = claimer;
    // Records are returned only to their owner: never with NOT_OWNER.
    request.set_include_records(true);
    for (const std::string& id : ids) {
      v1::ValidateItem* item = request.add_items();
      item->set_id(id);
      item = request.add_items();
      item->set_id(id);
      item->set_expected_kind(KindOfId(id));
    }
    auto response = client_->Validate(request);
    ASSERT_TRUE(response.ok()) << StatusText(response.status());
    ASSERT_EQ(response->results_size(), request.items_size());
    for (int i = 0; i < response->results_size(); ++i) {
      EXPECT_EQ(response->results(i).id(), request.items(i).id());
      EXPECT_EQ(VerdictName(response->results(i).verdict()), VerdictName(want))
          << what << ": " << request.items(i).id() << " claimed by "
          << OwnerText(claimer) << " (expected_kind "
          << v1::Kind_Name(request.items(i).expected_kind()) << ")";
      const v1::ValidateResult& result = response->results(i);
      if (result.verdict() == v1::VERDICT_NOT_OWNER) {
        EXPECT_FALSE(result.has_record())
            << what << ": another owner's record leaked to "
            << OwnerText(claimer) << ": " << result.record().ShortDebugString();
      } else if (result.verdict() == v1::VERDICT_VALID ||
                 result.verdict() == v1::VERDICT_RELEASED) {
        EXPECT_TRUE(result.has_record()) << what << ": " << result.id();
        EXPECT_EQ(result.record().id(), result.id());
        EXPECT_EQ(result.record().owner().user_id(), claimer.user_id());
        EXPECT_EQ(result.record().owner().tenant(), claimer.tenant());
      }
    }
  }

  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Client> client_;
  UserWorld a_, b_, c_;
};

TEST_F(OwnershipTest, OwnIdsAreValid) {
  for (const UserWorld* w : {&a_, &b_, &c_}) {
    ExpectVerdicts(w->owner, w->All(), v1::VERDICT_VALID, "own IDs");
  }
}

TEST_F(OwnershipTest,
       OtherOwnersIdsAreNotOwnerInBothDirectionsAndAcrossTenants) {
  const std::vector<const UserWorld*> users = {&a_, &b_, &c_};
  for (const UserWorld* claimer : users) {
    for (const UserWorld* holder : users) {
      if (claimer == holder) continue;
      ExpectVerdicts(claimer->owner, holder->All(), v1::VERDICT_NOT_OWNER,
                     "IDs of " + OwnerText(holder->owner));
    }
  }
}

TEST_F(OwnershipTest, ItemOwnerOverridesTheRequestOwner) {
  // Default owner A, item owner B: B's IDs are B's, A's IDs are not B's.
  v1::ValidateRequest request;
  *request.mutable_owner() = a_.owner;
  v1::ValidateItem* item = request.add_items();
  item->set_id(b_.thread);
  *item->mutable_owner() = b_.owner;
  item = request.add_items();
  item->set_id(a_.thread);
  *item->mutable_owner() = b_.owner;
  item = request.add_items();
  item->set_id(a_.thread);  // default owner A
  auto response = client_->Validate(request);
  ASSERT_TRUE(response.ok()) << StatusText(response.status());
  ASSERT_EQ(response->results_size(), 3);
  EXPECT_EQ(VerdictName(response->results(0).verdict()), "VERDICT_VALID");
  EXPECT_EQ(VerdictName(response->results(1).verdict()), "VERDICT_NOT_OWNER");
  EXPECT_EQ(VerdictName(response->results(2).verdict()), "VERDICT_VALID");
}

TEST_F(OwnershipTest, CleanupConnectionReleasesExactlyThatConnectionsRecords) {
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = a_.owner;
  cleanup.set_connection_id(a_.conn1);
  auto response = client_->Cleanup(cleanup);
  ASSERT_TRUE(response.ok()) << StatusText(response.status());
  EXPECT_THAT(response->released(),
              UnorderedElementsAreArray(a_.OpenedThroughConn1()));
  EXPECT_EQ(response->released_size(), 5) << "released a record twice?";
  EXPECT_THAT(response->already_ended(), IsEmpty());
  EXPECT_THAT(response->refused(), IsEmpty());
  EXPECT_THAT(response->unknown(), IsEmpty());

  ExpectVerdicts(a_.owner, a_.OpenedThroughConn1(), v1::VERDICT_RELEASED,
                 "A's records opened through conn1");
  ExpectVerdicts(a_.owner, a_.NotThroughConn1(), v1::VERDICT_VALID,
                 "A's other records");
  ExpectVerdicts(b_.owner, b_.All(), v1::VERDICT_VALID, "B's records");
  ExpectVerdicts(c_.owner, c_.All(), v1::VERDICT_VALID,
                 "other-tenant alice's records");

  // The thread outlived the connection and is reused by A's next message.
  v1::OpenContextRequest open;
  *open.mutable_owner() = a_.owner;
  open.set_thread_id(a_.thread);
  open.set_connection_id(a_.conn2);
  auto ctx = client_->OpenContext(open);
  ASSERT_TRUE(ctx.ok()) << StatusText(ctx.status());
  EXPECT_TRUE(ctx->thread_reused());
  EXPECT_EQ(ctx->thread_id(), a_.thread);
  EXPECT_EQ(testing::VerdictOf(*client_, ctx->run_id(), a_.owner),
            v1::VERDICT_VALID);

  // Opening through the released connection is refused.
  open.set_connection_id(a_.conn1);
  auto on_released = client_->OpenContext(open);
  EXPECT_EQ(on_released.status().code(), absl::StatusCode::kFailedPrecondition)
      << StatusText(on_released.status());

  // Idempotent: the same cleanup again releases nothing.
  auto again = client_->Cleanup(cleanup);
  ASSERT_TRUE(again.ok()) << StatusText(again.status());
  EXPECT_THAT(again->released(), IsEmpty());
  EXPECT_THAT(again->already_ended(), UnorderedElementsAreArray({a_.conn1}));
  EXPECT_THAT(again->refused(), IsEmpty());
  EXPECT_THAT(again->unknown(), IsEmpty());

  // The record says why it ended.
  v1::DescribeRequest describe;
  describe.set_id(a_.run1);
  auto record = client_->Describe(describe);
  ASSERT_TRUE(record.ok()) << StatusText(record.status());
  EXPECT_EQ(v1::State_Name(record->record().state()), "STATE_RELEASED");
  EXPECT_EQ(record->record().end_reason(), "cleanup_connection");
  EXPECT_TRUE(record->record().has_ended_at());
}

TEST_F(OwnershipTest, CleanupByIdsOfAnotherOwnerIsRefusedAndTouchesNothing) {
  // A names every ID of B and of the other tenant's alice.
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = a_.owner;
  std::vector<std::string> foreign = b_.All();
  for (const std::string& id : c_.All()) foreign.push_back(id);
  for (const std::string& id : foreign) cleanup.mutable_ids()->add_ids(id);
  auto response = client_->Cleanup(cleanup);
  ASSERT_TRUE(response.ok()) << StatusText(response.status());
  EXPECT_THAT(response->released(), IsEmpty());
  EXPECT_THAT(response->already_ended(), IsEmpty());
  EXPECT_THAT(response->refused(), UnorderedElementsAreArray(foreign));
  EXPECT_THAT(response->unknown(), IsEmpty());

  // By connection, on A's behalf, naming B's connection: refused too.
  v1::CleanupRequest by_conn;
  *by_conn.mutable_owner() = a_.owner;
  by_conn.set_connection_id(b_.conn1);
  auto conn_response = client_->Cleanup(by_conn);
  ASSERT_TRUE(conn_response.ok()) << StatusText(conn_response.status());
  EXPECT_THAT(conn_response->released(), IsEmpty());
  EXPECT_THAT(conn_response->refused(), UnorderedElementsAreArray({b_.conn1}));

  // The other tenant's alice names A's IDs (same user_id): refused.
  v1::CleanupRequest reverse;
  *reverse.mutable_owner() = c_.owner;
  for (const std::string& id : a_.All()) reverse.mutable_ids()->add_ids(id);
  auto reverse_response = client_->Cleanup(reverse);
  ASSERT_TRUE(reverse_response.ok()) << StatusText(reverse_response.status());
  EXPECT_THAT(reverse_response->released(), IsEmpty());
  EXPECT_THAT(reverse_response->refused(), UnorderedElementsAreArray(a_.All()));

  ExpectVerdicts(a_.owner, a_.All(), v1::VERDICT_VALID, "A's records");
  ExpectVerdicts(b_.owner, b_.All(), v1::VERDICT_VALID, "B's records");
  ExpectVerdicts(c_.owner, c_.All(), v1::VERDICT_VALID,
                 "other-tenant alice's records");
}

TEST_F(OwnershipTest, MixedCleanupReleasesOwnAndRefusesForeign) {
  // A names its own conn1 and B's conn1 (the legacy failure: "ws_1" matched
  // another user's IDs). Only A's conn1 cascade ends.
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = a_.owner;
  cleanup.mutable_ids()->add_ids(a_.conn1);
  cleanup.mutable_ids()->add_ids(b_.conn1);
  cleanup.mutable_ids()->add_ids(c_.conn1);
  auto response = client_->Cleanup(cleanup);
  ASSERT_TRUE(response.ok()) << StatusText(response.status());
  EXPECT_THAT(response->released(),
              UnorderedElementsAreArray(a_.OpenedThroughConn1()));
  EXPECT_THAT(response->refused(),
              UnorderedElementsAreArray({b_.conn1, c_.conn1}));
  EXPECT_THAT(response->already_ended(), IsEmpty());
  EXPECT_THAT(response->unknown(), IsEmpty());
  ExpectVerdicts(b_.owner, b_.All(), v1::VERDICT_VALID, "B's records");
  ExpectVerdicts(c_.owner, c_.All(), v1::VERDICT_VALID,
                 "other-tenant alice's records");
}

TEST_F(OwnershipTest, CleanupAllOwnedReleasesOnlyThatOwnersRecords) {
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = a_.owner;
  cleanup.set_all_owned(true);
  cleanup.set_reason("user deleted");
  auto response = client_->Cleanup(cleanup);
  ASSERT_TRUE(response.ok()) << StatusText(response.status());
  EXPECT_THAT(response->released(), UnorderedElementsAreArray(a_.All()));
  EXPECT_EQ(response->released_size(), 9);
  EXPECT_THAT(response->refused(), IsEmpty());
  EXPECT_THAT(response->unknown(), IsEmpty());

  ExpectVerdicts(a_.owner, a_.All(), v1::VERDICT_RELEASED, "A's records");
  ExpectVerdicts(b_.owner, b_.All(), v1::VERDICT_VALID, "B's records");
  ExpectVerdicts(c_.owner, c_.All(), v1::VERDICT_VALID,
                 "other-tenant alice's records");

  auto a_live = testing::ListAll(*client_, a_.owner, /*include_ended=*/false);
  ASSERT_TRUE(a_live.ok()) << StatusText(a_live.status());
  EXPECT_THAT(*a_live, IsEmpty());
  for (const UserWorld* w : {&b_, &c_}) {
    auto live = testing::ListAll(*client_, w->owner, /*include_ended=*/false);
    ASSERT_TRUE(live.ok()) << StatusText(live.status());
    std::vector<std::string> ids;
    for (const v1::Record& r : *live) ids.push_back(r.id());
    EXPECT_THAT(ids, UnorderedElementsAreArray(w->All()))
        << OwnerText(w->owner);
  }

  v1::DescribeRequest describe;
  describe.set_id(a_.thread);
  auto record = client_->Describe(describe);
  ASSERT_TRUE(record.ok()) << StatusText(record.status());
  EXPECT_EQ(record->record().end_reason(), "user deleted");

  // Again: nothing left to release.
  auto again = client_->Cleanup(cleanup);
  ASSERT_TRUE(again.ok()) << StatusText(again.status());
  EXPECT_THAT(again->released(), IsEmpty());
}

// Whether `id`'s 16 bytes (big-endian, as the text encodes them) contain
// `text`'s bytes anywhere.
bool BitsContain(const std::string& id, const std::string& text) {
  absl::StatusOr<ParsedId> parsed = ParseId(id);
  if (!parsed.ok()) {
    ADD_FAILURE() << id << ": " << StatusText(parsed.status());
    return false;
  }
  std::string bytes;
  for (uint64_t half : {parsed->bits.hi, parsed->bits.lo}) {
    for (int shift = 56; shift >= 0; shift -= 8) {
      bytes.push_back(static_cast<char>((half >> shift) & 0xff));
    }
  }
  return bytes.find(text) != std::string::npos;
}

TEST_F(OwnershipTest, RecordsNameTheirOwnerAndIdsCarryNoUserData) {
  // An owner spelled only with lowercase Crockford base32 letters and
  // digits (no i, l, o, u): were it copied into an ID's text it could be
  // found there, unlike "alice". A 26-character random suffix holds one of
  // these 5+-character strings by chance with probability below 1e-6.
  UserWorld d;
  ASSERT_NO_FATAL_FAILURE(Build(MakeOwner("t3nx9k", "q7vkz4m"), "gw-d", &d));
  for (const char c : d.owner.tenant() + d.owner.user_id()) {
    ASSERT_NE(std::string("0123456789abcdefghjkmnpqrstvwxyz").find(c),
              std::string::npos)
        << "owner text must be in the ID alphabet for the search to mean "
           "anything";
  }
  for (const UserWorld* w : {&a_, &b_, &c_, &d}) {
    const std::vector<std::string> ids = w->All();
    ASSERT_EQ(ids.size(), 9u);
    for (const std::string& id : ids) {
      const std::string suffix = id.substr(id.find('_') + 1);
      EXPECT_EQ(suffix.find(w->owner.user_id()), std::string::npos) << id;
      EXPECT_EQ(suffix.find(w->owner.tenant()), std::string::npos) << id;
      // Nor as raw bytes in the 128 bits (any 4-byte piece of the owner
      // text, so a truncated copy is found too).
      for (const std::string& text : {w->owner.tenant(), w->owner.user_id()}) {
        for (size_t at = 0; at + 4 <= text.size(); ++at) {
          EXPECT_FALSE(BitsContain(id, text.substr(at, 4)))
              << id << " holds bytes of " << text;
        }
      }
      v1::DescribeRequest describe;
      describe.set_id(id);
      auto record = client_->Describe(describe);
      ASSERT_TRUE(record.ok()) << id << ": " << StatusText(record.status());
      EXPECT_EQ(record->record().owner().tenant(), w->owner.tenant()) << id;
      EXPECT_EQ(record->record().owner().user_id(), w->owner.user_id()) << id;
      EXPECT_EQ(record->record().kind(), KindOfId(id)) << id;
    }
    v1::DescribeRequest describe;
    describe.set_id(w->conn1);
    auto conn = client_->Describe(describe);
    ASSERT_TRUE(conn.ok()) << StatusText(conn.status());
    EXPECT_EQ(conn->record().lease_id(), w->lease);
    describe.set_id(w->req1b);
    auto req = client_->Describe(describe);
    ASSERT_TRUE(req.ok()) << StatusText(req.status());
    EXPECT_EQ(req->record().parent_id(), w->run1b);
    EXPECT_EQ(req->record().connection_id(), w->conn1);
  }
  // Every ID is distinct across all four owners.
  std::set<std::string> all;
  size_t n = 0;
  for (const UserWorld* w : {&a_, &b_, &c_, &d}) {
    for (const std::string& id : w->All()) {
      all.insert(id);
      ++n;
    }
  }
  // The thread appears once per world in All(); 9 IDs per world.
  EXPECT_EQ(all.size(), n);
}

TEST_F(OwnershipTest, NamingTheSameIdTwiceReleasesItOnce) {
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = a_.owner;
  // conn1 twice, and run1 which conn1's cascade already ends.
  cleanup.mutable_ids()->add_ids(a_.conn1);
  cleanup.mutable_ids()->add_ids(a_.conn1);
  cleanup.mutable_ids()->add_ids(a_.run1);
  auto response = client_->Cleanup(cleanup);
  ASSERT_TRUE(response.ok()) << StatusText(response.status());
  EXPECT_THAT(response->released(),
              UnorderedElementsAreArray(a_.OpenedThroughConn1()));
  EXPECT_THAT(response->already_ended(), IsEmpty());
  EXPECT_THAT(response->refused(), IsEmpty());
  EXPECT_THAT(response->unknown(), IsEmpty());
}

// Owner identity is (tenant, user_id), not their concatenation: "ab"/"c"
// and "a"/"bc" are different owners.
TEST_F(OwnershipTest, OwnerFieldsAreNotConcatenated) {
  const v1::Owner ab_c = MakeOwner("ab", "c");
  const v1::Owner a_bc = MakeOwner("a", "bc");
  auto ids = client_->IssueIds(v1::KIND_THREAD, ab_c, 3);
  ASSERT_TRUE(ids.ok()) << StatusText(ids.status());
  ExpectVerdicts(a_bc, *ids, v1::VERDICT_NOT_OWNER, "ab/c's IDs");
  ExpectVerdicts(ab_c, *ids, v1::VERDICT_VALID, "own IDs");
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = a_bc;
  cleanup.set_all_owned(true);
  auto response = client_->Cleanup(cleanup);
  ASSERT_TRUE(response.ok()) << StatusText(response.status());
  EXPECT_THAT(response->released(), IsEmpty());
  ExpectVerdicts(ab_c, *ids, v1::VERDICT_VALID, "after a/bc's cleanup");
}

}  // namespace
}  // namespace registrar
