#include "service/id/id_generator.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "service/common/clock.h"
#include "service/id/id.h"
#include "service/id/key_ring.h"
#include "service/model/kind.h"

namespace registrar {
namespace {

constexpr int64_t kStartMs = 1'750'000'000'000;

KeyRing TestKeys(uint32_t version = 0) {
  TagKeyBytes key;
  for (size_t i = 0; i < key.size(); ++i) key[i] = static_cast<uint8_t>(i * 7);
  return KeyRing::FromKey(version, key);
}

uint64_t StampOf(Id128 id) {
  const IdFields f = UnpackId(id);
  return (static_cast<uint64_t>(f.unix_ms) << 12) | f.seq;
}

// Checks ids are strictly increasing as bits and as text of one kind.
void ExpectStrictlyIncreasing(const std::vector<Id128>& ids) {
  for (size_t i = 1; i < ids.size(); ++i) {
    ASSERT_LT(ids[i - 1], ids[i]) << "at " << i;
    ASSERT_LT(StampOf(ids[i - 1]), StampOf(ids[i])) << "at " << i;
    ASSERT_LT(FormatId(Kind::kThread, ids[i - 1]),
              FormatId(Kind::kThread, ids[i]))
        << "at " << i;
  }
}

class FixedClock final : public Clock {
 public:
  explicit FixedClock(absl::Time t) : t_(t) {}
  absl::Time Now() const override { return t_; }

