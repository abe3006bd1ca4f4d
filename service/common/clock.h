#ifndef REGISTRAR_SERVICE_COMMON_CLOCK_H_
#define REGISTRAR_SERVICE_COMMON_CLOCK_H_

#include <atomic>
#include <cstdint>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace registrar {

// Source of wall-clock time for the core. Everything that depends on time
// (ID timestamps, lease deadlines, tombstone retention) takes a Clock& so
// tests can step time instead of sleeping. Implementations are thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
};

// The system wall clock, optionally shifted by a fixed offset (tests use the
// offset to start a server with its clock set back).
class SystemClock final : public Clock {
 public:
  explicit SystemClock(absl::Duration offset = absl::ZeroDuration())
      : offset_(offset) {}
  absl::Time Now() const override { return absl::Now() + offset_; }

 private:
  const absl::Duration offset_;
};

// A clock that moves only when told to. Thread-safe.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixMillis(1'750'000'000'000))
      : nanos_(absl::ToUnixNanos(start)) {}
  absl::Time Now() const override {
    return absl::FromUnixNanos(nanos_.load(std::memory_order_acquire));
  }
  void Set(absl::Time t) {
    nanos_.store(absl::ToUnixNanos(t), std::memory_order_release);
  }
  void Advance(absl::Duration d) {
    nanos_.fetch_add(absl::ToInt64Nanoseconds(d), std::memory_order_acq_rel);
  }

 private:
  std::atomic<int64_t> nanos_;
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_COMMON_CLOCK_H_
