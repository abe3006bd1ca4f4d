// The registry's routing: owners to shards, the commit queue, sizes.
// The operations live beside it: registry_add.cc (Issue, OpenContext),
// registry_read.cc (Validate, Describe, ListOwned), registry_end.cc
// (Cleanup and the shared end sequence), registry_lease.cc (leases,
// expiry, tombstones), registry_recovery.cc (start).

#include "service/registry/registry.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "service/registry/shard.h"
#include "service/store/memory_store.h"
#include "spdlog/spdlog.h"

namespace registrar {
using Ref = RecordTable::Ref;
using OwnerRef = RecordTable::OwnerRef;
constexpr Ref kNone = RecordTable::kNone;

// ---------------------------------------------------------------------------

Registry::Registry(const RegistryOptions& options, const Clock& clock,
                   IdGenerator& ids, RegistryObserver* observer, Store* store)
    : options_(options),
      clock_(clock),
      ids_(ids),
      observer_(observer),
      owned_store_(store == nullptr ? std::make_unique<MemoryStore>()
                                    : nullptr),
      store_(store == nullptr ? owned_store_.get() : store),
      commits_(*store_) {
  const uint32_t n = std::max<uint32_t>(1, options_.shards);
  shards_.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    auto shard = std::make_unique<Shard>();
    shard->table.set_owner_tombstone_cap(options_.owner_tombstones);
    shards_.push_back(std::move(shard));
  }
}

Registry::~Registry() {
  absl::MutexLock lock(&drops_mu_);
  drops_mu_.Await(absl::Condition(
      +[](int64_t* n) { return *n == 0; }, &drops_in_flight_));
}

uint32_t Registry::ShardIndex(const Owner& owner) const {
  return static_cast<uint32_t>(absl::HashOf(owner) % shards_.size());
}

Registry::Shard& Registry::ShardFor(const Owner& owner) const {
  return *shards_[ShardIndex(owner)];
}

Kind Registry::FindElsewhere(Id128 id, const Shard* skip,
                             const TenantFilter& visible) const {
  for (const auto& shard : shards_) {
    if (shard.get() == skip) continue;
    absl::ReaderMutexLock lock(&shard->mu);
    const Ref r = shard->table.FindCommitted(id);
    if (r == kNone) continue;
    if (visible &&
        !visible(shard->table.owner(shard->table.owner_of(r)).tenant)) {
      return Kind::kUnspecified;
    }
    return shard->table.kind(r);
  }
  return Kind::kUnspecified;
}

void Registry::CountLive(absl::Span<const RecordView> records) {
  for (const RecordView& r : records) {
    counters_.live[static_cast<int>(r.kind)].fetch_add(
        1, std::memory_order_relaxed);
  }
}

void Registry::Report(const Ended& ended) {
  if (observer_ == nullptr) return;
  for (int k = 0; k < kNumKinds; ++k) {
    if (ended.count[k] > 0) {
      observer_->OnEnded(static_cast<Kind>(k), ended.cause, ended.count[k]);
    }
  }
}

void Registry::Enqueue(WriteBatch batch, CommitQueue::Done done) {
  const absl::Time queued_at = absl::Now();
  commits_.Enqueue(
      std::move(batch), [this, queued_at, done = std::move(done)](
                            WriteBatch& b, absl::Status s) mutable {
        if (observer_) {
          observer_->OnStoreCommit(absl::Now() - queued_at, s.ok());
        }
        std::move(done)(b, std::move(s));
      });
}

RecordTable::Memory Registry::MemoryUsage() const {
  RecordTable::Memory total;
  for (const auto& shard : shards_) {
    absl::ReaderMutexLock lock(&shard->mu);
    const RecordTable::Memory m = shard->table.MemoryUsage();
    total.nodes += m.nodes;
    total.id_index += m.id_index;
    total.extras += m.extras;
    total.owners += m.owners;
    total.owner_ids += m.owner_ids;
    total.tombstones += m.tombstones;
    total.ghosts += m.ghosts;
  }
  return total;
}

RegistryStats Registry::Stats() const {
  RegistryStats stats;
  for (int k = 0; k < kNumKinds; ++k) {
    stats.live_records[k] = counters_.live[k].load(std::memory_order_relaxed);
  }
  stats.tombstones = counters_.tombstones.load(std::memory_order_relaxed);
  stats.tombstones_dropped_early =
      counters_.tombstones_dropped_early.load(std::memory_order_relaxed);
  const RecordTable::Memory m = MemoryUsage();
  stats.memory_bytes =
      m.nodes + m.id_index + m.extras + m.owners + m.owner_ids + m.tombstones;
  stats.leases = lessor_.size();
  const CommitStats commits = store_->commit_stats();
  stats.store_revision = store_->LastRevision();
  stats.store_batches = commits.batches;
  stats.store_writes = commits.writes;
  return stats;
}

}  // namespace registrar
