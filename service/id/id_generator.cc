#include "service/id/id_generator.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string_view>
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
    : clock_(clock), keys_(keys), node_id_(node_id & kMaxNodeId) {}

uint64_t IdGenerator::Reserve(uint32_t count) {
  const uint64_t now_stamp = NowMs(clock_) << kSeqBits;
  uint64_t last = last_.load(std::memory_order_acquire);
  for (;;) {
    // last + 1 keeps stamps strictly increasing when the clock stands still
    // or steps back, and rolls seq over into the next ms (borrowing ahead)
    // when a ms's 4096 values are used up.
    const uint64_t start = std::max(now_stamp, last + 1);
    const uint64_t end = start + count - 1;
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

void IdGenerator::Mint(Kind kind, std::string_view tenant,
                       std::string_view user_id, uint32_t count,
                       std::vector<Id128>* out) {
  if (count == 0) return;
  const uint64_t start = Reserve(count);
  out->reserve(out->size() + count);
  for (uint32_t i = 0; i < count; ++i) {
    out->push_back(MakeId(keys_, node_id_, start + i, kind, tenant, user_id));
  }
}

Id128 IdGenerator::MintOne(Kind kind, std::string_view tenant,
                           std::string_view user_id) {
  return MakeId(keys_, node_id_, Reserve(1), kind, tenant, user_id);
}

}  // namespace registrar
