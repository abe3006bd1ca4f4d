// Leases: a lease that is not kept alive expires and ends its connections
// (with their runs and requests) as EXPIRED, threads survive; a lease kept
// alive by LeaseKeeper stays; RevokeLease ends everything bound to it and
// lists exactly what it ended.

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "client/lease_keeper.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_util.h"

namespace registrar {
namespace {

using ::registrar::testing::MakeOwner;
using ::registrar::testing::SanitizerTimeScale;
using ::registrar::testing::ServerProcess;
using ::registrar::testing::StatusText;
using ::registrar::testing::VerdictName;
using ::registrar::testing::VerdictOf;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;

// One connection with one context opened through it.
struct ConnWorld {
  v1::Owner owner;
  std::string conn, thread, run, req;
  std::vector<std::string> EndedWithConnection() const {
    return {conn, run, req};
  }
};

class LeaseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ServerProcess::Options options;
    options.args = {"--tick_interval=50ms"};
    auto server = ServerProcess::Start(options);
    ASSERT_TRUE(server.ok()) << StatusText(server.status());
    server_ = *std::move(server);
    client_ = testing::MakeClient(*server_);
  }

  void TearDown() override {
    if (server_ != nullptr) {
      EXPECT_EQ(testing::StopServer(*server_), 0) << server_->Log();
    }
  }

  std::string Grant(const std::string& holder, uint32_t ttl) {
    v1::GrantLeaseRequest request;
    request.set_holder(holder);
    request.set_ttl_seconds(ttl);
    auto response = client_->GrantLease(request);
    EXPECT_TRUE(response.ok()) << StatusText(response.status());
    if (!response.ok()) return "";
    EXPECT_EQ(response->ttl_seconds(), ttl);
    EXPECT_EQ(response->lease_id().rfind("lease_", 0), 0u)
        << response->lease_id();
    return response->lease_id();
  }

  // A connection bound to `lease` ("" = no lease) with one context.
  ConnWorld Open(const v1::Owner& owner, const std::string& lease) {
    ConnWorld w;
    w.owner = owner;
    IssueOptions options;
    options.lease_id = lease;
    auto conn = client_->IssueIds(v1::KIND_CONNECTION, owner, 1, options);
    EXPECT_TRUE(conn.ok()) << StatusText(conn.status());
    if (!conn.ok()) return w;
    w.conn = conn->front();
    v1::OpenContextRequest open;
    *open.mutable_owner() = owner;
    open.set_connection_id(w.conn);
    auto ctx = client_->OpenContext(open);
    EXPECT_TRUE(ctx.ok()) << StatusText(ctx.status());
    if (!ctx.ok()) return w;
    w.thread = ctx->thread_id();
    w.run = ctx->run_id();
    w.req = ctx->request_id();
    return w;
  }

  void ExpectAll(const v1::Owner& owner, const std::vector<std::string>& ids,
                 v1::Verdict want, const std::string& what) {
    for (const std::string& id : ids) {
      EXPECT_EQ(VerdictName(VerdictOf(*client_, id, owner)), VerdictName(want))
          << what << ": " << id;
    }
  }

  absl::StatusCode KeepAliveCode(const std::string& lease) {
    v1::KeepAliveRequest request;
    request.set_lease_id(lease);
    return client_->KeepAlive(request).status().code();
  }

  v1::Record Describe(const std::string& id) {
    v1::DescribeRequest request;
    request.set_id(id);
    auto response = client_->Describe(request);
    EXPECT_TRUE(response.ok()) << id << ": " << StatusText(response.status());
    return response.ok() ? response->record() : v1::Record();
  }

  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Client> client_;
  const v1::Owner alice_ = MakeOwner("acme", "alice");
  const v1::Owner bob_ = MakeOwner("acme", "bob");
};

