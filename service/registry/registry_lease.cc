// Leases (grant, keep alive, revoke, the end of a lease as one batch with
// its connections) and time: lease expiry and tombstone drops (Tick).

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
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
using registry_internal::PageStart;
using registry_internal::ParseReference;
using registry_internal::ReasonFor;
using Ref = RecordTable::Ref;
constexpr Ref kNone = RecordTable::kNone;
// ---------------------------------------------------------------------------
// Leases

void Registry::GrantLeaseAsync(std::string_view holder, absl::Duration ttl,
                               std::string grantor, absl::Time deadline,
                               GrantDone done) {
  if (holder.empty()) {
    std::move(done)(InvalidField("holder", "is required"));
    return;
  }
  if (ttl < options_.min_lease_ttl || ttl > options_.max_lease_ttl) {
    std::move(done)(WithLimit(
        InvalidField(
            "ttl_seconds",
            absl::StrCat("must be between ",
                         absl::ToInt64Seconds(options_.min_lease_ttl), " and ",
                         absl::ToInt64Seconds(options_.max_lease_ttl), ", got ",
                         absl::ToInt64Seconds(ttl))),
        Limit::kLeaseTtl));
    return;
  }
  absl::StatusOr<Id128> id = ids_.MintOne(Kind::kLease, "", holder);
  if (!id.ok()) {
    std::move(done)(id.status());
    return;
  }
  WriteBatch batch;
  batch.deadline = deadline;
  batch.put_leases.push_back(LeaseView{*id, std::string(holder), ttl, grantor});
  Enqueue(std::move(batch),
          [this, id = *id, holder = std::string(holder), ttl,
           grantor = std::move(grantor),
           done = std::move(done)](WriteBatch&, absl::Status s) mutable {
            if (!s.ok()) {
              std::move(done)(std::move(s));
              return;
            }
            lessor_.Grant(id, holder, ttl, Now(), std::move(grantor));
            if (observer_) observer_->OnLeaseGranted();
            std::move(done)(LeaseGrant{FormatId(Kind::kLease, id), ttl});
          });
  commits_.Flush();
}

absl::StatusOr<LeaseGrant> Registry::GrantLease(std::string_view holder,
                                                absl::Duration ttl,
                                                std::string grantor) {
  return Await<absl::StatusOr<LeaseGrant>>([&](GrantDone done) {
    GrantLeaseAsync(holder, ttl, std::move(grantor), absl::InfiniteFuture(),
                    std::move(done));
  });
}

absl::StatusOr<absl::Duration> Registry::KeepAlive(
    std::string_view lease_id, const std::optional<std::string>& caller) {
  ASSIGN_OR_RETURN(const Id128 lease,
                   ParseReference("lease_id", lease_id, Kind::kLease));
  if (lease.is_zero()) return InvalidField("lease_id", "is required");
  // Renewals are not stored: a restart grants every lease a fresh TTL.
  return lessor_.KeepAlive(lease, Now(), caller);
}

void Registry::EndLeaseAsync(EndedLease lease, EndCause cause,
                             absl::Time deadline, EndLeaseDone done) {
  const State state =
      cause == EndCause::kLeaseExpired ? State::kExpired : State::kReleased;
  auto op = std::make_unique<EndOp>(
      Ended{cause, state, ReasonFor(cause, ""), {}, {}});
  op->deadline = deadline;
  auto conns = std::make_shared<std::vector<BoundConnection>>(
      std::move(lease.connections));
  std::sort(conns->begin(), conns->end(),
            [](const BoundConnection& a, const BoundConnection& b) {
              return a.shard < b.shard;
            });
  for (const BoundConnection& c : *conns) {
    if (op->shards.empty() || op->shards.back() != c.shard) {
      op->shards.push_back(c.shard);
    }
  }
  op->collect = [conns](uint32_t shard, RecordTable& table,
                        std::vector<Ref>* out) {
    absl::flat_hash_set<Ref> seen;
    auto it = std::lower_bound(
        conns->begin(), conns->end(), shard,
        [](const BoundConnection& c, uint32_t s) { return c.shard < s; });
    for (; it != conns->end() && it->shard == shard; ++it) {
      const Ref r = table.Find(it->connection);
      if (r != kNone) table.CollectCascade(r, out, &seen);
    }
  };
  // The lease goes in the same batch: all of it or nothing survives a crash.
  op->delete_leases.push_back(lease.lease);
  lease.connections = *conns;
  op->done = [this, lease = std::move(lease), done = std::move(done)](
                 absl::Status s, EndOp& op) mutable {
    if (!s.ok()) lessor_.Reinstate(lease);
    std::move(done)(std::move(s), op.ended);
  };
  StartEnd(std::move(op));
}

