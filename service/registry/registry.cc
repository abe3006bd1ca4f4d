#include "service/registry/registry.h"

#include <algorithm>
#include <deque>
#include <optional>
#include <thread>
#include <utility>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/container/node_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "service/common/absl_compat.h"
#include "service/common/field_error.h"
#include "service/common/rate_limited_log.h"
#include "service/common/status_macros.h"
#include "service/store/memory_store.h"
#include "spdlog/spdlog.h"

namespace registrar {
namespace registry_internal {

using Ref = RecordTable::Ref;
using OwnerRef = RecordTable::OwnerRef;
constexpr Ref kNone = RecordTable::kNone;

// What one call ended, for its reply and for the observer.
struct Ended {
  EndCause cause;
  State state;
  std::shared_ptr<const std::string> reason;
  std::vector<std::pair<Kind, Id128>> records;
  uint64_t count[kNumKinds] = {};

  // Text IDs of everything ended, formatted outside any lock.
  std::vector<std::string> TakeIds() {
    std::vector<std::string> out;
    out.reserve(records.size());
    for (const auto& [kind, id] : records) out.push_back(FormatId(kind, id));
    return out;
  }
};

// One slice of the records, guarded by its mutex. Calls out of a shard go
// only into the Lessor, which never calls back.
struct Shard {
  mutable absl::Mutex mu;
  RecordTable table ABSL_GUARDED_BY(mu);
};

}  // namespace registry_internal

using registry_internal::kNone;
using registry_internal::OwnerRef;
using registry_internal::Ref;

namespace {

std::shared_ptr<const Labels> ShareLabels(const Labels& labels) {
  if (labels.empty()) return EmptyLabels();
  return std::make_shared<const Labels>(labels);
}

// Parses an optional reference field: zero Id128 when empty. InvalidArgument
// naming `field` when the text is not an ID of kind `want`.
absl::StatusOr<Id128> ParseReference(std::string_view field,
                                     std::string_view text, Kind want) {
  if (text.empty()) return Id128{};
  absl::StatusOr<ParsedId> parsed = ParseId(text);
  if (!parsed.ok())
    return InvalidField(field, AsStd(parsed.status().message()));
  if (parsed->kind != want) {
    return InvalidField(
        field,
        absl::StrCat("must be a ", AsAbsl(KindPrefix(want)), "_ ID, got a ",
                     AsAbsl(KindPrefix(parsed->kind)), "_ ID"));
  }
  return parsed->bits;
}

absl::Status QuotaError(uint64_t live, uint64_t adding, uint64_t quota) {
  return FieldError(absl::StatusCode::kResourceExhausted, "owner",
                    absl::StrCat("live record quota exceeded: owner holds ",
                                 live, ", this call adds ", adding,
                                 ", limit is ", quota, " (--owner_quota)"));
}

std::shared_ptr<const std::string> ReasonFor(EndCause cause,
                                             std::string_view reason) {
  return std::make_shared<const std::string>(
      reason.empty() ? std::string(EndCauseName(cause)) : std::string(reason));
}

}  // namespace

std::string_view EndCauseName(EndCause cause) {
  switch (cause) {
    case EndCause::kCleanupIds:
      return "cleanup_ids";
    case EndCause::kCleanupConnection:
      return "cleanup_connection";
    case EndCause::kCleanupOwner:
      return "cleanup_owner";
    case EndCause::kLeaseRevoked:
      return "lease_revoked";
    case EndCause::kLeaseExpired:
      return "lease_expired";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------

Registry::Registry(const RegistryOptions& options, const Clock& clock,
                   IdGenerator& ids, RegistryObserver* observer, Store* store)
    : options_(options),
      clock_(clock),
      ids_(ids),
      observer_(observer),
      owned_store_(store == nullptr ? std::make_unique<MemoryStore>()
                                    : nullptr),
      store_(store == nullptr ? owned_store_.get() : store) {
  const uint32_t n = std::max<uint32_t>(1, options_.shards);
  shards_.reserve(n);
  for (uint32_t i = 0; i < n; ++i) shards_.push_back(std::make_unique<Shard>());
}

Registry::~Registry() = default;

uint32_t Registry::ShardIndex(const Owner& owner) const {
  return static_cast<uint32_t>(absl::HashOf(owner) % shards_.size());
}

Registry::Shard& Registry::ShardFor(const Owner& owner) const {
  return *shards_[ShardIndex(owner)];
}

Kind Registry::FindElsewhere(Id128 id, const Shard* skip) const {
  for (const auto& shard : shards_) {
    if (shard.get() == skip) continue;
    absl::ReaderMutexLock lock(&shard->mu);
    const Ref r = shard->table.FindCommitted(id);
    if (r != kNone) return shard->table.kind(r);
  }
  return Kind::kUnspecified;
}

void Registry::Report(const Ended& ended) {
  if (observer_ == nullptr) return;
  for (int k = 0; k < kNumKinds; ++k) {
    if (ended.count[k] > 0) {
      observer_->OnEnded(static_cast<Kind>(k), ended.cause, ended.count[k]);
    }
  }
}

// ---------------------------------------------------------------------------
// Recovery

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
  // may hold its own locks while it calls back: taking shard locks in the
  // callback would order store locks before shard locks, the reverse of
  // every commit (shard lock, then store). So the load does not lock; each
  // shard is filled by exactly one loader thread.
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
  // gone (its ending was cut short by a crash) ends now, as expired.
  Ended orphans{EndCause::kLeaseExpired,
                State::kExpired,
                ReasonFor(EndCause::kLeaseExpired, ""),
                {},
                {}};
  for (uint32_t i = 0; i < shards_.size(); ++i) {
    Shard& shard = *shards_[i];
    absl::MutexLock lock(&shard.mu);
    std::vector<Ref> lost;
    shard.table.ForEachLeasedConnection([&](Ref r, Id128 lease) {
      const BoundConnection bound{shard.table.id(r), i};
      if (!lessor_.Attach(lease, {&bound, 1}, now).ok()) lost.push_back(r);
    });
    if (lost.empty()) continue;
    std::vector<Ref> ending;
    absl::flat_hash_set<Ref> seen;
    for (const Ref r : lost) shard.table.CollectCascade(r, &ending, &seen);
    RETURN_IF_ERROR(
        EndInShard(shard, i, ending, absl::ToUnixMillis(now), orphans));
  }
  Report(orphans);

  // IDs stay above everything that may have been issued before, whatever the
  // wall clock says now.
  const int64_t mark = static_cast<int64_t>(meta.clock_high_water_ms);
  if (mark > 0) ids_.AdvancePast((static_cast<uint64_t>(mark) << 12) - 1);
  Store* store = store_;
  ids_.SetHighWater(mark, options_.clock_window, [store](int64_t until_ms) {
    WriteBatch batch;
    batch.clock_high_water_ms = static_cast<uint64_t>(until_ms);
    return store->Commit(&batch);
  });
  spdlog::info(
      "recovered {} records ({} live), {} leases, revision {}, ID clock "
      "high-water mark {} ms; {} connections without a lease ended",
      count, count - counters_.tombstones.load(), meta.leases.size(),
      meta.revision, mark, orphans.records.size());
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Committing changes: one batch per call and shard, applied only once stored.

void Registry::CountLive(absl::Span<const RecordView> records) {
  for (const RecordView& r : records) {
    counters_.live[static_cast<int>(r.kind)].fetch_add(
        1, std::memory_order_relaxed);
  }
}

absl::Status Registry::InsertInShard(Shard& shard,
                                     std::vector<RecordView>& records) {
  WriteBatch batch;
  batch.events.reserve(records.size());
  for (RecordView& r : records) {
    batch.events.push_back(Event{0, EventType::kIssued, std::move(r)});
  }
  absl::Status committed = Commit(&batch);
  records.clear();
  for (Event& e : batch.events) records.push_back(std::move(e.record));
  RETURN_IF_ERROR(committed);
  shard.table.InsertAll(records);
  CountLive(records);
  return absl::OkStatus();
}

absl::Status Registry::EndInShard(Shard& shard, uint32_t shard_index,
                                  const std::vector<Ref>& refs, int64_t now_ms,
                                  Ended& ended) {
  if (refs.empty()) return absl::OkStatus();
  RecordTable& table = shard.table;
  WriteBatch batch;
  batch.events.reserve(refs.size());
  const EventType type = ended.state == State::kExpired ? EventType::kExpired
                                                        : EventType::kReleased;
  for (const Ref r : refs) {
    RecordView v = table.View(r);
    v.state = ended.state;
    v.ended_at = absl::FromUnixMillis(now_ms);
    v.end_reason = *ended.reason;
    batch.events.push_back(Event{0, type, std::move(v)});
  }
  RETURN_IF_ERROR(Commit(&batch));
  for (size_t i = 0; i < refs.size(); ++i) {
    const Ref r = refs[i];
    const Event& e = batch.events[i];
    const Kind kind = table.kind(r);
    table.End(r, ended.state, now_ms, ended.reason, e.revision);
    counters_.live[static_cast<int>(kind)].fetch_sub(1,
                                                     std::memory_order_relaxed);
    counters_.tombstones.fetch_add(1, std::memory_order_relaxed);
    // A lease that ended already dropped its connections itself.
    const Id128 lease = table.lease_of(r);
    if (kind == Kind::kConnection && !lease.is_zero() &&
        ended.cause != EndCause::kLeaseRevoked &&
        ended.cause != EndCause::kLeaseExpired) {
      lessor_.Detach(lease, BoundConnection{e.record.id, shard_index});
    }
    ++ended.count[static_cast<int>(kind)];
    ended.records.emplace_back(kind, e.record.id);
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Issue

namespace {

// A record's creation time is the time in its ID (see RecordTable).
RecordView NewRecord(Id128 id, Kind kind, const Owner& owner, Id128 parent,
                     Id128 connection, Id128 lease,
                     const std::shared_ptr<const Labels>& labels) {
  RecordView v;
  v.id = id;
  v.kind = kind;
  v.owner = owner;
  v.parent = parent;
  v.connection = connection;
  v.lease = lease;
  v.labels = labels;
  v.created_at = absl::FromUnixMillis(UnpackId(id).unix_ms);
  v.ended_at = absl::InfinitePast();
  v.state = State::kLive;
  return v;
}

std::vector<std::string> FormatIds(Kind kind, const std::vector<Id128>& ids) {
  std::vector<std::string> out;
  out.reserve(ids.size());
  for (const Id128& id : ids) out.push_back(FormatId(kind, id));
  return out;
}

}  // namespace

absl::StatusOr<Registry::PreparedIssue> Registry::PrepareIssue(
    const IssueSpec& spec) {
  if (!IsRecordKind(spec.kind)) {
    return InvalidField("kind",
                        "must be KIND_THREAD, KIND_RUN, KIND_REQUEST or "
                        "KIND_CONNECTION");
  }
  const uint32_t count = spec.count == 0 ? 1 : spec.count;
  if (count > options_.max_batch) {
    return FieldError(absl::StatusCode::kResourceExhausted, "count",
                      absl::StrCat("is ", count, ", limit is ",
                                   options_.max_batch, " (--max_batch)"));
  }
  PreparedIssue p;
  p.kind = spec.kind;
  p.parent_kind = ParentKindOf(spec.kind);
  if (p.parent_kind == Kind::kUnspecified && !spec.parent_id.empty()) {
    return InvalidField(
        "parent_id",
        absl::StrCat("not allowed for ", AsAbsl(KindName(spec.kind)), "s"));
  }
  if (spec.kind == Kind::kConnection && !spec.connection_id.empty()) {
    return InvalidField("connection_id", "not allowed for connections");
  }
  if (spec.kind != Kind::kConnection && !spec.lease_id.empty()) {
    return InvalidField("lease_id", "allowed only for connections");
  }
  ASSIGN_OR_RETURN(p.parent,
                   ParseReference("parent_id", spec.parent_id, p.parent_kind));
  ASSIGN_OR_RETURN(
      p.connection,
      ParseReference("connection_id", spec.connection_id, Kind::kConnection));
  ASSIGN_OR_RETURN(p.lease,
                   ParseReference("lease_id", spec.lease_id, Kind::kLease));
  // Minting (the keyed tag per ID) happens outside the shard lock.
  p.minted.reserve(count);
  RETURN_IF_ERROR(ids_.Mint(spec.kind, spec.owner.tenant, spec.owner.user_id,
                            count, &p.minted));
  p.shard = ShardIndex(spec.owner);
  return p;
}

absl::Status Registry::AdmitIssue(Shard& shard, const IssueSpec& spec,
                                  const PreparedIssue& p,
                                  std::vector<RecordView>* records,
                                  std::vector<BoundConnection>* bound) {
  RecordTable& table = shard.table;
  const OwnerRef owner = table.FindOwner(spec.owner);
  const uint64_t count = p.minted.size();
  const uint64_t live = table.live_count(owner);
  if (live + count > options_.owner_quota) {
    return QuotaError(live, count, options_.owner_quota);
  }
  if (!p.parent.is_zero() &&
      table.FindLiveOwned(p.parent, p.parent_kind, owner) == kNone) {
    return FieldError(absl::StatusCode::kFailedPrecondition, "parent_id",
                      absl::StrCat("no live ", AsAbsl(KindName(p.parent_kind)),
                                   " of this owner with this id"));
  }
  if (!p.connection.is_zero() &&
      table.FindLiveOwned(p.connection, Kind::kConnection, owner) == kNone) {
    return FieldError(absl::StatusCode::kFailedPrecondition, "connection_id",
                      "no live connection of this owner with this id");
  }
  if (table.HoldsAny(p.minted)) {
    return absl::InternalError("minted an ID that is already recorded");
  }
  if (!p.lease.is_zero()) {
    bound->reserve(p.minted.size());
    for (const Id128& id : p.minted) bound->push_back({id, p.shard});
    RETURN_IF_ERROR(lessor_.Attach(p.lease, *bound, Now(), spec.lease_caller));
  }
  const std::shared_ptr<const Labels> labels = ShareLabels(spec.labels);
  records->reserve(count);
  for (const Id128& id : p.minted) {
    records->push_back(NewRecord(id, spec.kind, spec.owner, p.parent,
                                 p.connection, p.lease, labels));
  }
  return absl::OkStatus();
}

// New records whose commit is queued: what the completion needs.
struct Registry::QueuedInsert {
  uint32_t shard = 0;
  std::vector<Ref> refs;  // of the pending records, by event
  Id128 lease;
  std::vector<BoundConnection> bound;
  WriteBatch batch;
  absl::Time queued_at;
  CommitDone done;
};

void Registry::InsertLater(Shard& shard, uint32_t shard_index,
                           std::vector<RecordView>& records, Id128 lease,
                           std::vector<BoundConnection> bound,
                           CommitDone done) {
  auto q = std::make_unique<QueuedInsert>();
  q->shard = shard_index;
  q->lease = lease;
  q->bound = std::move(bound);
  q->done = std::move(done);
  // Applied now, as pending (revision 0: invisible to reads), and queued
  // under the shard lock, so that anything later that ends them (a
  // cascade, an expiring lease) commits after this batch.
  shard.table.InsertAll(records, &q->refs);
  CountLive(records);
  q->batch.events.reserve(records.size());
  for (RecordView& r : records) {
    q->batch.events.push_back(Event{0, EventType::kIssued, std::move(r)});
  }
  q->queued_at = absl::Now();
  WriteBatch* batch = &q->batch;
  store_->Submit(batch, [this, q = std::move(q)](absl::Status status) mutable {
    FinishInsert(std::move(q), std::move(status));
  });
}

void Registry::FinishInsert(std::unique_ptr<QueuedInsert> q,
                            absl::Status status) {
  if (observer_) {
    observer_->OnStoreCommit(absl::Now() - q->queued_at, status.ok());
  }
  Shard& shard = *shards_[q->shard];
  {
    absl::MutexLock lock(&shard.mu);
    RecordTable& table = shard.table;
    for (size_t i = 0; i < q->batch.events.size(); ++i) {
      const Event& e = q->batch.events[i];
      const Ref r = table.Recheck(q->refs[i], e.record.id);
      // Not pending any more: a cascade ended it meanwhile (committed after
      // this batch, so its revision already says so).
      if (r == kNone || !table.pending(r)) continue;
      if (status.ok()) {
        table.set_revision(r, e.revision);
      } else {
        table.Remove(r);
        counters_.live[static_cast<int>(e.record.kind)].fetch_sub(
            1, std::memory_order_relaxed);
      }
    }
  }
  if (!status.ok()) {
    for (const BoundConnection& b : q->bound) lessor_.Detach(q->lease, b);
  }
  std::move(q->done)(std::move(status));
}

std::vector<std::string> Registry::IssuedIds(const PreparedIssue& p) {
  if (observer_) observer_->OnIssued(p.kind, p.minted.size());
  return FormatIds(p.kind, p.minted);
}

template <typename Prepared, typename Result>
void Registry::AddRecords(
    Prepared p,
    absl::FunctionRef<absl::Status(Shard&, Prepared&, std::vector<RecordView>*,
                                   std::vector<BoundConnection>*)>
        admit,
    Result (Registry::*answer)(const Prepared&),
    absl::AnyInvocable<void(absl::StatusOr<Result>) &&> done) {
  Shard& shard = *shards_[p.shard];
  absl::Status status;
  {
    absl::MutexLock lock(&shard.mu);
    std::vector<RecordView> records;
    std::vector<BoundConnection> bound;
    status = admit(shard, p, &records, &bound);
    if (status.ok() && store_->defers_commits()) {
      const uint32_t shard_index = p.shard;
      const Id128 lease = p.lease;
      InsertLater(shard, shard_index, records, lease, std::move(bound),
                  [this, answer, p = std::move(p),
                   done = std::move(done)](absl::Status committed) mutable {
                    if (committed.ok()) {
                      std::move(done)((this->*answer)(p));
                    } else {
                      std::move(done)(std::move(committed));
                    }
                  });
      return;
    }
    if (status.ok()) {
      status = InsertInShard(shard, records);
      if (!status.ok()) {
        for (const BoundConnection& b : bound) lessor_.Detach(p.lease, b);
      }
    }
  }
  if (!status.ok()) {
    std::move(done)(std::move(status));
    return;
  }
  std::move(done)((this->*answer)(p));
}

namespace {
// Runs an asynchronous call and waits for its answer.
template <typename Result, typename Start>
Result Await(Start start) {
  std::optional<Result> result;
  absl::Notification answered;
  start([&](Result r) {
    result.emplace(std::move(r));
    answered.Notify();
  });
  answered.WaitForNotification();
  return *std::move(result);
}
}  // namespace

void Registry::IssueAsync(const IssueSpec& spec, IssueDone done) {
  absl::StatusOr<PreparedIssue> prepared = PrepareIssue(spec);
  if (!prepared.ok()) {
    std::move(done)(prepared.status());
    return;
  }
  AddRecords<PreparedIssue, std::vector<std::string>>(
      *std::move(prepared),
      [&](Shard& shard, PreparedIssue& p, std::vector<RecordView>* records,
          std::vector<BoundConnection>* bound) {
        return AdmitIssue(shard, spec, p, records, bound);
      },
      &Registry::IssuedIds, std::move(done));
}

absl::StatusOr<std::vector<std::string>> Registry::Issue(
    const IssueSpec& spec) {
  return Await<absl::StatusOr<std::vector<std::string>>>(
      [&](IssueDone done) { IssueAsync(spec, std::move(done)); });
}

// ---------------------------------------------------------------------------
// OpenContext

absl::StatusOr<Registry::PreparedContext> Registry::PrepareOpenContext(
    const OpenContextSpec& spec) {
  PreparedContext p;
  ASSIGN_OR_RETURN(
      p.connection,
      ParseReference("connection_id", spec.connection_id, Kind::kConnection));
  // An unusable thread_id is not an error: the contract is to mint a thread.
  if (!spec.thread_id.empty()) {
    absl::StatusOr<ParsedId> parsed = ParseId(spec.thread_id);
    if (parsed.ok() && parsed->kind == Kind::kThread) {
      p.wanted_thread = parsed->bits;
    }
  }
  const std::string& tenant = spec.owner.tenant;
  const std::string& user = spec.owner.user_id;
  ASSIGN_OR_RETURN(p.new_thread, ids_.MintOne(Kind::kThread, tenant, user));
  ASSIGN_OR_RETURN(p.run, ids_.MintOne(Kind::kRun, tenant, user));
  ASSIGN_OR_RETURN(p.request, ids_.MintOne(Kind::kRequest, tenant, user));
  p.shard = ShardIndex(spec.owner);
  return p;
}

absl::Status Registry::AdmitOpenContext(Shard& shard,
                                        const OpenContextSpec& spec,
                                        PreparedContext& p,
                                        std::vector<RecordView>* records) {
  RecordTable& table = shard.table;
  const OwnerRef owner = table.FindOwner(spec.owner);
  if (!p.connection.is_zero() &&
      table.FindLiveOwned(p.connection, Kind::kConnection, owner) == kNone) {
    return FieldError(absl::StatusCode::kFailedPrecondition, "connection_id",
                      "no live connection of this owner with this id");
  }
  p.thread_reused =
      table.FindLiveOwned(p.wanted_thread, Kind::kThread, owner) != kNone;
  const uint64_t adding = p.thread_reused ? 2 : 3;
  const uint64_t live = table.live_count(owner);
  if (live + adding > options_.owner_quota) {
    return QuotaError(live, adding, options_.owner_quota);
  }
  const Id128 thread = p.thread_reused ? p.wanted_thread : p.new_thread;
  const std::shared_ptr<const Labels> labels = ShareLabels(spec.labels);
  if (!p.thread_reused) {
    records->push_back(NewRecord(thread, Kind::kThread, spec.owner, Id128{},
                                 p.connection, Id128{}, labels));
  }
  records->push_back(NewRecord(p.run, Kind::kRun, spec.owner, thread,
                               p.connection, Id128{}, labels));
  records->push_back(NewRecord(p.request, Kind::kRequest, spec.owner, p.run,
                               p.connection, Id128{}, labels));
  return absl::OkStatus();
}

OpenContextResult Registry::OpenedContext(const PreparedContext& p) {
  if (observer_) {
    if (!p.thread_reused) observer_->OnIssued(Kind::kThread, 1);
    observer_->OnIssued(Kind::kRun, 1);
    observer_->OnIssued(Kind::kRequest, 1);
  }
  OpenContextResult result;
  result.thread_reused = p.thread_reused;
  result.thread_id =
      FormatId(Kind::kThread, p.thread_reused ? p.wanted_thread : p.new_thread);
  result.run_id = FormatId(Kind::kRun, p.run);
  result.request_id = FormatId(Kind::kRequest, p.request);
  return result;
}

void Registry::OpenContextAsync(const OpenContextSpec& spec,
                                OpenContextDone done) {
  absl::StatusOr<PreparedContext> prepared = PrepareOpenContext(spec);
  if (!prepared.ok()) {
    std::move(done)(prepared.status());
    return;
  }
  AddRecords<PreparedContext, OpenContextResult>(
      *std::move(prepared),
      [&](Shard& shard, PreparedContext& p, std::vector<RecordView>* records,
          std::vector<BoundConnection>*) {
        return AdmitOpenContext(shard, spec, p, records);
      },
      &Registry::OpenedContext, std::move(done));
}

absl::StatusOr<OpenContextResult> Registry::OpenContext(
    const OpenContextSpec& spec) {
  return Await<absl::StatusOr<OpenContextResult>>(
      [&](OpenContextDone done) { OpenContextAsync(spec, std::move(done)); });
}

// ---------------------------------------------------------------------------
// Validate

ValidateResult Registry::Validate(std::string_view id, Kind expected_kind,
                                  const Owner& owner, bool want_record) const {
  ValidateResult result;
  absl::StatusOr<ParsedId> parsed = ParseId(id);
  if (!parsed.ok() || !IsRecordKind(parsed->kind)) {
    result.verdict = Verdict::kMalformed;
    return result;
  }
  if (expected_kind != Kind::kUnspecified && expected_kind != parsed->kind) {
    result.verdict = Verdict::kWrongKind;
    return result;
  }
  const Shard& shard = ShardFor(owner);
  {
    absl::ReaderMutexLock lock(&shard.mu);
    const RecordTable& table = shard.table;
    const Ref r = table.FindCommitted(parsed->bits);
    if (r != kNone) {
      const State state = table.state(r);
      if (table.kind(r) != parsed->kind) {
        result.verdict = Verdict::kForged;
      } else if (table.owner(table.owner_of(r)) != owner) {
        result.verdict = Verdict::kNotOwner;
      } else {
        result.verdict = state == State::kLive      ? Verdict::kValid
                         : state == State::kExpired ? Verdict::kExpired
                                                    : Verdict::kReleased;
        if (want_record) result.record = table.View(r);
      }
      return result;
    }
  }
  // No record in the owner's shard: a genuine tag for this owner means the
  // record is gone; otherwise it is another owner's record or a forgery.
  if (ids_.keys().Verify(parsed->kind, parsed->bits, owner.tenant,
                         owner.user_id)) {
    result.verdict = Verdict::kUnknown;
    return result;
  }
  const Kind found = FindElsewhere(parsed->bits, &shard);
  result.verdict = (found == Kind::kUnspecified || found != parsed->kind)
                       ? Verdict::kForged
                       : Verdict::kNotOwner;
  return result;
}

// ---------------------------------------------------------------------------
// Cleanup

absl::StatusOr<CleanupResult> Registry::Cleanup(const Owner& owner,
                                                const CleanupTarget& target,
                                                std::string_view reason) {
  CleanupResult result;
  EndCause cause = EndCause::kCleanupIds;
  // Named IDs (text as given and parsed) to resolve in the owner's shard.
  struct Named {
    std::string_view text;
    ParsedId parsed;
  };
  std::vector<Named> named;
  absl::flat_hash_set<std::string_view> seen_text;
  switch (target.type) {
    case CleanupTarget::Type::kIds:
      if (target.ids.size() > options_.max_batch) {
        return FieldError(
            absl::StatusCode::kResourceExhausted, "ids.ids",
            absl::StrCat("has ", target.ids.size(), " ids, limit is ",
                         options_.max_batch, " (--max_batch)"));
      }
      for (std::string_view text : target.ids) {
        // Each named ID is reported once, however often it is named.
        if (!seen_text.insert(text).second) continue;
        absl::StatusOr<ParsedId> parsed = ParseId(text);
        if (!parsed.ok() || !IsRecordKind(parsed->kind)) {
          result.unknown.emplace_back(text);
        } else {
          named.push_back({text, *parsed});
        }
      }
      break;
    case CleanupTarget::Type::kConnection: {
      cause = EndCause::kCleanupConnection;
      ASSIGN_OR_RETURN(const Id128 conn,
                       ParseReference("connection_id", target.connection_id,
                                      Kind::kConnection));
      if (conn.is_zero()) return InvalidField("connection_id", "is empty");
      named.push_back({target.connection_id, {Kind::kConnection, conn}});
      break;
    }
    case CleanupTarget::Type::kAllOwned:
      cause = EndCause::kCleanupOwner;
      break;
  }

  Ended ended{cause, State::kReleased, ReasonFor(cause, reason), {}, {}};
  std::vector<const Named*> not_here;
  const uint32_t shard_index = ShardIndex(owner);
  Shard& shard = *shards_[shard_index];
  {
    absl::MutexLock lock(&shard.mu);
    const int64_t now_ms = absl::ToUnixMillis(Now());
    RecordTable& table = shard.table;
    const OwnerRef o = table.FindOwner(owner);
    std::vector<Ref> ending;
    absl::flat_hash_set<Ref> seen;
    if (target.type == CleanupTarget::Type::kAllOwned) {
      table.ForEachOwned(o, Id128{}, [&](Ref r) {
        if (table.state(r) == State::kLive) ending.push_back(r);
        return true;
      });
    } else {
      for (const Named& n : named) {
        const Ref r = table.Find(n.parsed.bits);
        if (r == kNone || o == kNone || table.owner_of(r) != o ||
            table.kind(r) != n.parsed.kind) {
          not_here.push_back(&n);
        } else if (seen.contains(r)) {
          // Ended by this call's own cascade: reported as released only.
        } else if (table.state(r) != State::kLive) {
          result.already_ended.emplace_back(n.text);
        } else {
          table.CollectCascade(r, &ending, &seen);
        }
      }
    }
    RETURN_IF_ERROR(EndInShard(shard, shard_index, ending, now_ms, ended));
  }
  // Not among this owner's records: another owner's (refused) or none.
  for (const Named* n : not_here) {
    if (FindElsewhere(n->parsed.bits, nullptr) == n->parsed.kind) {
      result.refused.emplace_back(n->text);
    } else {
      result.unknown.emplace_back(n->text);
    }
  }
  Report(ended);
  result.released = ended.TakeIds();
  return result;
}

// ---------------------------------------------------------------------------
// Leases

absl::StatusOr<LeaseGrant> Registry::GrantLease(std::string_view holder,
                                                absl::Duration ttl,
                                                std::string grantor) {
  if (holder.empty()) return InvalidField("holder", "is required");
  if (ttl < options_.min_lease_ttl || ttl > options_.max_lease_ttl) {
    return InvalidField(
        "ttl_seconds",
        absl::StrCat("must be between ",
                     absl::ToInt64Seconds(options_.min_lease_ttl), " and ",
                     absl::ToInt64Seconds(options_.max_lease_ttl),
                     " (--min_lease_ttl, --max_lease_ttl), got ",
                     absl::ToInt64Seconds(ttl)));
  }
  ASSIGN_OR_RETURN(const Id128 id, ids_.MintOne(Kind::kLease, "", holder));
  WriteBatch batch;
  batch.put_leases.push_back(LeaseView{id, std::string(holder), ttl, grantor});
  RETURN_IF_ERROR(Commit(&batch));
  lessor_.Grant(id, std::string(holder), ttl, Now(), std::move(grantor));
  if (observer_) observer_->OnLeaseGranted();
  return LeaseGrant{FormatId(Kind::kLease, id), ttl};
}

absl::StatusOr<absl::Duration> Registry::KeepAlive(
    std::string_view lease_id, const std::optional<std::string>& caller) {
  ASSIGN_OR_RETURN(const Id128 lease,
                   ParseReference("lease_id", lease_id, Kind::kLease));
  if (lease.is_zero()) return InvalidField("lease_id", "is required");
  // Renewals are not stored: a restart grants every lease a fresh TTL.
  return lessor_.KeepAlive(lease, Now(), caller);
}

absl::Status Registry::EndLease(const EndedLease& lease, Ended& ended) {
  // Group by shard so each shard is locked and committed once.
  std::vector<BoundConnection> conns = lease.connections;
  std::sort(conns.begin(), conns.end(),
            [](const BoundConnection& a, const BoundConnection& b) {
              return a.shard < b.shard;
            });
  absl::Status status;
  size_t i = 0;
  while (i < conns.size() && status.ok()) {
    const uint32_t shard_index = conns[i].shard;
    Shard& shard = *shards_[shard_index];
    absl::MutexLock lock(&shard.mu);
    const int64_t now_ms = absl::ToUnixMillis(Now());
    std::vector<Ref> ending;
    absl::flat_hash_set<Ref> seen;
    for (; i < conns.size() && conns[i].shard == shard_index; ++i) {
      const Ref r = shard.table.Find(conns[i].connection);
      if (r != kNone) shard.table.CollectCascade(r, &ending, &seen);
    }
    status = EndInShard(shard, shard_index, ending, now_ms, ended);
  }
  if (status.ok()) {
    // The lease goes last: after a crash before this, it is still stored and
    // its remaining connections are rebound on recovery.
    WriteBatch batch;
    batch.delete_leases.push_back(lease.lease);
    status = Commit(&batch);
  }
  if (!status.ok()) lessor_.Reinstate(lease);
  return status;
}

absl::StatusOr<std::vector<std::string>> Registry::RevokeLease(
    std::string_view lease_id, const std::optional<std::string>& caller) {
  ASSIGN_OR_RETURN(const Id128 lease,
                   ParseReference("lease_id", lease_id, Kind::kLease));
  if (lease.is_zero()) return InvalidField("lease_id", "is required");
  ASSIGN_OR_RETURN(EndedLease ended_lease,
                   lessor_.Revoke(lease, Now(), caller));
  Ended ended{EndCause::kLeaseRevoked,
              State::kReleased,
              ReasonFor(EndCause::kLeaseRevoked, ""),
              {},
              {}};
  const absl::Status status = EndLease(ended_lease, ended);
  Report(ended);
  RETURN_IF_ERROR(status);
  if (observer_) observer_->OnLeaseEnded(EndCause::kLeaseRevoked);
  return ended.TakeIds();
}

std::vector<std::string> Registry::Tick() {
  const absl::Time now = Now();
  Ended ended{EndCause::kLeaseExpired,
              State::kExpired,
              ReasonFor(EndCause::kLeaseExpired, ""),
              {},
              {}};
  for (const EndedLease& lease : lessor_.TakeExpired(now)) {
    if (absl::Status s = EndLease(lease, ended); !s.ok()) {
      // Retried every tick while the store is down: say so once in a while.
      REGISTRAR_LOG_EVERY_INTERVAL(warn,
                                   "lease expiry not stored, will retry: {}",
                                   std::string(s.message()));
      continue;
    }
    if (observer_) observer_->OnLeaseEnded(EndCause::kLeaseExpired);
  }
  Report(ended);
  DropExpiredTombstones(now);
  if (absl::Status s = ids_.ExtendHighWater(); !s.ok()) {
    REGISTRAR_LOG_EVERY_INTERVAL(warn,
                                 "ID clock high-water mark not stored: {}",
                                 std::string(s.message()));
  }
  const uint64_t last = store_->LastRevision();
  if (last > options_.event_history &&
      store_->OldestRevision() + options_.event_history / 10 <
          last - options_.event_history) {
    // Compact in steps of a tenth of the history, not on every tick.
    if (absl::Status s = store_->CompactEvents(last - options_.event_history);
        !s.ok()) {
      REGISTRAR_LOG_EVERY_INTERVAL(warn, "event compaction failed: {}",
                                   std::string(s.message()));
    }
  }
  return ended.TakeIds();
}

void Registry::DropExpiredTombstones(absl::Time now) {
  const int64_t cutoff_ms =
      absl::ToUnixMillis(now - options_.tombstone_retention);
  for (const auto& shard : shards_) {
    absl::MutexLock lock(&shard->mu);
    WriteBatch batch;
    batch.drop_records = shard->table.DueTombstones(cutoff_ms);
    if (batch.drop_records.empty()) continue;
    if (absl::Status s = Commit(&batch); !s.ok()) {
      REGISTRAR_LOG_EVERY_INTERVAL(
          warn, "tombstone removal not stored, will retry: {}",
          std::string(s.message()));
      return;
    }
    counters_.tombstones.fetch_sub(shard->table.DropTombstones(cutoff_ms),
                                   std::memory_order_relaxed);
  }
}

// ---------------------------------------------------------------------------
// Reads

absl::StatusOr<RecordView> Registry::Describe(std::string_view id) const {
  absl::StatusOr<ParsedId> parsed = ParseId(id);
  if (!parsed.ok()) return InvalidField("id", AsStd(parsed.status().message()));
  for (const auto& shard : shards_) {
    absl::ReaderMutexLock lock(&shard->mu);
    const Ref r = shard->table.FindCommitted(parsed->bits);
    if (r != kNone && shard->table.kind(r) == parsed->kind) {
      return shard->table.View(r);
    }
  }
  return absl::NotFoundError(absl::StrCat("id: no record of ", AsAbsl(id)));
}

absl::StatusOr<ListOwnedResult> Registry::ListOwned(
    const ListOwnedSpec& spec) const {
  if (spec.kind != Kind::kUnspecified && !IsRecordKind(spec.kind)) {
    return InvalidField("kind", "is not a record kind");
  }
  Id128 after;
  if (!spec.page_token.empty()) {
    absl::StatusOr<Id128> decoded = DecodeSuffix(spec.page_token);
    if (!decoded.ok()) {
      return InvalidField("page_token", "is not a token this server issued");
    }
    after = *decoded;
  }
  const uint32_t page_size =
      spec.page_size == 0
          ? options_.default_page_size
          : std::min<uint32_t>(spec.page_size, options_.max_page_size);
  ListOwnedResult result;
  const Shard& shard = ShardFor(spec.owner);
  absl::ReaderMutexLock lock(&shard.mu);
  const RecordTable& table = shard.table;
  table.ForEachOwned(table.FindOwner(spec.owner), after, [&](Ref r) {
    if (spec.kind != Kind::kUnspecified && table.kind(r) != spec.kind) {
      return true;
    }
    if (!spec.include_ended && table.state(r) != State::kLive) return true;
    if (table.pending(r)) return true;  // not issued yet
    if (result.records.size() == page_size) {
      // One more match exists: hand out a token for the next page.
      result.next_page_token = EncodeSuffix(result.records.back().id);
      return false;
    }
    result.records.push_back(table.View(r));
    return true;
  });
  return result;
}

absl::Status Registry::Commit(WriteBatch* batch) {
  const absl::Time start = absl::Now();
  absl::Status status = store_->Commit(batch);
  if (observer_) observer_->OnStoreCommit(absl::Now() - start, status.ok());
  return status;
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
  stats.leases = lessor_.size();
  const CommitStats commits = store_->commit_stats();
  stats.store_revision = store_->LastRevision();
  stats.store_batches = commits.batches;
  stats.store_writes = commits.writes;
  return stats;
}

}  // namespace registrar