TEST_F(LeaseTest, UnrenewedLeaseExpiresItsConnectionsRunsAndRequests) {
  // 2 s, longer in sanitizer builds. Setting up takes what it takes: the
  // lease is renewed once everything is open, and its TTL counts from there.
  const uint32_t ttl_s = 2 * SanitizerTimeScale();
  const std::string lease = Grant("gw-1", ttl_s);
  ASSERT_FALSE(lease.empty());
  const ConnWorld a = Open(alice_, lease);
  const ConnWorld b = Open(bob_, lease);
  // A request issued later through the connection, under the first run.
  IssueOptions req_options;
  req_options.parent_id = a.run;
  req_options.connection_id = a.conn;
  auto late_req = client_->IssueIds(v1::KIND_REQUEST, alice_, 1, req_options);
  ASSERT_TRUE(late_req.ok()) << StatusText(late_req.status());
  // Not bound to the lease: must survive it.
  const ConnWorld unbound = Open(alice_, "");
  const std::string other_lease = Grant("gw-2", 600);
  const ConnWorld other = Open(alice_, other_lease);

  const absl::Time renewed = absl::Now();
  ASSERT_EQ(KeepAliveCode(lease), absl::StatusCode::kOk)
      << "the lease expired while setting up";
  // Before the TTL everything is live. (A VALID here is proof whenever it
  // comes: the lease cannot be live past its TTL.)
  ExpectAll(alice_, {a.conn, a.run, a.req, late_req->front()},
            v1::VERDICT_VALID, "before expiry");

  // The server's ticker expires it: poll (bounded) until it has, then the
  // whole world is checked at once.
  ASSERT_TRUE(testing::PollUntil(
      [&] {
        return VerdictOf(*client_, a.conn, alice_) == v1::VERDICT_EXPIRED;
      },
      absl::Seconds(ttl_s + 5)))
      << "not expired " << ttl_s + 5 << " s after the renewal";
  EXPECT_GE(absl::Now() - renewed, absl::Seconds(ttl_s))
      << "expired before its TTL";

  std::vector<std::string> a_expired = a.EndedWithConnection();
  a_expired.push_back(late_req->front());
  ExpectAll(alice_, a_expired, v1::VERDICT_EXPIRED, "alice after expiry");
  ExpectAll(bob_, b.EndedWithConnection(), v1::VERDICT_EXPIRED,
            "bob after expiry");
  ExpectAll(alice_, {a.thread}, v1::VERDICT_VALID, "thread outlives lease");
  ExpectAll(bob_, {b.thread}, v1::VERDICT_VALID, "thread outlives lease");
  ExpectAll(alice_,
            {unbound.conn, unbound.thread, unbound.run, unbound.req, other.conn,
             other.thread, other.run, other.req},
            v1::VERDICT_VALID, "not bound to the expired lease");

  const v1::Record conn = Describe(a.conn);
  EXPECT_EQ(v1::State_Name(conn.state()), "STATE_EXPIRED");
  EXPECT_EQ(conn.end_reason(), "lease_expired");
  EXPECT_EQ(conn.lease_id(), lease);
  EXPECT_TRUE(conn.has_ended_at());
  EXPECT_EQ(v1::State_Name(Describe(a.req).state()), "STATE_EXPIRED");

  EXPECT_EQ(KeepAliveCode(lease), absl::StatusCode::kNotFound);
  v1::RevokeLeaseRequest revoke;
  revoke.set_lease_id(lease);
  EXPECT_EQ(client_->RevokeLease(revoke).status().code(),
            absl::StatusCode::kNotFound);
  // A connection cannot be bound to the expired lease.
  IssueOptions bind;
  bind.lease_id = lease;
  auto late_conn = client_->IssueIds(v1::KIND_CONNECTION, alice_, 1, bind);
  EXPECT_EQ(late_conn.status().code(), absl::StatusCode::kFailedPrecondition)
      << StatusText(late_conn.status());
  // The thread is still usable; the expired connection is not.
  v1::OpenContextRequest open;
  *open.mutable_owner() = alice_;
  open.set_thread_id(a.thread);
  auto reuse = client_->OpenContext(open);
  ASSERT_TRUE(reuse.ok()) << StatusText(reuse.status());
  EXPECT_TRUE(reuse->thread_reused());
  open.set_connection_id(a.conn);
  EXPECT_EQ(client_->OpenContext(open).status().code(),
            absl::StatusCode::kFailedPrecondition);
  // Cleanup of an expired connection: already ended, nothing released.
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = alice_;
  cleanup.set_connection_id(a.conn);
  auto cleaned = client_->Cleanup(cleanup);
  ASSERT_TRUE(cleaned.ok()) << StatusText(cleaned.status());
  EXPECT_THAT(cleaned->released(), IsEmpty());
  EXPECT_THAT(cleaned->already_ended(), UnorderedElementsAreArray({a.conn}));
}

