#include "service/registry/lessor.h"

#include <utility>

namespace registrar {

void Lessor::Grant(Id128 lease, std::string holder, absl::Duration ttl,
                   absl::Time now) {
  absl::MutexLock lock(&mu_);
  Lease& l = leases_[lease];
  l.holder = std::move(holder);
  l.ttl = ttl;
  l.deadline = now + ttl;
  queue_.Push(l.deadline, lease);
}

absl::StatusOr<absl::Duration> Lessor::KeepAlive(Id128 lease, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(lease);
  if (it == leases_.end() || it->second.deadline <= now) {
    return absl::NotFoundError("lease_id: no live lease with this id");
  }
  it->second.deadline = now + it->second.ttl;
  queue_.Push(it->second.deadline, lease);
  return it->second.ttl;
}

absl::Status Lessor::Attach(Id128 lease,
                            absl::Span<const BoundConnection> conns,
                            absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(lease);
  if (it == leases_.end() || it->second.deadline <= now) {
    return absl::FailedPreconditionError("lease_id: no live lease with this id");
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
  EndedLease ended{id, {}};
  ended.connections.assign(lease.connections.begin(), lease.connections.end());
  return ended;
}

absl::StatusOr<EndedLease> Lessor::Revoke(Id128 lease) {
  absl::MutexLock lock(&mu_);
  auto it = leases_.find(lease);
  if (it == leases_.end()) {
    return absl::NotFoundError("lease_id: no live lease with this id");
  }
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
    // Entries left behind by renewals or revocations are stale: skip them.
    if (it == leases_.end() || it->second.deadline != deadline) continue;
    out.push_back(Collect(id, it->second));
    leases_.erase(it);
  }
  return out;
}

size_t Lessor::size() const {
  absl::MutexLock lock(&mu_);
  return leases_.size();
}

}  // namespace registrar