void Registry::RevokeLeaseAsync(std::string_view lease_id,
                                const std::optional<std::string>& caller,
                                absl::Time deadline, RevokeDone done) {
  absl::StatusOr<Id128> lease =
      ParseReference("lease_id", lease_id, Kind::kLease);
  if (!lease.ok()) {
    std::move(done)(lease.status());
    return;
  }
  if (lease->is_zero()) {
    std::move(done)(InvalidField("lease_id", "is required"));
    return;
  }
  absl::StatusOr<EndedLease> ended = lessor_.Revoke(*lease, Now(), caller);
  if (!ended.ok()) {
    std::move(done)(ended.status());
    return;
  }
  EndRevokedLease(*std::move(ended), deadline, std::move(done));
}

void Registry::EndRevokedLease(EndedLease lease, absl::Time deadline,
                               RevokeDone done) {
  EndLeaseAsync(
      std::move(lease), EndCause::kLeaseRevoked, deadline,
      [this, done = std::move(done)](absl::Status s, Ended& ended) mutable {
        if (!s.ok()) {
          std::move(done)(std::move(s));
          return;
        }
        Report(ended);
        if (observer_) observer_->OnLeaseEnded(EndCause::kLeaseRevoked);
        std::move(done)(ended.TakeIds());
      });
}

absl::StatusOr<std::vector<std::string>> Registry::RevokeLease(
    std::string_view lease_id, const std::optional<std::string>& caller) {
  return Await<absl::StatusOr<std::vector<std::string>>>([&](RevokeDone done) {
    RevokeLeaseAsync(lease_id, caller, absl::InfiniteFuture(), std::move(done));
  });
}

// ---------------------------------------------------------------------------
// The operator's view: leases by holder

namespace {

// What a RevokeHolder call gathers from its leases' ends, which complete
// on store threads in any order.
struct RevokeHolderCall {
  absl::Mutex mu;
  size_t left ABSL_GUARDED_BY(mu) = 0;
  uint64_t released ABSL_GUARDED_BY(mu) = 0;
  size_t failed ABSL_GUARDED_BY(mu) = 0;
  absl::Status error ABSL_GUARDED_BY(mu);  // the first failure
  RevokeHolderResult result;  // revoked and more: set before any end starts
  Registry::RevokeHolderDone done;
};

// An upper bound of a lease's size in a ListLeases reply: its strings and
// 64 bytes for the rest (the ID, numbers and field tags).
uint64_t EncodedSizeBound(const LeaseSnapshot& l) {
  return 64 + l.holder.size() + l.grantor.size();
}

}  // namespace

void Registry::RevokeHolderAsync(std::string_view holder, absl::Time deadline,
                                 RevokeHolderDone done) {
  if (holder.empty()) {
    std::move(done)(InvalidField("holder", "is required"));
    return;
  }
  auto call = std::make_shared<RevokeHolderCall>();
  std::vector<EndedLease> leases = lessor_.RevokeHolder(
      holder, Now(), kMaxLeasesPerRevoke, &call->result.more);
  if (leases.empty()) {
    std::move(done)(std::move(call->result));
    return;
  }
  call->done = std::move(done);
  for (const EndedLease& lease : leases) {
    call->result.revoked.push_back(FormatId(Kind::kLease, lease.lease));
  }
  {
    absl::MutexLock lock(&call->mu);
    call->left = leases.size();
  }
  // Every lease's end is its own batch, exactly as RevokeLease's; the last
  // one to complete answers.
  for (EndedLease& lease : leases) {
    EndRevokedLease(
        std::move(lease), deadline,
        [call](absl::StatusOr<std::vector<std::string>> ended) {
          {
            absl::MutexLock lock(&call->mu);
            if (ended.ok()) {
              call->released += ended->size();
            } else if (call->failed++ == 0) {
              call->error = ended.status();
            }
            if (--call->left > 0) return;
          }
          // The last one: no other end touches `call` any more.
          absl::StatusOr<RevokeHolderResult> answer;
          {
            absl::MutexLock lock(&call->mu);
            const size_t total = call->result.revoked.size();
            if (call->failed == 0) {
              call->result.released = call->released;
              answer = std::move(call->result);
            } else if (call->failed == total) {
              // Nothing changed: the error as it came (its details, e.g. a
              // NOT_APPLIED mark or a limit, included).
              answer = call->error;
            } else {
              answer = absl::Status(
                  call->error.code(),
                  absl::StrCat(total - call->failed, " of ", total,
                               " leases revoked, ", call->released,
                               " records released; the others were not "
                               "(call again): ",
                               call->error.message()));
            }
          }
          std::move(call->done)(std::move(answer));
        });
  }
}