 private:
  absl::Time t_;
};

TEST(IdGeneratorTest, MintsTaggedIdsWithClockNodeAndSigningVersion) {
  FakeClock clock(absl::FromUnixMillis(kStartMs));
  const KeyRing keys = TestKeys(2);
  IdGenerator gen(clock, keys, 77);
  EXPECT_EQ(gen.last_stamp(), 0u);

  const Id128 id = gen.MintOne(Kind::kRun, "acme", "alice").value();
  EXPECT_TRUE(HasV7Layout(id));
  const IdFields f = UnpackId(id);
  EXPECT_EQ(f.unix_ms, kStartMs);
  EXPECT_EQ(f.seq, 0u);
  EXPECT_EQ(f.node, 77u);
  EXPECT_EQ(f.key_version, 2u);
  EXPECT_EQ(gen.last_stamp(), StampOf(id));
  EXPECT_TRUE(keys.Verify(Kind::kRun, id, "acme", "alice"));
  EXPECT_FALSE(keys.Verify(Kind::kRun, id, "acme", "bob"));
  EXPECT_FALSE(keys.Verify(Kind::kThread, id, "acme", "alice"));
  EXPECT_TRUE(ParseId(FormatId(Kind::kRun, id)).ok());
}

TEST(IdGeneratorTest, LaterIdsSortLaterAsBitsAndText) {
  FakeClock clock(absl::FromUnixMillis(kStartMs));
  const KeyRing keys = TestKeys();
  IdGenerator gen(clock, keys, 0);
  std::vector<Id128> ids;
  for (int i = 0; i < 3000; ++i) {
    // Alternate owners: tags differ, order must still follow time.
    ids.push_back(
        gen.MintOne(Kind::kThread, "t", i % 2 ? "alice" : "bob").value());
    if (i % 7 == 0) clock.Advance(absl::Milliseconds(1));
    if (i % 100 == 0) clock.Advance(absl::Seconds(3));
  }
  ExpectStrictlyIncreasing(ids);
  EXPECT_GT(UnpackId(ids.back()).unix_ms, kStartMs + 3000);
}

TEST(IdGeneratorTest, ClockStepBackNeverGoesBackOrRepeats) {
  FakeClock clock(absl::FromUnixMillis(kStartMs));
  const KeyRing keys = TestKeys();
  IdGenerator gen(clock, keys, 1);
  std::vector<Id128> ids;
  for (int i = 0; i < 10; ++i)
    ids.push_back(gen.MintOne(Kind::kRun, "t", "u").value());
  clock.Advance(absl::Milliseconds(5));
  ids.push_back(gen.MintOne(Kind::kRun, "t", "u").value());
  const int64_t high_ms = UnpackId(ids.back()).unix_ms;
  EXPECT_EQ(high_ms, kStartMs + 5);

  clock.Advance(absl::Seconds(-10));  // NTP step back
  for (int i = 0; i < 10; ++i)
    ids.push_back(gen.MintOne(Kind::kRun, "t", "u").value());
  // Minting continues from the last stamp in the last ms handed out.
  EXPECT_EQ(UnpackId(ids.back()).unix_ms, high_ms);
  EXPECT_EQ(UnpackId(ids.back()).seq, 10u);

  clock.Set(absl::FromUnixMillis(kStartMs + 20));  // wall clock catches up
  ids.push_back(gen.MintOne(Kind::kRun, "t", "u").value());
  EXPECT_EQ(UnpackId(ids.back()).unix_ms, kStartMs + 20);
  EXPECT_EQ(UnpackId(ids.back()).seq, 0u);
  ExpectStrictlyIncreasing(ids);
}

TEST(IdGeneratorTest, BorrowsAheadWhenAMillisecondIsUsedUp) {
  FakeClock clock(absl::FromUnixMillis(kStartMs));  // never moves here
  const KeyRing keys = TestKeys();
  IdGenerator gen(clock, keys, 0);
  std::vector<Id128> ids;
  for (int i = 0; i < 3 * 4096 + 5; ++i) {
    ids.push_back(gen.MintOne(Kind::kRequest, "t", "u").value());
  }
  ExpectStrictlyIncreasing(ids);
  EXPECT_EQ(UnpackId(ids[4095]).unix_ms, kStartMs);
  EXPECT_EQ(UnpackId(ids[4095]).seq, 4095u);
  EXPECT_EQ(UnpackId(ids[4096]).unix_ms, kStartMs + 1);
  EXPECT_EQ(UnpackId(ids[4096]).seq, 0u);
  EXPECT_EQ(UnpackId(ids.back()).unix_ms, kStartMs + 3);
  EXPECT_EQ(UnpackId(ids.back()).seq, 4u);

  // The clock reaching a borrowed ms does not reuse its stamps.
  clock.Set(absl::FromUnixMillis(kStartMs + 3));
  const Id128 next = gen.MintOne(Kind::kRequest, "t", "u").value();
  EXPECT_EQ(UnpackId(next).unix_ms, kStartMs + 3);
  EXPECT_EQ(UnpackId(next).seq, 5u);
}

TEST(IdGeneratorTest, BatchIsOneContiguousReservation) {
  FakeClock clock(absl::FromUnixMillis(kStartMs));
  const KeyRing keys = TestKeys();
  IdGenerator gen(clock, keys, 0);
  std::vector<Id128> out = {Id128{}};  // Mint appends, keeps what is there
  ASSERT_TRUE(gen.Mint(Kind::kConnection, "t", "u", 5000, &out).ok());
  ASSERT_EQ(out.size(), 5001u);
  EXPECT_TRUE(out[0].is_zero());
  for (size_t i = 2; i < out.size(); ++i) {
    ASSERT_EQ(StampOf(out[i]), StampOf(out[i - 1]) + 1) << i;
  }
  EXPECT_EQ(StampOf(out[1]), uint64_t{kStartMs} << 12);
  EXPECT_EQ(gen.last_stamp(), StampOf(out.back()));
  for (size_t i = 1; i < out.size(); ++i) {
    ASSERT_TRUE(keys.Verify(Kind::kConnection, out[i], "t", "u")) << i;
  }
  std::vector<Id128> none;
  ASSERT_TRUE(gen.Mint(Kind::kConnection, "t", "u", 0, &none).ok());
  EXPECT_TRUE(none.empty());
}

TEST(IdGeneratorTest, ConcurrentBatchesStayContiguous) {
  FakeClock clock(absl::FromUnixMillis(kStartMs));
  const KeyRing keys = TestKeys();
  IdGenerator gen(clock, keys, 0);
  constexpr int kBatches = 2000;
  constexpr uint32_t kBatchSize = 37;
  std::vector<std::vector<Id128>> per_thread(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int b = 0; b < kBatches; ++b) {
        ASSERT_TRUE(
            gen.Mint(Kind::kRun, "t", "u", kBatchSize, &per_thread[t]).ok());
      }
    });
  }
  for (auto& th : threads) th.join();
  std::vector<Id128> all;
  for (const auto& ids : per_thread) {
    ASSERT_EQ(ids.size(), kBatches * kBatchSize);
    for (size_t b = 0; b < kBatches; ++b) {
      for (size_t i = 1; i < kBatchSize; ++i) {
        const size_t k = b * kBatchSize + i;
        ASSERT_EQ(StampOf(ids[k]), StampOf(ids[k - 1]) + 1) << k;
      }
    }
    all.insert(all.end(), ids.begin(), ids.end());
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end());
  // Nothing was skipped either: the reservations tile the stamp range.
  EXPECT_EQ(StampOf(all.back()) - StampOf(all.front()) + 1, all.size());
}

