// RepeatedLogGate: at most one line per interval per call site, and the
// next line written counts the ones left out. Times are given, not waited.

#include "service/common/rate_limited_log.h"

#include "gtest/gtest.h"

namespace registrar {
namespace {

TEST(RepeatedLogGateTest, OneLinePerIntervalCountingTheRest) {
  SetLogRepeatInterval(absl::Seconds(10));
  RepeatedLogGate gate;
  const absl::Time t0 = absl::FromUnixSeconds(1'800'000'000);
  uint64_t suppressed = 99;
  ASSERT_TRUE(gate.Allow(t0, &suppressed));
  EXPECT_EQ(suppressed, 0u);
  // Every 100 ms for just under the interval: all refused.
  int refused = 0;
  for (int i = 1; i < 100; ++i) {
    if (!gate.Allow(t0 + absl::Milliseconds(100 * i), &suppressed)) ++refused;
  }
  EXPECT_EQ(refused, 99);
  ASSERT_TRUE(gate.Allow(t0 + absl::Seconds(10), &suppressed));
  EXPECT_EQ(suppressed, 99u);
  EXPECT_FALSE(gate.Allow(t0 + absl::Seconds(11), &suppressed));
  ASSERT_TRUE(gate.Allow(t0 + absl::Seconds(25), &suppressed));
  EXPECT_EQ(suppressed, 1u);
}

TEST(RepeatedLogGateTest, CallSitesAreIndependent) {
  SetLogRepeatInterval(absl::Seconds(10));
  RepeatedLogGate a, b;
  const absl::Time t0 = absl::FromUnixSeconds(1'800'000'000);
  uint64_t suppressed = 0;
  EXPECT_TRUE(a.Allow(t0, &suppressed));
  EXPECT_TRUE(b.Allow(t0, &suppressed));
  EXPECT_FALSE(a.Allow(t0 + absl::Seconds(1), &suppressed));
}

TEST(RepeatedLogGateTest, ZeroIntervalWritesEveryLine) {
  SetLogRepeatInterval(absl::ZeroDuration());
  RepeatedLogGate gate;
  const absl::Time t0 = absl::FromUnixSeconds(1'800'000'000);
  uint64_t suppressed = 0;
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(gate.Allow(t0 + absl::Milliseconds(i), &suppressed));
  }
  SetLogRepeatInterval(absl::Seconds(10));
}

TEST(SuppressedNoteTest, SaysHowManyWereLeftOut) {
  EXPECT_EQ(SuppressedNote(0), "");
  EXPECT_EQ(SuppressedNote(7), " (7 more like this since the last one)");
}

}  // namespace
}  // namespace registrar
