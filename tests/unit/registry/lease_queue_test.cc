#include "service/registry/lease_queue.h"

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "service/id/id.h"

namespace registrar {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1'750'000'000);

Id128 Lease(uint64_t n) { return Id128{0, n}; }

TEST(LeaseQueueTest, EmptyQueuePopsNothing) {
  LeaseQueue queue;
  EXPECT_TRUE(queue.empty());
  EXPECT_EQ(queue.size(), 0u);
  absl::Time deadline;
  Id128 lease;
  EXPECT_FALSE(queue.PopDue(absl::InfiniteFuture(), &deadline, &lease));
}

TEST(LeaseQueueTest, PopsOnlyDueEntriesEarliestFirst) {
  LeaseQueue queue;
  queue.Push(kT0 + absl::Seconds(30), Lease(3));
  queue.Push(kT0 + absl::Seconds(10), Lease(1));
  queue.Push(kT0 + absl::Seconds(20), Lease(2));
  EXPECT_EQ(queue.size(), 3u);
  EXPECT_EQ(queue.next_deadline(), kT0 + absl::Seconds(10));

  absl::Time deadline;
  Id128 lease;
  // Not due yet one nanosecond before the earliest deadline.
  EXPECT_FALSE(queue.PopDue(kT0 + absl::Seconds(10) - absl::Nanoseconds(1),
                            &deadline, &lease));
  // Due exactly at the deadline.
  ASSERT_TRUE(queue.PopDue(kT0 + absl::Seconds(20), &deadline, &lease));
  EXPECT_EQ(lease, Lease(1));
  EXPECT_EQ(deadline, kT0 + absl::Seconds(10));
  ASSERT_TRUE(queue.PopDue(kT0 + absl::Seconds(20), &deadline, &lease));
  EXPECT_EQ(lease, Lease(2));
  EXPECT_EQ(deadline, kT0 + absl::Seconds(20));
  EXPECT_FALSE(queue.PopDue(kT0 + absl::Seconds(20), &deadline, &lease));
  EXPECT_EQ(queue.size(), 1u);
  EXPECT_EQ(queue.next_deadline(), kT0 + absl::Seconds(30));
}

TEST(LeaseQueueTest, RenewalLeavesStaleEntryThatStillSurfaces) {
  // The queue is plain data: a renewed lease has two entries, and it is the
  // Lessor's job to skip the stale one.
  LeaseQueue queue;
  queue.Push(kT0 + absl::Seconds(10), Lease(7));
  queue.Push(kT0 + absl::Seconds(25), Lease(7));
  absl::Time deadline;
  Id128 lease;
  ASSERT_TRUE(queue.PopDue(kT0 + absl::Seconds(60), &deadline, &lease));
  EXPECT_EQ(deadline, kT0 + absl::Seconds(10));
  ASSERT_TRUE(queue.PopDue(kT0 + absl::Seconds(60), &deadline, &lease));
  EXPECT_EQ(deadline, kT0 + absl::Seconds(25));
  EXPECT_EQ(lease, Lease(7));
  EXPECT_TRUE(queue.empty());
}

TEST(LeaseQueueTest, ManyEntriesComeOutSorted) {
  LeaseQueue queue;
  for (uint64_t i = 0; i < 100; ++i) {
    const uint64_t n = (i * 37) % 100;  // a permutation of 0..99
    queue.Push(kT0 + absl::Seconds(n), Lease(n));
  }
  absl::Time deadline;
  Id128 lease;
  for (uint64_t n = 0; n < 100; ++n) {
    ASSERT_TRUE(queue.PopDue(absl::InfiniteFuture(), &deadline, &lease));
    EXPECT_EQ(lease, Lease(n));
    EXPECT_EQ(deadline, kT0 + absl::Seconds(n));
  }
  EXPECT_TRUE(queue.empty());
}

}  // namespace
}  // namespace registrar
