#ifndef REGISTRAR_SERVICE_API_RATE_LIMITER_H_
#define REGISTRAR_SERVICE_API_RATE_LIMITER_H_

// Per-caller request rate limits: a token bucket per key (the caller's name,
// or the peer address when callers are not authenticated), refilled at
// `rate` per second up to `burst`. A call over the rate gets
// RESOURCE_EXHAUSTED with the delay until a token is due, and does nothing.
//
// Memory is bounded: at most `max_keys` buckets are kept; when full, buckets
// that have refilled completely (idle callers) are dropped, and if none has,
// an unknown key is refused rather than tracked.

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace registrar {

struct RateLimit {
  double rate = 0;   // calls per second; 0 = unlimited
  double burst = 0;  // bucket size; 0 = one second's worth (at least 1)
  size_t max_keys = 100'000;
};

class RateLimiter {
 public:
  explicit RateLimiter(const RateLimit& limit);
  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  bool enabled() const { return limit_.rate > 0; }

  // Takes one token of `key`'s bucket at `now`. OK, or RESOURCE_EXHAUSTED
  // (QuotaExceeded: subject "caller:<key>", retry delay until the next
  // token) when the bucket is empty.
  absl::Status Admit(std::string_view key, absl::Time now)
      ABSL_LOCKS_EXCLUDED(mu_);

  size_t tracked() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time updated;
  };
  // Drops buckets that are full again at `now`.
  void DropIdle(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const RateLimit limit_;
  const double burst_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_API_RATE_LIMITER_H_
