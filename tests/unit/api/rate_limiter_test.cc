// RateLimiter: a token bucket per key on the times it is given, so refill
// and retry delays are checked to the millisecond without waiting.

#include "service/api/rate_limiter.h"

#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/field_error.h"

namespace registrar {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;

const absl::Time kT0 = absl::FromUnixSeconds(1'750'000'000);

TEST(RateLimiterTest, ZeroRateIsUnlimitedAndTracksNothing) {
  RateLimiter limiter(RateLimit{});
  EXPECT_FALSE(limiter.enabled());
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(limiter.Admit("gw", kT0).ok());
  EXPECT_EQ(limiter.tracked(), 0u);
}

TEST(RateLimiterTest, BurstThenRefusedWithTheDelayUntilTheNextToken) {
  RateLimiter limiter(RateLimit{.rate = 2, .burst = 3});
  ASSERT_TRUE(limiter.enabled());
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(limiter.Admit("gw-a", kT0).ok()) << i;
  }
  const absl::Status refused = limiter.Admit("gw-a", kT0);
  EXPECT_EQ(refused.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(QuotaSubject(refused), Optional(std::string("caller:gw-a")));
  EXPECT_THAT(RetryDelay(refused), Optional(absl::Milliseconds(500)));
  EXPECT_THAT(std::string(refused.message()), HasSubstr("--caller_rate"));
  // A refused call takes no token: 499 ms later still none, at 500 ms one.
  EXPECT_FALSE(limiter.Admit("gw-a", kT0 + absl::Milliseconds(499)).ok());
  EXPECT_TRUE(limiter.Admit("gw-a", kT0 + absl::Milliseconds(500)).ok());
  EXPECT_FALSE(limiter.Admit("gw-a", kT0 + absl::Milliseconds(500)).ok());
}

TEST(RateLimiterTest, EachKeyHasItsOwnBucket) {
  RateLimiter limiter(RateLimit{.rate = 1, .burst = 1});
  EXPECT_TRUE(limiter.Admit("gw-a", kT0).ok());
  EXPECT_FALSE(limiter.Admit("gw-a", kT0).ok());
  EXPECT_TRUE(limiter.Admit("gw-b", kT0).ok());
  EXPECT_EQ(limiter.tracked(), 2u);
}

TEST(RateLimiterTest, RefillStopsAtTheBurst) {
  RateLimiter limiter(RateLimit{.rate = 10, .burst = 2});
  EXPECT_TRUE(limiter.Admit("gw", kT0).ok());
  // An hour idle refills to the burst (2), not to 36,000.
  const absl::Time later = kT0 + absl::Hours(1);
  EXPECT_TRUE(limiter.Admit("gw", later).ok());
  EXPECT_TRUE(limiter.Admit("gw", later).ok());
  EXPECT_FALSE(limiter.Admit("gw", later).ok());
}

TEST(RateLimiterTest, DefaultBurstIsOneSecondsWorthAtLeastOne) {
  RateLimiter five(RateLimit{.rate = 5});
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(five.Admit("gw", kT0).ok()) << i;
  EXPECT_FALSE(five.Admit("gw", kT0).ok());
  RateLimiter slow(RateLimit{.rate = 0.1});
  EXPECT_TRUE(slow.Admit("gw", kT0).ok());
  const absl::Status refused = slow.Admit("gw", kT0);
  EXPECT_FALSE(refused.ok());
  EXPECT_THAT(RetryDelay(refused), Optional(absl::Seconds(10)));
}

TEST(RateLimiterTest, KeysAreBoundedIdleOnesDroppedBusyOnesKept) {
  RateLimiter limiter(RateLimit{.rate = 1, .burst = 1, .max_keys = 2});
  EXPECT_TRUE(limiter.Admit("a", kT0).ok());
  EXPECT_TRUE(limiter.Admit("b", kT0).ok());
  // Both buckets are empty: a third key is refused, not tracked.
  const absl::Status full = limiter.Admit("c", kT0);
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(QuotaSubject(full), Optional(std::string("callers")));
  EXPECT_EQ(limiter.tracked(), 2u);
  // A second later both have refilled (idle): they are dropped for it.
  EXPECT_TRUE(limiter.Admit("c", kT0 + absl::Seconds(1)).ok());
  EXPECT_LE(limiter.tracked(), 2u);
}

}  // namespace
}  // namespace registrar
