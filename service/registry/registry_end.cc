// Ending records: the sequence every end takes (StartEnd, FinishEnd: one
// batch through shard.h's steps, however many shards it spans, committed
// with no lock held), and Cleanup. Lease ends and expiry use it from
// registry_lease.cc.

#include <algorithm>
#include <atomic>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "service/common/field_error.h"
#include "service/common/rate_limited_log.h"
#include "service/common/status_macros.h"
#include "service/registry/end_op.h"
#include "service/registry/registry.h"
#include "service/registry/registry_util.h"
#include "service/registry/shard.h"
#include "spdlog/spdlog.h"

namespace registrar {

using registry_internal::Await;
using registry_internal::ParseReference;
using registry_internal::ReasonFor;
using Ref = RecordTable::Ref;
constexpr Ref kNone = RecordTable::kNone;

namespace {

// A change that keeps finding records another change is ending gives up
// after this many starts (each waits for everything queued before it).
constexpr int kMaxStarts = 64;

using ShardList = std::vector<std::unique_ptr<registry_internal::Shard>>;

// Locks shards in ascending index order (every multi-shard change does),
// so two such changes never wait for each other in a circle. Thread-safety
// analysis cannot follow a run-time set of locks: the code that runs under
// them (Locked* below) says so instead.
class ShardLocks {
 public:
  ShardLocks(const ShardList& all, const std::vector<uint32_t>& indexes)
      ABSL_NO_THREAD_SAFETY_ANALYSIS {
    locked_.reserve(indexes.size());
    for (const uint32_t i : indexes) {
      all[i]->mu.Lock();
      locked_.push_back(all[i].get());
    }
  }
  ~ShardLocks() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    for (auto it = locked_.rbegin(); it != locked_.rend(); ++it) {
      (*it)->mu.Unlock();
    }
  }
  ShardLocks(const ShardLocks&) = delete;
  ShardLocks& operator=(const ShardLocks&) = delete;

 private:
  std::vector<registry_internal::Shard*> locked_;
};

// A shard's table while ShardLocks holds its lock.
RecordTable& LockedTable(registry_internal::Shard& shard)
    ABSL_NO_THREAD_SAFETY_ANALYSIS {
  return shard.table;
}

// Shard::StageEnd while ShardLocks holds its lock.
void StageEndLocked(registry_internal::Shard& shard,
                    const std::vector<Ref>& refs, int64_t now_ms,
                    const registry_internal::Ended& ended,
                    WriteBatch* batch) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  shard.StageEnd(refs, now_ms, ended, batch);
}

}  // namespace

// Steps 1-3 of shard.h for an ending change.
void Registry::StartEnd(std::unique_ptr<EndOp> op) {
  ++op->starts;
  enum { kStaged, kNothing, kConflict } outcome = kNothing;
  {
    ShardLocks locks(shards_, op->shards);
    op->now_ms = absl::ToUnixMillis(Now());
    op->staged.clear();
    if (op->reset) op->reset();
    bool conflict = false;
    for (const uint32_t i : op->shards) {
      RecordTable& table = LockedTable(*shards_[i]);
      std::vector<Ref> refs;
      op->collect(i, table, &refs);
      if (refs.empty()) continue;
      for (const Ref r : refs) conflict = conflict || table.ending(r);
      op->staged.emplace_back(i, std::move(refs));
    }
    WriteBatch batch;
    batch.deadline = op->deadline;
    if (conflict) {
      // Another change is ending some of these records: wait behind it (an
      // empty batch queued after it completes after it), then start again.
      outcome = kConflict;
      op->staged.clear();
      Enqueue(std::move(batch),
              [this, op = std::move(op)](WriteBatch&, absl::Status s) mutable {
                if (!s.ok()) {
                  std::move(op->done)(std::move(s), *op);
                } else if (op->starts >= kMaxStarts) {
                  std::move(op->done)(
                      absl::UnavailableError(
                          "the records kept changing under this call; retry"),
                      *op);
                } else {
                  StartEnd(std::move(op));
                }
              });
    } else if (!op->staged.empty() || !op->delete_leases.empty()) {
      outcome = kStaged;
      for (const auto& [i, refs] : op->staged) {
        StageEndLocked(*shards_[i], refs, op->now_ms, op->ended, &batch);
      }
      batch.delete_leases = op->delete_leases;
      Enqueue(std::move(batch), [this, op = std::move(op)](
                                    WriteBatch& b, absl::Status s) mutable {
        FinishEnd(std::move(op), b, std::move(s));
      });
    }
  }
  switch (outcome) {
    case kNothing:
      std::move(op->done)(absl::OkStatus(), *op);  // nothing to commit
      return;
    case kStaged:
    case kConflict:
      commits_.Flush();
      return;
  }
}

// Steps 4-5 of shard.h for an ending change.
void Registry::FinishEnd(std::unique_ptr<EndOp> op, const WriteBatch& batch,
                         absl::Status status) {
  std::vector<uint32_t> touched;
  for (const auto& part : op->staged) touched.push_back(part.first);
  {
    ShardLocks locks(shards_, touched);
    size_t k = 0;
    for (const auto& [i, refs] : op->staged) {
      RecordTable& table = LockedTable(*shards_[i]);
      for (const Ref ref : refs) {
        const Event& e = batch.events[k++];
        const Ref r = table.Recheck(ref, e.record.id);
        if (r == kNone || table.state(r) != State::kLive) continue;
        if (!status.ok()) {
          table.set_ending(r, false);
          continue;
        }
        const Kind kind = table.kind(r);
        const Id128 lease = table.lease_of(r);
        table.End(r, op->ended.state, op->now_ms, op->ended.reason, e.revision);
        counters_.live[static_cast<int>(kind)].fetch_sub(
            1, std::memory_order_relaxed);
        counters_.tombstones.fetch_add(1, std::memory_order_relaxed);
        // A lease that ended already dropped its connections itself.
        if (kind == Kind::kConnection && !lease.is_zero() &&
            op->ended.cause != EndCause::kLeaseRevoked &&
            op->ended.cause != EndCause::kLeaseExpired) {
          lessor_.Detach(lease, BoundConnection{e.record.id, i});
        }
        ++op->ended.count[static_cast<int>(kind)];
        op->ended.records.emplace_back(kind, e.record.id);
      }
    }
  }
  std::move(op->done)(std::move(status), *op);
}

