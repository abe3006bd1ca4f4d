#include "service/common/rate_limited_log.h"

#include "absl/strings/str_cat.h"

namespace registrar {
namespace {

std::atomic<int64_t> interval_ns{absl::ToInt64Nanoseconds(absl::Seconds(10))};

}  // namespace

void SetLogRepeatInterval(absl::Duration interval) {
  interval_ns.store(absl::ToInt64Nanoseconds(interval),
                    std::memory_order_relaxed);
}

absl::Duration LogRepeatInterval() {
  return absl::Nanoseconds(interval_ns.load(std::memory_order_relaxed));
}

bool RepeatedLogGate::Allow(absl::Time now, uint64_t* suppressed) {
  const int64_t now_ns = absl::ToUnixNanos(now);
  int64_t next = next_allowed_ns_.load(std::memory_order_relaxed);
  if (now_ns < next ||
      !next_allowed_ns_.compare_exchange_strong(
          next, now_ns + interval_ns.load(std::memory_order_relaxed),
          std::memory_order_acq_rel)) {
    suppressed_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  *suppressed = suppressed_.exchange(0, std::memory_order_acq_rel);
  return true;
}

std::string SuppressedNote(uint64_t suppressed) {
  if (suppressed == 0) return "";
  return absl::StrCat(" (", suppressed, " more like this since the last one)");
}

}  // namespace registrar
