#include "service/registry/lessor.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/id/id.h"

namespace registrar {
namespace {

using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

const absl::Time kT0 = absl::FromUnixSeconds(1'750'000'000);
const absl::Duration kTtl = absl::Seconds(10);

Id128 LeaseId(uint64_t n) { return Id128{1, n}; }
BoundConnection Conn(uint64_t n, uint32_t shard = 0) {
  return BoundConnection{Id128{2, n}, shard};
}

TEST(LessorTest, GrantedLeaseIsCounted) {
  Lessor lessor;
  EXPECT_EQ(lessor.size(), 0u);
  lessor.Grant(LeaseId(1), "gw-1", kTtl, kT0);
  lessor.Grant(LeaseId(2), "gw-2", kTtl, kT0);
  EXPECT_EQ(lessor.size(), 2u);
}

TEST(LessorTest, KeepAliveRenewsForAFullTtl) {
  Lessor lessor;
  lessor.Grant(LeaseId(1), "gw", kTtl, kT0);
  absl::StatusOr<absl::Duration> ttl =
      lessor.KeepAlive(LeaseId(1), kT0 + absl::Seconds(9));
  ASSERT_TRUE(ttl.ok()) << ttl.status();
  EXPECT_EQ(*ttl, kTtl);
  // The original deadline (t0 + 10s) has passed but the renewed one
  // (t0 + 19s) has not: the stale queue entry must be skipped.
  EXPECT_THAT(lessor.TakeExpired(kT0 + absl::Seconds(18)), IsEmpty());
  EXPECT_EQ(lessor.size(), 1u);
  std::vector<EndedLease> expired = lessor.TakeExpired(kT0 + absl::Seconds(19));
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].lease, LeaseId(1));
  EXPECT_EQ(lessor.size(), 0u);
}

// A new writer restarts the leases it followed: each gets its full TTL from
// the takeover, even one whose followed deadline has passed, and a lease
// already due later keeps its later deadline.
TEST(LessorTest, RestartAllGivesEveryLeaseItsFullTtlFromNow) {
  Lessor lessor;
  lessor.Grant(LeaseId(1), "gw", kTtl, kT0);                      // t0+10
  lessor.Grant(LeaseId(2), "gw", kTtl * 3, kT0);                  // t0+30
  lessor.Grant(LeaseId(3), "gw", kTtl, kT0 + absl::Seconds(20));  // t0+30
  const absl::Time takeover = kT0 + absl::Seconds(15);
  lessor.RestartAll(takeover);
  EXPECT_TRUE(lessor.IsLive(LeaseId(1), takeover + kTtl - absl::Seconds(1)));
  EXPECT_FALSE(lessor.IsLive(LeaseId(1), takeover + kTtl));
  EXPECT_TRUE(
      lessor.IsLive(LeaseId(2), takeover + kTtl * 3 - absl::Seconds(1)));
  EXPECT_TRUE(lessor.IsLive(LeaseId(3), kT0 + absl::Seconds(29)));
  // The stale queue entries are skipped: only lease 1 is due at t0+25.
  std::vector<EndedLease> expired = lessor.TakeExpired(takeover + kTtl);
  ASSERT_EQ(expired.size(), 1u);
  EXPECT_EQ(expired[0].lease, LeaseId(1));
  EXPECT_EQ(lessor.size(), 2u);
}

TEST(LessorTest, KeepAliveOfUnknownOrPastDeadlineLeaseIsNotFound) {
  Lessor lessor;
  EXPECT_EQ(lessor.KeepAlive(LeaseId(9), kT0).status().code(),
            absl::StatusCode::kNotFound);
  lessor.Grant(LeaseId(1), "gw", kTtl, kT0);
  // At the deadline the lease is no longer live, even before TakeExpired.
  EXPECT_EQ(lessor.KeepAlive(LeaseId(1), kT0 + kTtl).status().code(),
            absl::StatusCode::kNotFound);
  // And a failed KeepAlive did not renew it.
  EXPECT_EQ(lessor.TakeExpired(kT0 + kTtl).size(), 1u);
}

TEST(LessorTest, AttachRequiresLiveLease) {
  Lessor lessor;
  const BoundConnection c1 = Conn(1);
  EXPECT_EQ(lessor.Attach(LeaseId(1), {&c1, 1}, kT0).code(),
            absl::StatusCode::kFailedPrecondition);
  lessor.Grant(LeaseId(1), "gw", kTtl, kT0);
  EXPECT_TRUE(lessor.Attach(LeaseId(1), {&c1, 1}, kT0).ok());
  const BoundConnection c2 = Conn(2);
  EXPECT_EQ(lessor.Attach(LeaseId(1), {&c2, 1}, kT0 + kTtl).code(),
            absl::StatusCode::kFailedPrecondition);
  // Only c1 was bound.
  absl::StatusOr<EndedLease> ended = lessor.Revoke(LeaseId(1), kT0);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_THAT(ended->connections, UnorderedElementsAre(c1));
}

TEST(LessorTest, RevokeReturnsBoundConnectionsMinusDetached) {
  Lessor lessor;
  lessor.Grant(LeaseId(1), "gw", kTtl, kT0);
  lessor.Grant(LeaseId(2), "gw", kTtl, kT0);
  const std::vector<BoundConnection> conns = {Conn(1, 0), Conn(2, 3),
                                              Conn(3, 5)};
  ASSERT_TRUE(lessor.Attach(LeaseId(1), conns, kT0).ok());
  const BoundConnection other = Conn(4);
  ASSERT_TRUE(lessor.Attach(LeaseId(2), {&other, 1}, kT0).ok());
  lessor.Detach(LeaseId(1), Conn(2, 3));
  lessor.Detach(LeaseId(1), Conn(99));  // not bound: no-op
  lessor.Detach(LeaseId(7), Conn(1));   // unknown lease: no-op

  absl::StatusOr<EndedLease> ended = lessor.Revoke(LeaseId(1), kT0);
  ASSERT_TRUE(ended.ok()) << ended.status();
  EXPECT_EQ(ended->lease, LeaseId(1));
  EXPECT_THAT(ended->connections, UnorderedElementsAre(Conn(1, 0), Conn(3, 5)));
  EXPECT_EQ(lessor.size(), 1u);
  EXPECT_EQ(lessor.Revoke(LeaseId(1), kT0).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(lessor.KeepAlive(LeaseId(1), kT0).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(LessorTest, AttachingTheSameConnectionTwiceBindsItOnce) {
  Lessor lessor;
  lessor.Grant(LeaseId(1), "gw", kTtl, kT0);
  const BoundConnection c = Conn(1);
  ASSERT_TRUE(lessor.Attach(LeaseId(1), {&c, 1}, kT0).ok());
  ASSERT_TRUE(lessor.Attach(LeaseId(1), {&c, 1}, kT0).ok());
  absl::StatusOr<EndedLease> ended = lessor.Revoke(LeaseId(1), kT0);
  ASSERT_TRUE(ended.ok());
  EXPECT_THAT(ended->connections, UnorderedElementsAre(c));
}

TEST(LessorTest, TakeExpiredReturnsOnlyDueLeasesWithTheirConnections) {
  Lessor lessor;
  lessor.Grant(LeaseId(1), "a", absl::Seconds(5), kT0);
  lessor.Grant(LeaseId(2), "b", absl::Seconds(10), kT0);
  lessor.Grant(LeaseId(3), "c", absl::Seconds(20), kT0);
  const BoundConnection c1 = Conn(1), c2 = Conn(2);
  ASSERT_TRUE(lessor.Attach(LeaseId(1), {&c1, 1}, kT0).ok());
  ASSERT_TRUE(lessor.Attach(LeaseId(2), {&c2, 1}, kT0).ok());

  EXPECT_THAT(lessor.TakeExpired(kT0 + absl::Seconds(4)), IsEmpty());
  std::vector<EndedLease> expired = lessor.TakeExpired(kT0 + absl::Seconds(10));
  ASSERT_EQ(expired.size(), 2u);
  EXPECT_EQ(expired[0].lease, LeaseId(1));
  EXPECT_THAT(expired[0].connections, UnorderedElementsAre(c1));
  EXPECT_EQ(expired[1].lease, LeaseId(2));
  EXPECT_THAT(expired[1].connections, UnorderedElementsAre(c2));
  EXPECT_EQ(lessor.size(), 1u);
  // Taken leases are gone: not taken twice, not renewable, not revocable.
  EXPECT_THAT(lessor.TakeExpired(kT0 + absl::Seconds(10)), IsEmpty());
  EXPECT_EQ(lessor.KeepAlive(LeaseId(1), kT0).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(lessor.Revoke(LeaseId(2), kT0).status().code(),
            absl::StatusCode::kNotFound);
}

TEST(LessorTest, RevokedLeaseNeverExpires) {
  Lessor lessor;
  lessor.Grant(LeaseId(1), "gw", kTtl, kT0);
  ASSERT_TRUE(lessor.KeepAlive(LeaseId(1), kT0 + absl::Seconds(1)).ok());
  ASSERT_TRUE(lessor.Revoke(LeaseId(1), kT0).ok());
  // Both queue entries are stale now.
  EXPECT_THAT(lessor.TakeExpired(absl::InfiniteFuture()), IsEmpty());
}

TEST(LessorTest, RegrantAfterRevokeStartsFresh) {
  Lessor lessor;
  lessor.Grant(LeaseId(1), "gw", kTtl, kT0);
  const BoundConnection c = Conn(1);
  ASSERT_TRUE(lessor.Attach(LeaseId(1), {&c, 1}, kT0).ok());
  ASSERT_TRUE(lessor.Revoke(LeaseId(1), kT0).ok());
  lessor.Grant(LeaseId(1), "gw", kTtl, kT0 + absl::Seconds(100));
  // The old deadline's queue entry must not expire the new grant.
  EXPECT_THAT(lessor.TakeExpired(kT0 + absl::Seconds(50)), IsEmpty());
  absl::StatusOr<EndedLease> ended = lessor.Revoke(LeaseId(1), kT0);
  ASSERT_TRUE(ended.ok());
  EXPECT_THAT(ended->connections, IsEmpty());
}

}  // namespace
}  // namespace registrar

namespace registrar {
namespace {

TEST(LessorTest, RevokePastDeadlineIsNotFoundAndLeavesItToExpire) {
  Lessor lessor;
  lessor.Grant(LeaseId(1), "gw", kTtl, kT0);
  EXPECT_EQ(lessor.Revoke(LeaseId(1), kT0 + kTtl).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(lessor.TakeExpired(kT0 + kTtl).size(), 1u);
}

TEST(LessorTest, RenewedLeaseKeepsOneQueueEntry) {
  Lessor lessor;
  lessor.Grant(LeaseId(1), "gw", kTtl, kT0);
  for (int i = 1; i <= 100; ++i) {
    ASSERT_TRUE(lessor.KeepAlive(LeaseId(1), kT0 + absl::Seconds(i)).ok());
  }
  // The original entry surfaces at kT0 + kTtl and is re-queued, not expired.
  EXPECT_TRUE(lessor.TakeExpired(kT0 + kTtl).empty());
  EXPECT_EQ(lessor.queued(), 1u);
  EXPECT_EQ(lessor.TakeExpired(kT0 + absl::Seconds(100) + kTtl).size(), 1u);
  EXPECT_EQ(lessor.queued(), 0u);
}

// TTLs are durations, not whole seconds: a test can use a 250 ms lease on
// its clock.
TEST(LessorTest, SubSecondTtlExpiresAndRenewsToTheMillisecond) {
  Lessor lessor;
  const absl::Duration ttl = absl::Milliseconds(250);
  lessor.Grant(LeaseId(1), "gw", ttl, kT0);
  const absl::Time renewed_at = kT0 + absl::Milliseconds(200);
  absl::StatusOr<absl::Duration> renewed =
      lessor.KeepAlive(LeaseId(1), renewed_at);
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_EQ(*renewed, ttl);
  EXPECT_THAT(lessor.TakeExpired(renewed_at + ttl - absl::Milliseconds(1)),
              IsEmpty());
  EXPECT_TRUE(
      lessor.IsLive(LeaseId(1), renewed_at + ttl - absl::Milliseconds(1)));
  EXPECT_FALSE(lessor.IsLive(LeaseId(1), renewed_at + ttl));
  const std::vector<EndedLease> ended = lessor.TakeExpired(renewed_at + ttl);
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_EQ(ended[0].ttl, ttl);
  EXPECT_EQ(ended[0].deadline, renewed_at + ttl);
}

}  // namespace
}  // namespace registrar
