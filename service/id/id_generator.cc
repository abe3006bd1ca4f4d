#include "service/id/id_generator.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/time/time.h"

namespace registrar {
namespace {

constexpr int kSeqBits = 12;

// Current wall-clock ms, clamped to what 48 bits can hold: a clock before
// 1970 mints at ms 0 and one after year 10889 stays at the last ms (stamps
// still increase; PackId masks the ms, so nothing crashes).
uint64_t NowMs(const Clock& clock) {
  const int64_t ms = absl::ToUnixMillis(clock.Now());
  return static_cast<uint64_t>(std::clamp<int64_t>(ms, 0, kMaxUnixMs));
}

Id128 MakeId(const KeyRing& keys, uint32_t node, uint64_t stamp, Kind kind,
             std::string_view tenant, std::string_view user_id) {
  IdFields f;
  f.unix_ms = static_cast<int64_t>(stamp >> kSeqBits);
  f.seq = static_cast<uint32_t>(stamp & kMaxSeq);
  f.node = node;
  f.key_version = keys.signing_version();
  f.tag = keys.ComputeTag(f.key_version, kind, f, tenant, user_id);
  return PackId(f);
}

}  // namespace

IdGenerator::IdGenerator(const Clock& clock, const KeyRing& keys,
                         uint32_t node_id)
    : clock_(clock), keys_(&keys), node_id_(node_id & kMaxNodeId) {}

void IdGenerator::SetKeys(KeyRing keys) {
  absl::MutexLock lock(&keys_mu_);
  replaced_.push_back(std::make_unique<const KeyRing>(std::move(keys)));
  keys_.store(replaced_.back().get(), std::memory_order_release);
}

void IdGenerator::SetHighWater(int64_t persisted_until_ms,
                               absl::Duration window, PersistFn persist) {
  absl::MutexLock lock(&extend_mu_);
  window_ = window;
  persist_ = std::move(persist);
  ceiling_ms_.store(persisted_until_ms, std::memory_order_release);
}

absl::Status IdGenerator::Extend(int64_t needed_ms) {
  absl::MutexLock lock(&extend_mu_);
  const int64_t ceiling = ceiling_ms_.load(std::memory_order_acquire);
  if (needed_ms < ceiling || !persist_) return absl::OkStatus();
  const int64_t until =
      std::max<int64_t>(needed_ms, static_cast<int64_t>(NowMs(clock_))) +
      absl::ToInt64Milliseconds(window_) + 1;
  if (absl::Status s = persist_(until); !s.ok()) return s;
  ceiling_ms_.store(until, std::memory_order_release);
  return absl::OkStatus();
}

absl::Status IdGenerator::ExtendHighWater() {
  const int64_t ceiling = ceiling_ms_.load(std::memory_order_acquire);
  if (ceiling == INT64_MAX) return absl::OkStatus();
  int64_t window_ms;
  {
    absl::MutexLock lock(&extend_mu_);
    window_ms = absl::ToInt64Milliseconds(window_);
  }
  const int64_t used_ms = std::max<int64_t>(
      static_cast<int64_t>(NowMs(clock_)),
      static_cast<int64_t>(last_.load(std::memory_order_acquire) >> kSeqBits));
  if (ceiling - used_ms > window_ms / 2) return absl::OkStatus();
  return Extend(ceiling);
}

absl::StatusOr<uint64_t> IdGenerator::Reserve(uint32_t count) {
  const uint64_t now_stamp = NowMs(clock_) << kSeqBits;
  uint64_t last = last_.load(std::memory_order_acquire);
  for (;;) {
    // last + 1 keeps stamps strictly increasing when the clock stands still
    // or steps back, and rolls seq over into the next ms (borrowing ahead)
    // when a ms's 4096 values are used up.
    const uint64_t start = std::max(now_stamp, last + 1);
    const uint64_t end = start + count - 1;
    // The mark only grows, so a stamp below it now stays below it.
    const int64_t end_ms = static_cast<int64_t>(end >> kSeqBits);
    if (end_ms >= ceiling_ms_.load(std::memory_order_acquire)) {
      if (absl::Status s = Extend(end_ms); !s.ok()) return s;
      last = last_.load(std::memory_order_acquire);
      continue;
    }
    if (last_.compare_exchange_weak(last, end, std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
      return start;
    }
  }
}

void IdGenerator::AdvancePast(uint64_t stamp) {
  uint64_t last = last_.load(std::memory_order_acquire);
  while (last < stamp &&
         !last_.compare_exchange_weak(last, stamp, std::memory_order_acq_rel,
                                      std::memory_order_acquire)) {
  }
}

absl::Status IdGenerator::Mint(Kind kind, std::string_view tenant,
                               std::string_view user_id, uint32_t count,
                               std::vector<Id128>* out) {
  if (count == 0) return absl::OkStatus();
  absl::StatusOr<uint64_t> start = Reserve(count);
  if (!start.ok()) return start.status();
  out->reserve(out->size() + count);
  const KeyRing& ring = keys();
  const uint32_t node = node_id();
  for (uint32_t i = 0; i < count; ++i) {
    out->push_back(MakeId(ring, node, *start + i, kind, tenant, user_id));
  }
  return absl::OkStatus();
}

absl::StatusOr<Id128> IdGenerator::MintOne(Kind kind, std::string_view tenant,
                                           std::string_view user_id) {
  absl::StatusOr<uint64_t> stamp = Reserve(1);
  if (!stamp.ok()) return stamp.status();
  return MakeId(keys(), node_id(), *stamp, kind, tenant, user_id);
}

}  // namespace registrar
