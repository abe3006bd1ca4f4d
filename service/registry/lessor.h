#ifndef REGISTRAR_SERVICE_REGISTRY_LESSOR_H_
#define REGISTRAR_SERVICE_REGISTRY_LESSOR_H_

// Leases held by gateway instances and the connections bound to them.
//
// The Lessor knows which connections a lease carries, not what they are:
// ending those records is the Registry's job (one code path for revoke and
// expiry). Lock order: a Registry shard's mutex may be held while calling
// Attach/Detach; the Lessor never calls back into the Registry, and Revoke/
// TakeExpired return the connections so the caller releases them after the
// Lessor's mutex is dropped.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "service/id/id.h"
#include "service/registry/lease_queue.h"

namespace registrar {

// A connection bound to a lease, with the registry shard that holds it.
struct BoundConnection {
  Id128 connection;
  uint32_t shard = 0;

  friend bool operator==(const BoundConnection&,
                         const BoundConnection&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const BoundConnection& c) {
    return H::combine(std::move(h), c.connection, c.shard);
  }
};

// A lease that ended, with what it carried.
struct EndedLease {
  Id128 lease;
  std::string holder;
  std::string grantor;
  absl::Duration ttl;
  absl::Time deadline;
  std::vector<BoundConnection> connections;
};

// A live lease as ListLive shows it.
struct LeaseSnapshot {
  Id128 lease;
  std::string_view holder;  // valid during the ListLive callback only
  std::string_view grantor;
  absl::Duration ttl;
  absl::Time deadline;
  size_t connections = 0;
};

class Lessor {
 public:
  Lessor() = default;
  Lessor(const Lessor&) = delete;
  Lessor& operator=(const Lessor&) = delete;

  // Records a new lease expiring at now + ttl, granted by `grantor` (the
  // authenticated caller; "" without authentication).
  void Grant(Id128 lease, std::string holder, absl::Duration ttl,
             absl::Time now, std::string grantor = "") ABSL_LOCKS_EXCLUDED(mu_);

  // Renews for another full TTL and returns it. NotFound when the lease is
  // unknown, revoked, or past its deadline (even if not reaped yet).
  // PermissionDenied when `caller` is set and is not the lease's grantor.
  absl::StatusOr<absl::Duration> KeepAlive(
      Id128 lease, absl::Time now,
      const std::optional<std::string>& caller = std::nullopt)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Restarts every lease's clock: its deadline becomes now + its TTL, as
  // etcd does for every lease when its leader changes. A replica that
  // becomes the cluster's writer calls it on the leases it followed (their
  // renewals happened on the old writer).
  void RestartAll(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);

  // Binds connections. FailedPrecondition (and nothing bound) when the
  // lease is not live; PermissionDenied when `caller` is set and is not the
  // lease's grantor.
  absl::Status Attach(Id128 lease, absl::Span<const BoundConnection> conns,
                      absl::Time now,
                      const std::optional<std::string>& caller = std::nullopt)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Unbinds a connection released on its own. No-op if already gone.
  void Detach(Id128 lease, BoundConnection conn) ABSL_LOCKS_EXCLUDED(mu_);

  // Removes the lease. NotFound when it is unknown, already ended, or past
  // its deadline (then it is left for TakeExpired, to end as expired).
  // PermissionDenied (and nothing changes) when `caller` is set and is not
  // the lease's grantor.
  absl::StatusOr<EndedLease> Revoke(Id128 lease, absl::Time now,
                                    const std::optional<std::string>& caller =
                                        std::nullopt) ABSL_LOCKS_EXCLUDED(mu_);

  // Puts back a lease whose ending could not be stored, so the ending is
  // retried (a revoke by the caller, an expiry by the next TakeExpired).
  void Reinstate(const EndedLease& lease) ABSL_LOCKS_EXCLUDED(mu_);

  // Calls `visit` on the live leases (deadline after `now`) with an ID
  // after `after`, in ID order, until it returns false: every holder's when
  // `holder` is nullopt, else those whose holder equals it. `visit` runs
  // under the Lessor's lock and must not call the Lessor.
  void ListLive(const std::optional<std::string_view>& holder, Id128 after,
                absl::Time now,
                absl::FunctionRef<bool(const LeaseSnapshot&)> visit) const
      ABSL_LOCKS_EXCLUDED(mu_);

  // Revokes (as Revoke does, with no caller check) up to `max` live leases
  // of `holder`, in ID order, and returns them; *more is set when live
  // leases of `holder` remain.
  std::vector<EndedLease> RevokeHolder(std::string_view holder, absl::Time now,
                                       size_t max, bool* more)
      ABSL_LOCKS_EXCLUDED(mu_);

  // True when the lease exists and its deadline is after `now`.
  bool IsLive(Id128 lease, absl::Time now) const ABSL_LOCKS_EXCLUDED(mu_);

  // Removes and returns every lease whose deadline is <= now.
  std::vector<EndedLease> TakeExpired(absl::Time now) ABSL_LOCKS_EXCLUDED(mu_);

  size_t size() const ABSL_LOCKS_EXCLUDED(mu_);
  // Entries in the expiry queue (at most one per lease).
  size_t queued() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Lease {
    std::string holder;
    std::string grantor;
    absl::Duration ttl;
    absl::Time deadline;
    absl::flat_hash_set<BoundConnection> connections;
  };

  static EndedLease Collect(Id128 id, Lease& lease);
  // Adds or removes a lease in leases_ and both indexes.
  Lease& Put(Id128 id, std::string holder) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Erase(absl::flat_hash_map<Id128, Lease>::iterator it)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // NotFound / PermissionDenied for a lease `caller` may not use.
  static absl::Status CheckUsable(const Lease* lease, absl::Time now,
                                  const std::optional<std::string>& caller);

  mutable absl::Mutex mu_;
  absl::flat_hash_map<Id128, Lease> leases_ ABSL_GUARDED_BY(mu_);
  // The keys of leases_ in ID order, and by holder then ID: the operator's
  // listings and revoke-by-holder page through them.
  absl::btree_set<Id128> by_id_ ABSL_GUARDED_BY(mu_);
  absl::btree_set<std::pair<std::string, Id128>> by_holder_
      ABSL_GUARDED_BY(mu_);
  LeaseQueue queue_ ABSL_GUARDED_BY(mu_);
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_REGISTRY_LESSOR_H_
