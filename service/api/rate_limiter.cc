#include "service/api/rate_limiter.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "service/common/absl_compat.h"
#include "service/common/field_error.h"

namespace registrar {

RateLimiter::RateLimiter(const RateLimit& limit)
    : limit_(limit),
      burst_(limit.burst > 0 ? limit.burst : std::max(1.0, limit.rate)) {}

void RateLimiter::DropIdle(absl::Time now) {
  absl::erase_if(buckets_, [&](const auto& entry) {
    const Bucket& b = entry.second;
    return b.tokens + absl::ToDoubleSeconds(now - b.updated) * limit_.rate >=
           burst_;
  });
}

absl::Status RateLimiter::Admit(std::string_view key, absl::Time now) {
  if (!enabled()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  auto it = buckets_.find(AsAbsl(key));
  if (it == buckets_.end()) {
    if (buckets_.size() >= limit_.max_keys) DropIdle(now);
    if (buckets_.size() >= limit_.max_keys) {
      return QuotaExceeded("callers",
                           absl::StrCat("too many distinct callers being rate "
                                        "limited (",
                                        limit_.max_keys, ")"),
                           absl::Seconds(1));
    }
    it = buckets_.emplace(std::string(key), Bucket{burst_, now}).first;
  }
  Bucket& b = it->second;
  b.tokens = std::min(
      burst_, b.tokens + absl::ToDoubleSeconds(now - b.updated) * limit_.rate);
  b.updated = now;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    return absl::OkStatus();
  }
  const absl::Duration wait = absl::Seconds((1 - b.tokens) / limit_.rate);
  return QuotaExceeded(
      absl::StrCat("caller:", AsAbsl(key)),
      absl::StrFormat("caller %s is over its request rate of %g calls/s "
                      "(burst %g; --caller_rate, --caller_burst)",
                      std::string(key), limit_.rate, burst_),
      wait);
}

size_t RateLimiter::tracked() const {
  absl::MutexLock lock(&mu_);
  return buckets_.size();
}

}  // namespace registrar
