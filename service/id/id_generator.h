#ifndef REGISTRAR_SERVICE_ID_ID_GENERATOR_H_
#define REGISTRAR_SERVICE_ID_ID_GENERATOR_H_

// Mints IDs for one node.
//
// Invariants (tested with concurrent callers and an injected clock):
//  1. Every (unix_ms, seq) pair handed out is strictly greater than every
//     earlier one from this generator, across all threads.
//  2. When the wall clock steps back, minting continues from the last
//     (ms, seq) handed out: it never goes back and never repeats.
//  3. When a millisecond's 4096 sequence values are used up, minting
//     borrows the next millisecond ahead of the wall clock.
//  4. A batch of `count` IDs is one contiguous reservation.
// With a distinct node id per running instance, IDs are unique fleet-wide.

#include <atomic>
#include <cstdint>
#include <string_view>
#include <vector>

#include "service/common/clock.h"
#include "service/common/kind.h"
#include "service/id/id.h"
#include "service/id/key_ring.h"

namespace registrar {

class IdGenerator {
 public:
  // `clock` and `keys` must outlive the generator. node_id <= kMaxNodeId.
  IdGenerator(const Clock& clock, const KeyRing& keys, uint32_t node_id);

  // Appends `count` (>= 1) tagged IDs for (kind, owner) to *out, in
  // increasing order. Thread-safe and lock-free.
  void Mint(Kind kind, std::string_view tenant, std::string_view user_id,
            uint32_t count, std::vector<Id128>* out);
  Id128 MintOne(Kind kind, std::string_view tenant, std::string_view user_id);

  // The greatest (ms << 12 | seq) handed out so far; 0 before the first.
  uint64_t last_stamp() const { return last_.load(std::memory_order_acquire); }
  // Makes every future stamp greater than `stamp` (used on recovery).
  void AdvancePast(uint64_t stamp);

  uint32_t node_id() const { return node_id_; }
  const KeyRing& keys() const { return keys_; }

 private:
  // Reserves `count` consecutive stamps; returns the first.
  uint64_t Reserve(uint32_t count);

  const Clock& clock_;
  const KeyRing& keys_;
  const uint32_t node_id_;
  std::atomic<uint64_t> last_{0};
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_ID_ID_GENERATOR_H_
