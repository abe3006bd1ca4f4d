#include <algorithm>
#include <deque>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "service/common/status_macros.h"
#include "service/registry/end_op.h"
#include "service/registry/registry.h"
#include "service/registry/registry_util.h"
#include "service/registry/shard.h"
#include "spdlog/spdlog.h"

namespace registrar {

using registry_internal::Counters;
using registry_internal::Shard;
using Ref = RecordTable::Ref;

namespace registry_internal {

// Fills shards from a store's Load on several threads: the Load thread
// decodes and hands records over in batches; each worker owns the shards
// whose index is its number modulo the worker count, so no shard is shared.
// Bounded queues cap what is in flight.
class ParallelLoader {
 public:
  ParallelLoader(std::vector<std::unique_ptr<Shard>>& shards,
                 Counters& counters)
      : shards_(shards), counters_(counters) {
    const unsigned cores = std::max(1u, std::thread::hardware_concurrency());
    workers_.resize(std::min<size_t>(cores, shards.size()));
    for (size_t w = 0; w < workers_.size(); ++w) {
      workers_[w].thread = std::thread([this, w] { Run(workers_[w]); });
    }
  }
  ~ParallelLoader() { Finish(); }

  void Add(uint32_t shard, RecordView&& r) {
    Worker& w = workers_[shard % workers_.size()];
    w.pending.emplace_back(shard, std::move(r));
    if (w.pending.size() >= kBatch) Hand(w);
  }

  // Hands over what is left and waits for every worker.
  void Finish() {
    if (finished_) return;
    finished_ = true;
    for (Worker& w : workers_) {
      Hand(w);
      absl::MutexLock lock(&w.mu);
      w.done = true;
    }
    for (Worker& w : workers_) w.thread.join();
  }

 private:
  static constexpr size_t kBatch = 4096;
  static constexpr size_t kMaxQueued = 8;
  using Batch = std::vector<std::pair<uint32_t, RecordView>>;

  struct Worker {
    absl::Mutex mu;
    std::deque<Batch> queue ABSL_GUARDED_BY(mu);
    bool done ABSL_GUARDED_BY(mu) = false;
    Batch pending;  // Load thread only
    std::thread thread;
  };

  void Hand(Worker& w) {
    if (w.pending.empty()) return;
    absl::MutexLock lock(&w.mu);
    auto room = [&w]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(w.mu) {
      return w.queue.size() < kMaxQueued;
    };
    w.mu.Await(absl::Condition(&room));
    w.queue.push_back(std::move(w.pending));
    w.pending = Batch();
    w.pending.reserve(kBatch);
  }

  void Run(Worker& w) {
    for (;;) {
      Batch batch;
      {
        absl::MutexLock lock(&w.mu);
        auto ready = [&w]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(w.mu) {
          return w.done || !w.queue.empty();
        };
        w.mu.Await(absl::Condition(&ready));
        if (w.queue.empty()) return;
        batch = std::move(w.queue.front());
        w.queue.pop_front();
      }
      // Counted per batch: shared atomics per record would bounce a cache
      // line between the workers.
      uint64_t live[kNumKinds] = {};
      uint64_t tombstones = 0;
      for (auto& [shard, r] : batch) {
        if (r.state == State::kLive) {
          ++live[static_cast<int>(r.kind)];
        } else {
          ++tombstones;
        }
        Restore(*shards_[shard], std::move(r));
      }
      for (int k = 0; k < kNumKinds; ++k) {
        counters_.live[k].fetch_add(live[k], std::memory_order_relaxed);
      }
      counters_.tombstones.fetch_add(tombstones, std::memory_order_relaxed);
    }
  }

  // Only the one worker that owns the shard touches it while loading.
  void Restore(Shard& shard, RecordView&& r) ABSL_NO_THREAD_SAFETY_ANALYSIS {
    shard.table.Restore(std::move(r));
  }

