#include "service/registry/lessor.h"

#include <algorithm>
#include <utility>

#include "service/common/field_error.h"

namespace registrar {

Lessor::Lease& Lessor::Put(Id128 id, std::string holder) {
  auto [it, added] = leases_.try_emplace(id);
  if (!added && it->second.holder != holder) {
    by_holder_.erase({it->second.holder, id});
  }
  by_id_.insert(id);
  by_holder_.insert({holder, id});
  it->second.holder = std::move(holder);
  return it->second;
}

void Lessor::Erase(absl::flat_hash_map<Id128, Lease>::iterator it) {
  by_holder_.erase({it->second.holder, it->first});
  by_id_.erase(it->first);
  leases_.erase(it);
}

void Lessor::Grant(Id128 lease, std::string holder, absl::Duration ttl,
                   absl::Time now, std::string grantor) {
  absl::MutexLock lock(&mu_);
  Lease& l = Put(lease, std::move(holder));
  l.grantor = std::move(grantor);
  l.ttl = ttl;
  l.deadline = now + ttl;
  queue_.Push(l.deadline, lease);
}

absl::Status Lessor::CheckUsable(const Lease* lease, absl::Time now,
                                 const std::optional<std::string>& caller) {
  if (lease == nullptr || lease->deadline <= now) {
    return absl::NotFoundError("lease_id: no live lease with this id");
  }
  if (caller.has_value() && *caller != lease->grantor) {
    return absl::PermissionDeniedError(
        "lease_id: the lease was granted to another caller");
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::Duration> Lessor::KeepAlive(
    Id128 lease, absl::Time now, const std::optional<std::string>& caller) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(lease);
  const absl::Status usable =
      CheckUsable(it == leases_.end() ? nullptr : &it->second, now, caller);
  if (!usable.ok()) return usable;
  // The queue keeps one entry per lease; TakeExpired re-queues an entry that
  // surfaces before the (renewed) deadline, so renewals cost no heap work.
  it->second.deadline = now + it->second.ttl;
  return it->second.ttl;
}

void Lessor::RestartAll(absl::Time now) {
  absl::MutexLock lock(&mu_);
  // Deadlines only move later, so the queue's entries stay valid (an entry
  // that surfaces early is re-queued, as after KeepAlive).
  for (auto& [id, lease] : leases_) {
    lease.deadline = std::max(lease.deadline, now + lease.ttl);
  }
}

absl::Status Lessor::Attach(Id128 lease,
                            absl::Span<const BoundConnection> conns,
                            absl::Time now,
                            const std::optional<std::string>& caller) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(lease);
  if (it == leases_.end() || it->second.deadline <= now) {
    return FieldError(absl::StatusCode::kFailedPrecondition, "lease_id",
                      "no live lease with this id");
  }
  if (caller.has_value() && *caller != it->second.grantor) {
    return FieldError(absl::StatusCode::kPermissionDenied, "lease_id",
                      "the lease was granted to another caller");
  }
  it->second.connections.insert(conns.begin(), conns.end());
  return absl::OkStatus();
}

void Lessor::Detach(Id128 lease, BoundConnection conn) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(lease);
  if (it != leases_.end()) it->second.connections.erase(conn);
}

EndedLease Lessor::Collect(Id128 id, Lease& lease) {
  EndedLease ended{id,        lease.holder,   lease.grantor,
                   lease.ttl, lease.deadline, {}};
  ended.connections.assign(lease.connections.begin(), lease.connections.end());
  return ended;
}

void Lessor::Reinstate(const EndedLease& ended) {
  absl::MutexLock lock(&mu_);
  Lease& l = Put(ended.lease, ended.holder);
  l.grantor = ended.grantor;
  l.ttl = ended.ttl;
  l.deadline = ended.deadline;
  l.connections.insert(ended.connections.begin(), ended.connections.end());
  queue_.Push(l.deadline, ended.lease);
}

bool Lessor::IsLive(Id128 lease, absl::Time now) const {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(lease);
  return it != leases_.end() && it->second.deadline > now;
}

absl::StatusOr<EndedLease> Lessor::Revoke(
    Id128 lease, absl::Time now, const std::optional<std::string>& caller) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(lease);
  // Past its deadline the lease has expired, even before TakeExpired reaps
  // it: it ends as expired, never as revoked.
  const absl::Status usable =
      CheckUsable(it == leases_.end() ? nullptr : &it->second, now, caller);
  if (!usable.ok()) return usable;
  EndedLease ended = Collect(lease, it->second);
  Erase(it);
  return ended;
}

void Lessor::ListLive(
    const std::optional<std::string_view>& holder, Id128 after, absl::Time now,
    absl::FunctionRef<bool(const LeaseSnapshot&)> visit) const {
  absl::MutexLock lock(&mu_);
  auto show = [&](Id128 id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const Lease& l = leases_.at(id);
    if (l.deadline <= now) return true;  // expired, not reaped yet
    return visit(LeaseSnapshot{id, l.holder, l.grantor, l.ttl, l.deadline,
                               l.connections.size()});
  };
  if (!holder.has_value()) {
    for (auto it = by_id_.upper_bound(after); it != by_id_.end(); ++it) {
      if (!show(*it)) return;
    }
    return;
  }
  const std::string key(*holder);
  for (auto it = by_holder_.upper_bound({key, after});
       it != by_holder_.end() && it->first == key; ++it) {
    if (!show(it->second)) return;
  }
}

std::vector<EndedLease> Lessor::RevokeHolder(std::string_view holder,
                                             absl::Time now, size_t max,
                                             bool* more) {
  std::vector<EndedLease> out;
  *more = false;
  absl::MutexLock lock(&mu_);
  const std::string key(holder);
  // Erasing from a btree invalidates its iterators: pick, then erase.
  std::vector<Id128> picked;
  for (auto it = by_holder_.lower_bound({key, Id128{}});
       it != by_holder_.end() && it->first == key; ++it) {
    // Past its deadline a lease ends as expired (TakeExpired), never here.
    if (leases_.at(it->second).deadline <= now) continue;
    if (picked.size() == max) {
      *more = true;
      break;
    }
    picked.push_back(it->second);
  }
  out.reserve(picked.size());
  for (const Id128 id : picked) {
    auto lease = leases_.find(id);
    out.push_back(Collect(id, lease->second));
    Erase(lease);
  }
  return out;
}

std::vector<EndedLease> Lessor::TakeExpired(absl::Time now) {
  std::vector<EndedLease> out;
  absl::MutexLock lock(&mu_);
  absl::Time deadline;
  Id128 id;
  while (queue_.PopDue(now, &deadline, &id)) {
    auto it = leases_.find(id);
    if (it == leases_.end()) continue;  // revoked
    if (it->second.deadline > now) {
      queue_.Push(it->second.deadline, id);  // renewed since it was queued
      continue;
    }
    out.push_back(Collect(id, it->second));
    Erase(it);
  }
  return out;
}

size_t Lessor::size() const {
  absl::MutexLock lock(&mu_);
  return leases_.size();
}

size_t Lessor::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

}  // namespace registrar