TEST(IdGeneratorTest, AdvancePastMovesForwardOnly) {
  FakeClock clock(absl::FromUnixMillis(kStartMs));
  const KeyRing keys = TestKeys();
  IdGenerator gen(clock, keys, 0);
  const uint64_t ahead = (uint64_t{kStartMs + 60'000} << 12) | 17;
  gen.AdvancePast(ahead);
  EXPECT_EQ(gen.last_stamp(), ahead);
  EXPECT_EQ(StampOf(gen.MintOne(Kind::kThread, "t", "u").value()), ahead + 1);
  gen.AdvancePast(ahead - 1000);  // a lower stamp is a no-op
  EXPECT_EQ(gen.last_stamp(), ahead + 1);
  EXPECT_EQ(StampOf(gen.MintOne(Kind::kThread, "t", "u").value()), ahead + 2);
}

TEST(IdGeneratorTest, NodeIdIsCarried) {
  FakeClock clock;
  const KeyRing keys = TestKeys();
  IdGenerator gen(clock, keys, kMaxNodeId);
  EXPECT_EQ(gen.node_id(), kMaxNodeId);
  EXPECT_EQ(UnpackId(gen.MintOne(Kind::kThread, "t", "u").value()).node,
            kMaxNodeId);
}

TEST(IdGeneratorTest, OutOfRangeClocksDoNotCrash) {
  const KeyRing keys = TestKeys();
  {
    FixedClock far_future(absl::InfiniteFuture());
    IdGenerator gen(far_future, keys, 0);
    const Id128 a = gen.MintOne(Kind::kThread, "t", "u").value();
    const Id128 b = gen.MintOne(Kind::kThread, "t", "u").value();
    EXPECT_EQ(UnpackId(a).unix_ms, kMaxUnixMs);
    EXPECT_TRUE(HasV7Layout(a));
    EXPECT_LT(a, b);
  }
  {
    FixedClock before_epoch(absl::FromUnixMillis(-5000));
    IdGenerator gen(before_epoch, keys, 0);
    const Id128 a = gen.MintOne(Kind::kThread, "t", "u").value();
    EXPECT_EQ(UnpackId(a).unix_ms, 0);
    EXPECT_EQ(UnpackId(a).seq, 1u);  // stamp 0 means "none yet"
    EXPECT_TRUE(keys.Verify(Kind::kThread, a, "t", "u"));
  }
}

TEST(IdGeneratorTest, TwoThreadsMillionIdsEachAllDistinct) {
  FakeClock clock(absl::FromUnixMillis(kStartMs));
  const KeyRing keys = TestKeys();
  IdGenerator gen(clock, keys, 0);
  constexpr int kPerThread = 1'000'000;
  std::atomic<bool> done{false};
  // The clock jitters forward and back while the minters run.
  std::thread jitter([&] {
    int i = 0;
    while (!done.load(std::memory_order_relaxed)) {
      clock.Advance(i++ % 3 == 2 ? absl::Milliseconds(-5)
                                 : absl::Milliseconds(3));
      std::this_thread::yield();
    }
  });
  std::vector<std::vector<Id128>> per_thread(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      std::vector<Id128>& ids = per_thread[t];
      ids.reserve(kPerThread);
      while (ids.size() < kPerThread) {
        if (ids.size() % 5 == 0) {
          ids.push_back(gen.MintOne(Kind::kThread, "tenant", "user").value());
        } else {
          ASSERT_TRUE(gen.Mint(Kind::kThread, "tenant", "user",
                               std::min<uint32_t>(3, kPerThread - ids.size()),
                               &ids)
                          .ok());
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  done = true;
  jitter.join();

  std::vector<Id128> all;
  all.reserve(2 * kPerThread);
  for (const auto& ids : per_thread) {
    ASSERT_EQ(ids.size(), static_cast<size_t>(kPerThread));
    // Each caller sees its own IDs strictly increase.
    for (size_t i = 1; i < ids.size(); ++i) {
      ASSERT_LT(ids[i - 1], ids[i]) << i;
    }
    all.insert(all.end(), ids.begin(), ids.end());
  }
  std::sort(all.begin(), all.end());
  EXPECT_EQ(std::adjacent_find(all.begin(), all.end()), all.end());
  EXPECT_EQ(gen.last_stamp(), StampOf(all.back()));
}

}  // namespace
}  // namespace registrar

namespace registrar {
namespace {

// Invariant 5: nothing is minted at or above a persisted high-water mark,
// the mark moves ahead before use, and a failed persist mints nothing.
TEST(IdGeneratorHighWaterTest, PersistsAheadOfUseAndFailsClosed) {
  FakeClock clock(absl::FromUnixMillis(1'000'000));
  const KeyRing keys = KeyRing::Generate();
  IdGenerator gen(clock, keys, 0);
  std::vector<int64_t> persisted;
  bool fail = false;
  gen.SetHighWater(0, absl::Seconds(3), [&](int64_t until_ms) {
    if (fail) return absl::UnavailableError("disk full");
    persisted.push_back(until_ms);
    return absl::OkStatus();
  });
  absl::StatusOr<Id128> first = gen.MintOne(Kind::kThread, "t", "u");
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(persisted.size(), 1u);
  EXPECT_GT(persisted[0], UnpackId(*first).unix_ms);
  EXPECT_EQ(gen.high_water_ms(), persisted[0]);

  // Within the window: no further persist.
  clock.Advance(absl::Seconds(1));
  ASSERT_TRUE(gen.MintOne(Kind::kThread, "t", "u").ok());
  EXPECT_EQ(persisted.size(), 1u);

  // Past the window the mark must move first; if it cannot, nothing mints.
  clock.Advance(absl::Seconds(5));
  fail = true;
  std::vector<Id128> out;
  EXPECT_EQ(gen.Mint(Kind::kRun, "t", "u", 10, &out).code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(out.empty());
  fail = false;
  ASSERT_TRUE(gen.Mint(Kind::kRun, "t", "u", 10, &out).ok());
  ASSERT_EQ(persisted.size(), 2u);
  for (const Id128& id : out) EXPECT_LT(UnpackId(id).unix_ms, persisted[1]);
}

TEST(IdGeneratorHighWaterTest, RestartWithClockSetBackStaysAboveTheMark) {
  FakeClock clock(absl::FromUnixMillis(5'000'000));
  const KeyRing keys = KeyRing::Generate();
  int64_t mark = 0;
  Id128 last_before;
  {
    IdGenerator gen(clock, keys, 0);
    gen.SetHighWater(0, absl::Seconds(3), [&](int64_t until_ms) {
      mark = until_ms;
      return absl::OkStatus();
    });
    for (int i = 0; i < 100; ++i) {
      last_before = gen.MintOne(Kind::kThread, "t", "u").value();
    }
  }
  clock.Set(absl::FromUnixMillis(1'000'000));  // an hour and more back
  IdGenerator gen(clock, keys, 0);
  gen.AdvancePast((static_cast<uint64_t>(mark) << 12) - 1);
  gen.SetHighWater(mark, absl::Seconds(3), [&](int64_t until_ms) {
    mark = until_ms;
    return absl::OkStatus();
  });
  const Id128 after = gen.MintOne(Kind::kThread, "t", "u").value();
  EXPECT_GT(after, last_before);
  EXPECT_GE(UnpackId(after).unix_ms, 5'000'000);
}

TEST(IdGeneratorHighWaterTest, ExtendHighWaterMovesAheadOnlyWhenHalfUsed) {
  FakeClock clock(absl::FromUnixMillis(1'000'000));
  const KeyRing keys = KeyRing::Generate();
  IdGenerator gen(clock, keys, 0);
  int calls = 0;
  gen.SetHighWater(1'000'000 + 3000, absl::Seconds(3), [&](int64_t) {
    ++calls;
    return absl::OkStatus();
  });
  ASSERT_TRUE(gen.ExtendHighWater().ok());
  EXPECT_EQ(calls, 0);
  clock.Advance(absl::Seconds(2));
  ASSERT_TRUE(gen.ExtendHighWater().ok());
  EXPECT_EQ(calls, 1);
  EXPECT_GT(gen.high_water_ms(), 1'000'000 + 3000);
}

}  // namespace
}  // namespace registrar