// ---------------------------------------------------------------------------
// Cleanup

namespace {

// A Cleanup's named IDs and what it found of them, reset on every start.
struct CleanupState {
  struct Named {
    std::string text;
    ParsedId parsed;
  };
  std::vector<Named> named;
  CleanupResult result;  // unknown (unparsed) kept across starts
  size_t unparsed = 0;   // result.unknown's unparsed prefix
  std::vector<const Named*> not_here;
};

}  // namespace

void Registry::CleanupAsync(const Owner& owner, const CleanupTarget& target,
                            std::string_view reason, absl::Time deadline,
                            CleanupDone done, TenantFilter visible) {
  EndCause cause = EndCause::kCleanupIds;
  auto state = std::make_shared<CleanupState>();
  switch (target.type) {
    case CleanupTarget::Type::kIds: {
      if (target.ids.size() > options_.max_batch) {
        std::move(done)(WithLimit(
            FieldError(absl::StatusCode::kResourceExhausted, "ids.ids",
                       absl::StrCat("has ", target.ids.size(),
                                    " ids, limit is ", options_.max_batch)),
            Limit::kMaxBatch));
        return;
      }
      // Each named ID is reported once, however often it is named.
      absl::flat_hash_set<std::string_view> seen_text;
      for (std::string_view text : target.ids) {
        if (!seen_text.insert(text).second) continue;
        absl::StatusOr<ParsedId> parsed = ParseId(text);
        if (!parsed.ok() || !IsRecordKind(parsed->kind)) {
          state->result.unknown.emplace_back(text);
        } else {
          state->named.push_back({std::string(text), *parsed});
        }
      }
      state->unparsed = state->result.unknown.size();
      break;
    }
    case CleanupTarget::Type::kConnection: {
      cause = EndCause::kCleanupConnection;
      absl::StatusOr<Id128> conn = ParseReference(
          "connection_id", target.connection_id, Kind::kConnection);
      if (!conn.ok()) {
        std::move(done)(conn.status());
        return;
      }
      if (conn->is_zero()) {
        std::move(done)(InvalidField("connection_id", "is empty"));
        return;
      }
      state->named.push_back(
          {std::string(target.connection_id), {Kind::kConnection, *conn}});
      break;
    }
    case CleanupTarget::Type::kAllOwned:
      cause = EndCause::kCleanupOwner;
      break;
  }

  auto op = std::make_unique<EndOp>(
      Ended{cause, State::kReleased, ReasonFor(cause, reason), {}, {}});
  op->deadline = deadline;
  op->shards = {ShardIndex(owner)};
  const bool all_owned = target.type == CleanupTarget::Type::kAllOwned;
  op->reset = [state] {
    state->result.already_ended.clear();
    state->result.unknown.resize(state->unparsed);
    state->not_here.clear();
  };
  op->collect = [state, owner, all_owned](uint32_t, RecordTable& table,
                                          std::vector<Ref>* out) {
    const RecordTable::OwnerRef o = table.FindOwner(owner);
    if (all_owned) {
      table.ForEachOwned(o, Id128{}, [&](Ref r) {
        if (table.state(r) == State::kLive) out->push_back(r);
        return true;
      });
      return;
    }
    absl::flat_hash_set<Ref> seen;
    for (const CleanupState::Named& n : state->named) {
      const Ref r = table.Find(n.parsed.bits);
      if (r == kNone || o == RecordTable::kNone || table.owner_of(r) != o ||
          table.kind(r) != n.parsed.kind) {
        state->not_here.push_back(&n);
      } else if (seen.contains(r)) {
        // Ended by this call's own cascade: reported as released only.
      } else if (table.state(r) != State::kLive) {
        state->result.already_ended.push_back(n.text);
      } else {
        table.CollectCascade(r, out, &seen);
      }
    }
  };
  op->done = [this, state, done = std::move(done),
              visible = std::move(visible)](absl::Status s, EndOp& op) mutable {
    if (!s.ok()) {
      std::move(done)(std::move(s));
      return;
    }
    // Not among this owner's records: another owner's (refused) or none.
    for (const CleanupState::Named* n : state->not_here) {
      if (FindElsewhere(n->parsed.bits, nullptr, visible) == n->parsed.kind) {
        state->result.refused.push_back(n->text);
      } else {
        state->result.unknown.push_back(n->text);
      }
    }
    Report(op.ended);
    state->result.released = op.ended.TakeIds();
    std::move(done)(std::move(state->result));
  };
  StartEnd(std::move(op));
}

absl::StatusOr<CleanupResult> Registry::Cleanup(const Owner& owner,
                                                const CleanupTarget& target,
                                                std::string_view reason) {
  return Await<absl::StatusOr<CleanupResult>>([&](CleanupDone done) {
    CleanupAsync(owner, target, reason, absl::InfiniteFuture(),
                 std::move(done));
  });
}

}  // namespace registrar
