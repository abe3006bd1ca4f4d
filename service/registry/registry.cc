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
#include "service/common/status_macros.h"
#include "service/registry/registry_util.h"
#include "service/registry/shard.h"
#include "service/store/memory_store.h"
#include "spdlog/spdlog.h"

namespace registrar {
using registry_internal::Await;
using registry_internal::ParseReference;
using Ref = RecordTable::Ref;
using OwnerRef = RecordTable::OwnerRef;
constexpr Ref kNone = RecordTable::kNone;

namespace {

// One page of an owner's committed records after `after`, filtered by
// kind and state; the caller holds the owner's shard lock.
ListOwnedResult ListPage(const RecordTable& table, const ListOwnedSpec& spec,
                         Id128 after, uint32_t page_size) {
  ListOwnedResult result;
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

std::shared_ptr<const Labels> ShareLabels(const Labels& labels) {
  if (labels.empty()) return EmptyLabels();
  return std::make_shared<const Labels>(labels);
}

absl::Status QuotaError(uint64_t live, uint64_t adding, uint64_t quota) {
  return WithLimit(
      FieldError(
          absl::StatusCode::kResourceExhausted, "owner",
          absl::StrCat("live record quota exceeded: owner holds ", live,
                       ", this call adds ", adding, ", limit is ", quota)),
      Limit::kOwnerQuota);
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
      store_(store == nullptr ? owned_store_.get() : store),
      commits_(*store_) {
  const uint32_t n = std::max<uint32_t>(1, options_.shards);
  shards_.reserve(n);
  for (uint32_t i = 0; i < n; ++i) shards_.push_back(std::make_unique<Shard>());
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

Kind Registry::FindElsewhere(Id128 id, const Shard* skip) const {
  for (const auto& shard : shards_) {
    if (shard.get() == skip) continue;
    absl::ReaderMutexLock lock(&shard->mu);
    const Ref r = shard->table.FindCommitted(id);
    if (r != kNone) return shard->table.kind(r);
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
    return WithLimit(FieldError(absl::StatusCode::kResourceExhausted, "count",
                                absl::StrCat("is ", count, ", limit is ",
                                             options_.max_batch)),
                     Limit::kMaxBatch);
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

absl::Status Registry::AdmitIssue(RecordTable& table, const IssueSpec& spec,
                                  const PreparedIssue& p,
                                  std::vector<RecordView>* records,
                                  std::vector<BoundConnection>* bound) {
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

std::vector<std::string> Registry::IssuedIds(const PreparedIssue& p) {
  if (observer_) observer_->OnIssued(p.kind, p.minted.size());
  return FormatIds(p.kind, p.minted);
}

template <typename Prepared, typename Result>
void Registry::AddRecords(
    Prepared p, absl::Time deadline,
    absl::FunctionRef<absl::Status(RecordTable&, Prepared&,
                                   std::vector<RecordView>*,
                                   std::vector<BoundConnection>*)>
        admit,
    Result (Registry::*answer)(const Prepared&),
    absl::AnyInvocable<void(absl::StatusOr<Result>) &&> done) {
  const uint32_t shard_index = p.shard;
  Shard& shard = *shards_[shard_index];
  absl::Status status;
  {
    absl::MutexLock lock(&shard.mu);
    std::vector<RecordView> records;
    std::vector<BoundConnection> bound;
    // 1. Admit and stage (pending records).
    status = admit(shard.table, p, &records, &bound);
    if (status.ok()) {
      CountLive(records);
      WriteBatch batch;
      batch.deadline = deadline;
      std::vector<Ref> refs;
      shard.StageInsert(records, &refs, &batch);
      // 2. Queued before the lock is released.
      const Id128 lease = p.lease;
      Enqueue(std::move(batch), [this, &shard, refs = std::move(refs), lease,
                                 bound = std::move(bound), answer,
                                 p = std::move(p), done = std::move(done)](
                                    WriteBatch& b,
                                    absl::Status committed) mutable {
        // 4. Apply or roll back.
        uint64_t removed[kNumKinds] = {};
        {
          absl::MutexLock lock(&shard.mu);
          shard.ApplyInsert(refs, b.events.data(), committed.ok(), removed);
        }
        for (int k = 0; k < kNumKinds; ++k) {
          counters_.live[k].fetch_sub(removed[k], std::memory_order_relaxed);
        }
        if (!committed.ok()) {
          for (const BoundConnection& c : bound) lessor_.Detach(lease, c);
          std::move(done)(std::move(committed));
          return;
        }
        // 5. Reply.
        std::move(done)((this->*answer)(p));
      });
    }
  }
  if (!status.ok()) {
    std::move(done)(std::move(status));
    return;
  }
  // 3. Submit, no lock held.
  commits_.Flush();
}

void Registry::IssueAsync(const IssueSpec& spec, IssueDone done) {
  absl::StatusOr<PreparedIssue> prepared = PrepareIssue(spec);
  if (!prepared.ok()) {
    std::move(done)(prepared.status());
    return;
  }
  AddRecords<PreparedIssue, std::vector<std::string>>(
      *std::move(prepared), spec.deadline,
      [&](RecordTable& table, PreparedIssue& p,
          std::vector<RecordView>* records,
          std::vector<BoundConnection>* bound) {
        return AdmitIssue(table, spec, p, records, bound);
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

absl::Status Registry::AdmitOpenContext(RecordTable& table,
                                        const OpenContextSpec& spec,
                                        PreparedContext& p,
                                        std::vector<RecordView>* records) {
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
      *std::move(prepared), spec.deadline,
      [&](RecordTable& table, PreparedContext& p,
          std::vector<RecordView>* records, std::vector<BoundConnection>*) {
        return AdmitOpenContext(table, spec, p, records);
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
  const Shard& shard = ShardFor(spec.owner);
  absl::ReaderMutexLock lock(&shard.mu);
  return ListPage(shard.table, spec, after, page_size);
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
  stats.leases = lessor_.size();
  const CommitStats commits = store_->commit_stats();
  stats.store_revision = store_->LastRevision();
  stats.store_batches = commits.batches;
  stats.store_writes = commits.writes;
  return stats;
}

}  // namespace registrar
