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
//  5. With a high-water mark configured (SetHighWater), no ID is handed out
//     at or above the persisted mark: the mark is moved ahead (and persisted
//     through the callback) before the IDs below it are used, as timestamp
//     oracles do. After a restart, AdvancePast(mark) keeps every new ID above
//     everything issued before, even when the wall clock was set back.
// With a distinct node id per running instance, IDs are unique fleet-wide.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/common/clock.h"
#include "service/id/id.h"
#include "service/id/key_ring.h"
#include "service/model/kind.h"

namespace registrar {

class IdGenerator {
 public:
  // `clock` and `keys` must outlive the generator. node_id <= kMaxNodeId.
  IdGenerator(const Clock& clock, const KeyRing& keys, uint32_t node_id);

  // Persists a new high-water mark in ms; OK only once it is durable.
  using PersistFn = std::function<absl::Status(int64_t until_ms)>;

  // From now on, IDs stay below a persisted mark: `persisted_until_ms` is
  // the mark already durable (0: none), `window` how far ahead of use each
  // extension reaches. Call before minting starts.
  void SetHighWater(int64_t persisted_until_ms, absl::Duration window,
                    PersistFn persist);

  // Appends `count` (>= 1; 0 appends nothing) tagged IDs for (kind, owner)
  // to *out, in increasing order. Thread-safe; lock-free unless the
  // high-water mark must move, which fails (nothing appended) when it
  // cannot be persisted.
  absl::Status Mint(Kind kind, std::string_view tenant,
                    std::string_view user_id, uint32_t count,
                    std::vector<Id128>* out);
  absl::StatusOr<Id128> MintOne(Kind kind, std::string_view tenant,
                                std::string_view user_id);

  // Moves the high-water mark ahead when less than half a window is left,
  // so the minting path rarely waits for it. Call periodically.
  absl::Status ExtendHighWater();
  // The persisted high-water mark in ms (0 when none is configured).
  int64_t high_water_ms() const {
    return ceiling_ms_.load(std::memory_order_acquire);
  }

  // The greatest (ms << 12 | seq) handed out so far; 0 before the first.
  uint64_t last_stamp() const { return last_.load(std::memory_order_acquire); }
  // Makes every future stamp greater than `stamp` (used on recovery).
  void AdvancePast(uint64_t stamp);

  uint32_t node_id() const { return node_id_.load(std::memory_order_acquire); }
  // From now on, mint with `node_id` (a cluster replica that lost its node
  // id and claimed another; nothing minted with the old one is recorded
  // after the loss, its store's fence refuses). Thread-safe.
  void set_node_id(uint32_t node_id) {
    node_id_.store(node_id & kMaxNodeId, std::memory_order_release);
  }
  // The keys IDs are tagged and verified with now. The reference stays
  // valid for the generator's life (a replaced ring is kept).
  const KeyRing& keys() const { return *keys_.load(std::memory_order_acquire); }
  // From now on, mint with `keys`' signing key and verify with all of its
  // keys (a key file reloaded without a restart). Thread-safe; rare.
  void SetKeys(KeyRing keys) ABSL_LOCKS_EXCLUDED(keys_mu_);

 private:
  // Reserves `count` consecutive stamps; returns the first.
  absl::StatusOr<uint64_t> Reserve(uint32_t count);
  // Persists a mark above `needed_ms` (and the clock) unless one is already.
  absl::Status Extend(int64_t needed_ms) ABSL_LOCKS_EXCLUDED(extend_mu_);

  const Clock& clock_;
  // The current ring: the one given at construction, or the newest of
  // replaced_ (never freed while the generator lives, so readers need no
  // lock and references they hold stay valid).
  std::atomic<const KeyRing*> keys_;
  absl::Mutex keys_mu_;
  std::vector<std::unique_ptr<const KeyRing>> replaced_
      ABSL_GUARDED_BY(keys_mu_);
  std::atomic<uint32_t> node_id_;
  std::atomic<uint64_t> last_{0};
  // Stamps must stay below ceiling_ms_ << 12. Max value: no mark configured.
  std::atomic<int64_t> ceiling_ms_{INT64_MAX};
  absl::Mutex extend_mu_;
  absl::Duration window_ ABSL_GUARDED_BY(extend_mu_);
  PersistFn persist_ ABSL_GUARDED_BY(extend_mu_);
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_ID_ID_GENERATOR_H_
