// A follower's one way to change its registry: applying what the cluster's
// writer committed (service/cluster/DESIGN.md). Nothing here writes to the
// store, mints an ID or expires a lease.

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "service/registry/registry.h"
#include "service/registry/shard.h"
#include "spdlog/spdlog.h"

namespace registrar {

using registry_internal::Shard;
using Ref = RecordTable::Ref;
constexpr Ref kNone = RecordTable::kNone;

namespace {

State EndedState(EventType type) {
  return type == EventType::kExpired ? State::kExpired : State::kReleased;
}

}  // namespace

uint64_t Registry::ApplyCommitted(const WriteBatch& committed) {
  const absl::Time now = Now();
  // A follower renews no lease (KeepAlive goes to the writer) and expires
  // none, so its leases are held until the writer deletes them: their
  // deadline is only the writer's business. Binding checks "live at the
  // beginning of time", which every held lease is.
  const absl::Time any_time = absl::InfinitePast();
  for (const LeaseView& lease : committed.put_leases) {
    if (lessor_.IsLive(lease.id, any_time)) continue;
    lessor_.Grant(lease.id, lease.holder, lease.ttl, now, lease.grantor);
  }

  uint64_t applied = 0;
  for (const Event& e : committed.events) {
    const RecordView& v = e.record;
    const uint32_t i = ShardIndex(v.owner);
    Shard& shard = *shards_[i];
    const int kind = static_cast<int>(v.kind);
    Id128 detach_from;
    {
      absl::MutexLock lock(&shard.mu);
      RecordTable& table = shard.table;
      Ref r = table.Find(v.id);
      if (r != kNone && table.revision(r) >= e.revision) continue;
      if (e.type == EventType::kIssued) {
        if (r != kNone) continue;  // held already, at an older revision
        RecordView live = v;
        live.state = State::kLive;
        live.revision = e.revision;
        live.ended_at = absl::InfinitePast();
        live.end_reason.clear();
        table.Insert(live);
        counters_.live[kind].fetch_add(1, std::memory_order_relaxed);
        if (v.kind == Kind::kConnection && !v.lease.is_zero()) {
          // The lease may be gone within the same change (granted, bound
          // and revoked in one Txn): then the connection's end follows.
          const BoundConnection bound{v.id, i};
          (void)lessor_.Attach(v.lease, {&bound, 1}, any_time);
        }
      } else {
        if (r == kNone) {
          // Issued before what this follower loaded and not held (cannot
          // happen from a consistent load); keep its end as a tombstone.
          RecordView live = v;
          live.state = State::kLive;
          live.revision = e.revision;
          r = table.Insert(live);
          counters_.live[kind].fetch_add(1, std::memory_order_relaxed);
        }
        if (table.state(r) != State::kLive) continue;
        detach_from = table.lease_of(r);
        table.End(r, EndedState(e.type), absl::ToUnixMillis(v.ended_at),
                  std::make_shared<const std::string>(v.end_reason),
                  e.revision);
        counters_.live[kind].fetch_sub(1, std::memory_order_relaxed);
        counters_.tombstones.fetch_add(1, std::memory_order_relaxed);
      }
    }
    // Outside the shard lock, as everywhere else (a no-op once the lease
    // is gone).
    if (!detach_from.is_zero()) {
      lessor_.Detach(detach_from, BoundConnection{v.id, i});
    }
    ++applied;
  }

  for (const Id128& lease : committed.delete_leases) {
    (void)lessor_.Revoke(lease, any_time);
  }

  // The writer dropped these tombstones (past retention, or early: their
  // owner held too many; Registry::DropExpiredTombstones). A shard holds
  // only its owners' records, so each shard drops those it finds.
  if (!committed.drop_records.empty()) {
    const absl::Span<const Id128> ids(committed.drop_records);
    for (const std::unique_ptr<Shard>& shard : shards_) {
      absl::MutexLock lock(&shard->mu);
      counters_.tombstones.fetch_sub(shard->table.DropTombstones(ids),
                                     std::memory_order_relaxed);
    }
  }
  return applied;
}

}  // namespace registrar
