#include "service/registry/lessor.h"

#include <utility>

#include "service/common/field_error.h"

namespace registrar {

void Lessor::Grant(Id128 lease, std::string holder, absl::Duration ttl,
                   absl::Time now, std::string grantor) {
  absl::MutexLock lock(&mu_);
  Lease& l = leases_[lease];
  l.holder = std::move(holder);
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
  Lease& l = leases_[ended.lease];
  l.holder = ended.holder;
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
  leases_.erase(it);
  return ended;
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
    leases_.erase(it);
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