TEST_F(LeaseTest, ManualKeepAliveExtendsTheLease) {
  // A lease of 3 TTLs renewed by hand outlives three unrenewed control
  // leases of 1 TTL, granted one after the other after it: the server's own
  // expiry of each control lease paces the renewals (so no sleep, and no
  // bound on how fast this machine is; each renewal has 2 TTLs to spare).
  // Without the renewals the lease would have ended.
  const int scale = SanitizerTimeScale();
  const std::string lease = Grant("gw-1", 3 * scale);
  const ConnWorld a = Open(alice_, lease);
  int renewals = 0;
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE(round);
    const std::string control = Grant("gw-control", scale);
    ASSERT_FALSE(control.empty());
    IssueOptions bind;
    bind.lease_id = control;
    auto control_conn = client_->IssueIds(v1::KIND_CONNECTION, bob_, 1, bind);
    ASSERT_TRUE(control_conn.ok()) << StatusText(control_conn.status());
    // The server expires the control lease by its ticker: poll its
    // connection (bounded; a KeepAlive would renew it).
    ASSERT_TRUE(testing::PollUntil(
        [&] {
          return VerdictOf(*client_, control_conn->front(), bob_) ==
                 v1::VERDICT_EXPIRED;
        },
        absl::Seconds(scale + 5)))
        << "the control lease did not expire";
    v1::KeepAliveRequest request;
    request.set_lease_id(lease);
    auto renewed = client_->KeepAlive(request);
    ASSERT_TRUE(renewed.ok()) << StatusText(renewed.status());
    EXPECT_EQ(renewed->lease_id(), lease);
    EXPECT_EQ(renewed->ttl_seconds(), static_cast<uint32_t>(3 * scale));
    ++renewals;
  }
  // Three control TTLs, each granted after the lease (each after the one
  // before expired), have passed: more than the lease's own 3.
  EXPECT_EQ(renewals, 3);
  ExpectAll(alice_, {a.conn, a.run, a.req}, v1::VERDICT_VALID,
            "renewed past its TTL");
}

TEST_F(LeaseTest, LeaseKeeperKeepsTheLeaseAliveThenStopLetsItExpire) {
  const int scale = SanitizerTimeScale();
  const absl::Duration ttl = absl::Seconds(scale);
  std::atomic<int> losses{0};
  auto keeper = LeaseKeeper::Start(*client_, "gw-keeper", scale,
                                   [&](const absl::Status&) { ++losses; });
  ASSERT_TRUE(keeper.ok()) << StatusText(keeper.status());
  const absl::Time granted_by = absl::Now();
  auto conn = (*keeper)->OpenConnection(alice_);
  ASSERT_TRUE(conn.ok()) << StatusText(conn.status());
  v1::OpenContextRequest open;
  *open.mutable_owner() = alice_;
  open.set_connection_id(*conn);
  auto ctx = client_->OpenContext(open);
  ASSERT_TRUE(ctx.ok()) << StatusText(ctx.status());

  // Kept alive past three TTLs: wait until the keeper has renewed it to
  // beyond that point (each renewal moves renewed_until on).
  ASSERT_TRUE(testing::PollUntil(
      [&] { return (*keeper)->renewed_until() > granted_by + ttl * 4; },
      absl::Seconds(10)))
      << "the keeper did not renew the lease";
  ASSERT_GT(absl::Now(), granted_by + ttl * 3);
  ExpectAll(alice_, {*conn, ctx->thread_id(), ctx->run_id(), ctx->request_id()},
            v1::VERDICT_VALID, "kept alive for three TTLs");
  EXPECT_TRUE((*keeper)->healthy());
  EXPECT_EQ((*keeper)->ttl_seconds(), static_cast<uint32_t>(scale));
  EXPECT_GT((*keeper)->renewed_until(), absl::Now());
  EXPECT_EQ(KeepAliveCode((*keeper)->lease_id()), absl::StatusCode::kOk);

  // Stop() does not revoke: the TTL ends the lease, not before the last
  // renewal's TTL has run out.
  (*keeper)->Stop();
  const absl::Time kept_until = (*keeper)->renewed_until();
  ExpectAll(alice_, {*conn}, v1::VERDICT_VALID, "right after Stop()");
  ASSERT_TRUE(testing::PollUntil(
      [&] { return VerdictOf(*client_, *conn, alice_) == v1::VERDICT_EXPIRED; },
      absl::Seconds(5)))
      << "not expired after Stop()";
  const absl::Time seen_expired = absl::Now();
  ExpectAll(alice_, {*conn, ctx->run_id(), ctx->request_id()},
            v1::VERDICT_EXPIRED, "after Stop()");
  ExpectAll(alice_, {ctx->thread_id()}, v1::VERDICT_VALID, "thread");
  EXPECT_GE(seen_expired, kept_until) << "expired before its last TTL ran out";
  EXPECT_EQ(losses.load(), 0);
}

