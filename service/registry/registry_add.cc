// Adding records: Issue and OpenContext, through AddRecords (shard.h's
// sequence for new records).

#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "service/common/absl_compat.h"
#include "service/common/field_error.h"
#include "service/common/status_macros.h"
#include "service/registry/registry.h"
#include "service/registry/registry_util.h"
#include "service/registry/shard.h"

namespace registrar {
using registry_internal::Await;
using registry_internal::ParseReference;
using Ref = RecordTable::Ref;
using OwnerRef = RecordTable::OwnerRef;
constexpr Ref kNone = RecordTable::kNone;

namespace {

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

}  // namespace registrar
