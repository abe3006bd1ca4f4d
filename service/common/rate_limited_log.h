#ifndef REGISTRAR_SERVICE_COMMON_RATE_LIMITED_LOG_H_
#define REGISTRAR_SERVICE_COMMON_RATE_LIMITED_LOG_H_

// Warnings that can repeat (a store that cannot write, a full disk) are
// written at most once per interval per call site; the next line written
// says how many were left out meanwhile:
//
//   REGISTRAR_LOG_EVERY_INTERVAL(warn, "ID clock high-water mark not "
//                                "stored: {}", message);
//
// The interval is process-wide (--log_repeat_interval, default 10 s).

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "spdlog/spdlog.h"

namespace registrar {

// The interval of every rate-limited call site. Thread-safe.
void SetLogRepeatInterval(absl::Duration interval);
absl::Duration LogRepeatInterval();

// One call site's gate. Thread-safe, lock-free.
class RepeatedLogGate {
 public:
  // True when a line may be written at `now` (the first call, or one
  // interval after the last line written); then *suppressed is the number
  // of calls refused since that line.
  bool Allow(absl::Time now, uint64_t* suppressed);

 private:
  std::atomic<int64_t> next_allowed_ns_{INT64_MIN};
  std::atomic<uint64_t> suppressed_{0};
};

// "" or " (N similar lines suppressed)".
std::string SuppressedNote(uint64_t suppressed);

}  // namespace registrar

// `level` is an spdlog function name (warn, error, ...); `fmt` a string
// literal followed by at least one argument.
#define REGISTRAR_LOG_EVERY_INTERVAL(level, fmt, ...)                       \
  do {                                                                      \
    static ::registrar::RepeatedLogGate registrar_log_gate_;                \
    uint64_t registrar_suppressed_ = 0;                                     \
    if (registrar_log_gate_.Allow(::absl::Now(), &registrar_suppressed_)) { \
      ::spdlog::level(fmt "{}", __VA_ARGS__,                                \
                      ::registrar::SuppressedNote(registrar_suppressed_));  \
    }                                                                       \
  } while (0)

#endif  // REGISTRAR_SERVICE_COMMON_RATE_LIMITED_LOG_H_