TEST_F(LeaseTest, RevokeLeaseListsEveryRecordItEnded) {
  const std::string lease = Grant("gw-1", 60);
  const ConnWorld a1 = Open(alice_, lease);
  const ConnWorld a2 = Open(alice_, lease);
  const ConnWorld b = Open(bob_, lease);
  // A second run on a1's thread through a2, with a request under it.
  v1::OpenContextRequest open;
  *open.mutable_owner() = alice_;
  open.set_thread_id(a1.thread);
  open.set_connection_id(a2.conn);
  auto ctx = client_->OpenContext(open);
  ASSERT_TRUE(ctx.ok()) << StatusText(ctx.status());
  ASSERT_TRUE(ctx->thread_reused());
  // A connection released before the revocation is not listed again.
  const ConnWorld gone = Open(bob_, lease);
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = bob_;
  cleanup.set_connection_id(gone.conn);
  auto cleaned = client_->Cleanup(cleanup);
  ASSERT_TRUE(cleaned.ok()) << StatusText(cleaned.status());
  ASSERT_EQ(cleaned->released_size(), 3);
  // Another lease's connection is untouched.
  const std::string other_lease = Grant("gw-2", 60);
  const ConnWorld other = Open(alice_, other_lease);

  v1::RevokeLeaseRequest revoke;
  revoke.set_lease_id(lease);
  auto revoked = client_->RevokeLease(revoke);
  ASSERT_TRUE(revoked.ok()) << StatusText(revoked.status());
  std::vector<std::string> want = {
      a1.conn, a1.run, a1.req, a2.conn,       a2.run,           a2.req,
      b.conn,  b.run,  b.req,  ctx->run_id(), ctx->request_id()};
  EXPECT_THAT(revoked->released(), UnorderedElementsAreArray(want));

  ExpectAll(alice_,
            {a1.conn, a1.run, a1.req, a2.conn, a2.run, a2.req, ctx->run_id(),
             ctx->request_id()},
            v1::VERDICT_RELEASED, "alice after revoke");
  ExpectAll(bob_, b.EndedWithConnection(), v1::VERDICT_RELEASED,
            "bob after revoke");
  ExpectAll(alice_, {a1.thread, a2.thread}, v1::VERDICT_VALID, "threads");
  ExpectAll(bob_, {b.thread, gone.thread}, v1::VERDICT_VALID, "threads");
  ExpectAll(alice_, {other.conn, other.run, other.req}, v1::VERDICT_VALID,
            "other lease");
  EXPECT_EQ(Describe(a1.conn).end_reason(), "lease_revoked");
  EXPECT_EQ(v1::State_Name(Describe(b.req).state()), "STATE_RELEASED");
  EXPECT_EQ(Describe(gone.conn).end_reason(), "cleanup_connection");

  EXPECT_EQ(KeepAliveCode(lease), absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->RevokeLease(revoke).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(KeepAliveCode(other_lease), absl::StatusCode::kOk);
}

TEST_F(LeaseTest, RevokeOfALeaseWithoutConnectionsReleasesNothing) {
  const std::string lease = Grant("gw-empty", 30);
  v1::RevokeLeaseRequest revoke;
  revoke.set_lease_id(lease);
  auto revoked = client_->RevokeLease(revoke);
  ASSERT_TRUE(revoked.ok()) << StatusText(revoked.status());
  EXPECT_THAT(revoked->released(), IsEmpty());
  EXPECT_EQ(KeepAliveCode(lease), absl::StatusCode::kNotFound);
}

TEST_F(LeaseTest, LeaseKeeperOpenConnectionBindsToItsLeaseAndRevokeEndsIt) {
  auto keeper = LeaseKeeper::Start(*client_, "gw-7", 30);
  ASSERT_TRUE(keeper.ok()) << StatusText(keeper.status());
  EXPECT_EQ((*keeper)->holder(), "gw-7");
  EXPECT_EQ((*keeper)->ttl_seconds(), 30u);
  auto conn = (*keeper)->OpenConnection(alice_, {{"pod", "gw-7"}});
  ASSERT_TRUE(conn.ok()) << StatusText(conn.status());
  EXPECT_EQ(conn->rfind("conn_", 0), 0u) << *conn;
  auto conn_b = (*keeper)->OpenConnection(bob_);
  ASSERT_TRUE(conn_b.ok()) << StatusText(conn_b.status());

  const v1::Record record = Describe(*conn);
  EXPECT_EQ(record.kind(), v1::KIND_CONNECTION);
  EXPECT_EQ(record.lease_id(), (*keeper)->lease_id());
  EXPECT_EQ(record.owner().user_id(), "alice");
  ASSERT_EQ(record.labels().count("pod"), 1u);
  EXPECT_EQ(record.labels().at("pod"), "gw-7");
  EXPECT_EQ(VerdictOf(*client_, *conn, alice_, v1::KIND_CONNECTION),
            v1::VERDICT_VALID);

  auto revoked = (*keeper)->Revoke();
  ASSERT_TRUE(revoked.ok()) << StatusText(revoked.status());
  EXPECT_THAT(revoked->released(), UnorderedElementsAreArray({*conn, *conn_b}));
  EXPECT_FALSE((*keeper)->healthy());
  EXPECT_EQ((*keeper)->status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(VerdictOf(*client_, *conn, alice_), v1::VERDICT_RELEASED);

  // No longer held: refused locally.
  auto after = (*keeper)->OpenConnection(alice_);
  EXPECT_EQ(after.status().code(), absl::StatusCode::kFailedPrecondition)
      << StatusText(after.status());
}

TEST_F(LeaseTest, LeaseKeeperReportsALeaseRevokedElsewhere) {
  absl::Notification lost;
  absl::Status loss_status;
  auto keeper =
      LeaseKeeper::Start(*client_, "gw-9", 1, [&](const absl::Status& s) {
        loss_status = s;
        lost.Notify();
      });
  ASSERT_TRUE(keeper.ok()) << StatusText(keeper.status());
  auto conn = (*keeper)->OpenConnection(alice_);
  ASSERT_TRUE(conn.ok()) << StatusText(conn.status());
  // An operator revokes the lease with another client.
  auto other = testing::MakeClient(*server_);
  v1::RevokeLeaseRequest revoke;
  revoke.set_lease_id((*keeper)->lease_id());
  auto revoked = other->RevokeLease(revoke);
  ASSERT_TRUE(revoked.ok()) << StatusText(revoked.status());
  EXPECT_THAT(revoked->released(), UnorderedElementsAreArray({*conn}));
  ASSERT_TRUE(lost.WaitForNotificationWithTimeout(absl::Seconds(3) *
                                                  SanitizerTimeScale()));
  EXPECT_EQ(loss_status.code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE((*keeper)->healthy());
  EXPECT_EQ(VerdictOf(*client_, *conn, alice_), v1::VERDICT_RELEASED);
  auto after = (*keeper)->OpenConnection(alice_);
  EXPECT_EQ(after.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(LeaseTest, LeaseKeeperStartFailsForABadGrant) {
  auto empty_holder = LeaseKeeper::Start(*client_, "", 10);
  EXPECT_EQ(empty_holder.status().code(), absl::StatusCode::kInvalidArgument)
      << StatusText(empty_holder.status());
  auto zero_ttl = LeaseKeeper::Start(*client_, "gw", 0);
  EXPECT_EQ(zero_ttl.status().code(), absl::StatusCode::kInvalidArgument)
      << StatusText(zero_ttl.status());
}

}  // namespace
}  // namespace registrar