  std::vector<std::unique_ptr<Shard>>& shards_;
  Counters& counters_;
  std::deque<Worker> workers_;
  bool finished_ = false;
};

}  // namespace registry_internal

using registry_internal::ParallelLoader;

absl::Status Registry::Recover() {
  const absl::Time now = Now();
  uint64_t count = 0;
  // Size the tables once rather than growing (and rehashing) them.
  const uint64_t hint = store_->ApproximateRecordCount();
  for (const auto& shard : shards_) {
    absl::MutexLock lock(&shard->mu);
    shard->table.Reserve(hint / shards_.size() + hint / shards_.size() / 8);
  }
  // Nothing else touches the registry before Recover returns, and the store
  // may hold its own locks while it calls back: the load takes no shard
  // lock; each shard is filled by exactly one loader thread.
  ParallelLoader loader(shards_, counters_);
  ASSIGN_OR_RETURN(StoreMeta meta, store_->Load([&](RecordView&& r) {
    loader.Add(ShardIndex(r.owner), std::move(r));
    ++count;
  }));
  loader.Finish();
  for (const auto& shard : shards_) {
    absl::MutexLock lock(&shard->mu);
    shard->table.FinishRestore();
  }
  // Every lease gets a fresh full TTL, so a restart never mass-expires
  // connections (as etcd does).
  for (const LeaseView& lease : meta.leases) {
    lessor_.Grant(lease.id, lease.holder, lease.ttl, now, lease.grantor);
  }
  // Rebind live connections to their leases; a connection whose lease is
  // gone ends now, as expired, in one batch (the write path of any end).
  auto op = std::make_unique<EndOp>(
      Ended{EndCause::kLeaseExpired,
            State::kExpired,
            registry_internal::ReasonFor(EndCause::kLeaseExpired, ""),
            {},
            {}});
  for (uint32_t i = 0; i < shards_.size(); ++i) op->shards.push_back(i);
  op->collect = [this, now](uint32_t i, RecordTable& table,
                            std::vector<Ref>* out) {
    std::vector<Ref> lost;
    table.ForEachLeasedConnection([&](Ref r, Id128 lease) {
      const BoundConnection bound{table.id(r), i};
      if (!lessor_.Attach(lease, {&bound, 1}, now).ok()) lost.push_back(r);
    });
    absl::flat_hash_set<Ref> seen;
    for (const Ref r : lost) table.CollectCascade(r, out, &seen);
  };
  uint64_t orphans = 0;
  RETURN_IF_ERROR(registry_internal::Await<absl::Status>(
      [&](absl::AnyInvocable<void(absl::Status) &&> answer) {
        op->done = [&, answer = std::move(answer)](absl::Status s,
                                                   EndOp& op) mutable {
          if (s.ok()) {
            Report(op.ended);
            orphans = op.ended.records.size();
          }
          std::move(answer)(std::move(s));
        };
        StartEnd(std::move(op));
      }));

  AdoptClockHighWater(meta.clock_high_water_ms);
  spdlog::info(
      "recovered {} records ({} live), {} leases, revision {}, ID clock "
      "high-water mark {} ms; {} connections without a lease ended",
      count, count - counters_.tombstones.load(), meta.leases.size(),
      meta.revision, meta.clock_high_water_ms, orphans);
  return absl::OkStatus();
}

void Registry::AdoptClockHighWater(uint64_t clock_high_water_ms) {
  // IDs stay above everything that may have been issued before, whatever the
  // wall clock says now.
  const int64_t mark = static_cast<int64_t>(clock_high_water_ms);
  if (mark > 0) ids_.AdvancePast((static_cast<uint64_t>(mark) << 12) - 1);
  Store* store = store_;
  ids_.SetHighWater(mark, options_.clock_window, [store](int64_t until_ms) {
    WriteBatch batch;
    batch.clock_high_water_ms = static_cast<uint64_t>(until_ms);
    return store->Commit(&batch);
  });
}

void Registry::TakeOver(uint64_t clock_high_water_ms) {
  lessor_.RestartAll(Now());
  AdoptClockHighWater(clock_high_water_ms);
  spdlog::info(
      "took over as the writer: {} leases restarted their TTL, ID clock "
      "high-water mark {} ms",
      lessor_.size(), clock_high_water_ms);
}

}  // namespace registrar