absl::StatusOr<RevokeHolderResult> Registry::RevokeHolder(
    std::string_view holder) {
  return Await<absl::StatusOr<RevokeHolderResult>>([&](RevokeHolderDone done) {
    RevokeHolderAsync(holder, absl::InfiniteFuture(), std::move(done));
  });
}

absl::StatusOr<ListLeasesResult> Registry::ListLeases(
    const ListLeasesSpec& spec) const {
  ASSIGN_OR_RETURN(const Id128 after, PageStart(spec.page_token));
  const uint32_t page_size = PageSize(spec.page_size);
  const absl::Time now = Now();
  ListLeasesResult result;
  uint64_t bytes = 0;
  Id128 last_id;
  lessor_.ListLive(spec.holder, after, now, [&](const LeaseSnapshot& l) {
    bytes += EncodedSizeBound(l);
    if (result.leases.size() == page_size ||
        (bytes > options_.max_page_bytes && !result.leases.empty())) {
      // One more lease exists: hand out a token for the next page.
      result.next_page_token = EncodeSuffix(last_id);
      return false;
    }
    last_id = l.lease;
    result.leases.push_back(LeaseInfo{
        FormatId(Kind::kLease, l.lease), std::string(l.holder),
        std::string(l.grantor), l.ttl, l.deadline - now, l.connections});
    return true;
  });
  return result;
}

// ---------------------------------------------------------------------------
// Expiry and tombstones

std::vector<std::string> Registry::Tick() {
  const absl::Time now = Now();
  std::vector<EndedLease> expired = lessor_.TakeExpired(now);
  std::vector<std::string> ids;
  if (!expired.empty()) {
    // Every expired lease's end is queued, then all are waited for.
    absl::Mutex mu;
    size_t left = expired.size();
    for (EndedLease& lease : expired) {
      EndLeaseAsync(std::move(lease), EndCause::kLeaseExpired,
                    absl::InfiniteFuture(), [&](absl::Status s, Ended& ended) {
                      if (s.ok()) {
                        Report(ended);
                        if (observer_)
                          observer_->OnLeaseEnded(EndCause::kLeaseExpired);
                      } else {
                        // Retried every tick while the store is down: say so
                        // once in a while.
                        REGISTRAR_LOG_EVERY_INTERVAL(
                            warn, "lease expiry not stored, will retry: {}",
                            std::string(s.message()));
                      }
                      std::vector<std::string> ended_ids = ended.TakeIds();
                      absl::MutexLock lock(&mu);
                      for (std::string& id : ended_ids)
                        ids.push_back(std::move(id));
                      --left;
                    });
    }
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(
        +[](size_t* left) { return *left == 0; }, &left));
  }
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
  return ids;
}

void Registry::DropExpiredTombstones(absl::Time now) {
  const int64_t cutoff_ms =
      absl::ToUnixMillis(now - options_.tombstone_retention);
  bool queued = false;
  for (uint32_t i = 0; i < shards_.size(); ++i) {
    Shard& shard = *shards_[i];
    absl::MutexLock lock(&shard.mu);
    if (shard.dropping) continue;  // the previous drop is still queued
    WriteBatch batch;
    batch.drop_records = shard.table.DueTombstones(cutoff_ms);
    // Owners past --owner_tombstones lose their oldest ones early.
    std::vector<Id128> early = shard.table.ExcessTombstones(cutoff_ms);
    const uint64_t early_count = early.size();
    batch.drop_records.insert(batch.drop_records.end(), early.begin(),
                              early.end());
    if (batch.drop_records.empty()) continue;
    shard.dropping = true;
    queued = true;
    {
      absl::MutexLock drops(&drops_mu_);
      ++drops_in_flight_;
    }
    Enqueue(std::move(batch), [this, &shard, early_count](WriteBatch& b,
                                                          absl::Status s) {
      {
        absl::MutexLock lock(&shard.mu);
        shard.dropping = false;
        if (s.ok()) {
          counters_.tombstones.fetch_sub(
              shard.table.DropTombstones(absl::MakeConstSpan(b.drop_records)),
              std::memory_order_relaxed);
          counters_.tombstones_dropped_early.fetch_add(
              early_count, std::memory_order_relaxed);
        }
      }
      if (!s.ok()) {
        REGISTRAR_LOG_EVERY_INTERVAL(
            warn, "tombstone removal not stored, will retry: {}",
            std::string(s.message()));
      }
      absl::MutexLock drops(&drops_mu_);
      --drops_in_flight_;
    });
  }
  if (queued) commits_.Flush();
}

}  // namespace registrar
