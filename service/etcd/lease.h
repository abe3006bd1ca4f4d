#ifndef REGISTRAR_SERVICE_ETCD_LEASE_H_
#define REGISTRAR_SERVICE_ETCD_LEASE_H_

// etcd's Lease service, asynchronously: grant, revoke, time-to-live. To
// keep a lease alive, see lease_keeper.h. Grant, Revoke and TimeToLive are
// retried on another member when one fails: a grant sent twice leaves at
// most an unused lease that expires on its own; revoking twice is a no-op
// (NOT_FOUND the second time).
//
// Callbacks run once, on a gRPC thread, and must not block. Thread-safe.

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "etcd/etcdserver/etcdserverpb/rpc.pb.h"
#include "service/etcd/connection.h"

namespace registrar::etcd {

class Lease {
 public:
  template <class T>
  using Callback = std::function<void(absl::StatusOr<T>)>;

  explicit Lease(std::shared_ptr<Connection> conn) : conn_(std::move(conn)) {}

  // A lease of ttl_seconds (etcd may raise it to its minimum TTL); id 0:
  // etcd picks the id.
  void Grant(int64_t ttl_seconds, int64_t id,
             Callback<etcdserverpb::LeaseGrantResponse> done);
  // Ends the lease and deletes every key attached to it, in one etcd
  // transaction. NOT_FOUND when it does not exist (any more).
  void Revoke(int64_t id, Callback<etcdserverpb::LeaseRevokeResponse> done);
  // TTL -1 in the response: the lease does not exist.
  void TimeToLive(int64_t id, bool keys,
                  Callback<etcdserverpb::LeaseTimeToLiveResponse> done);

 private:
  const std::shared_ptr<Connection> conn_;
};

}  // namespace registrar::etcd

#endif  // REGISTRAR_SERVICE_ETCD_LEASE_H_
