#ifndef REGISTRAR_SERVICE_ETCD_NODE_ID_CLAIMER_H_
#define REGISTRAR_SERVICE_ETCD_NODE_ID_CLAIMER_H_

// Claims a node id in etcd for as long as this process keeps it alive,
// following clientv3/concurrency's pattern: a key under our own lease,
// created only if absent.
//
//  1. Grant a lease of `ttl`; a LeaseKeeper keeps it alive from then on.
//  2. List the keys under `prefix` (<prefix><id>, decimal) and try the
//     lowest free id with a Txn: if create_revision(<prefix><id>) == 0,
//     put it with our lease. A lost race moves on to the next free id.
//  3. The id is ours while Held(): the LeaseKeeper's fencing rule (see
//     lease_keeper.h) on the injected clock, so a process paused past
//     TTL - margin stops minting before etcd can expire the lease and give
//     the id to another claimer. Loss is reported once through on_lost.
//
// Invariants:
//  1. Two claimers never hold the same id at the same time: etcd creates
//     the key once while it exists, and it exists until the lease ends.
//  2. A claimer reports Held() only before (last answered keep-alive send
//     time + TTL - margin), which is before etcd can expire the lease.
//  3. Release() revokes the lease: the key goes with it in one etcd
//     transaction, and the id is free at once.
//
// Callbacks run on gRPC or timer threads and must not block. Thread-safe.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "service/common/clock.h"
#include "service/etcd/connection.h"
#include "service/etcd/lease_keeper.h"

namespace registrar::etcd {

struct NodeIdClaimerOptions {
  std::string prefix = "/registrar/nodes/";
  int max_ids = 1 << 14;  // ids 0 .. max_ids - 1 (the ID's 14 node bits)
  absl::Duration ttl = absl::Seconds(10);  // whole seconds (etcd's unit)
  absl::Duration margin = absl::Seconds(2);
  absl::Duration keepalive_interval = absl::ZeroDuration();  // 0: TTL / 3
  absl::Duration tick = absl::Milliseconds(100);  // 0: caller calls Tick
  std::string holder;  // stored as the key's value (who holds it)
};

class NodeIdClaimer {
 public:
  using ClaimCallback =
      std::function<void(absl::StatusOr<std::shared_ptr<NodeIdClaimer>>)>;

  // Claims the lowest free id. done gets the claimer, or
  // RESOURCE_EXHAUSTED when every id is taken, INVALID_ARGUMENT for bad
  // options, or the etcd error (the lease is then revoked). on_lost runs
  // once if the claim is lost afterwards. clock must outlive the claimer.
  static void Claim(std::shared_ptr<Connection> conn, const Clock& clock,
                    NodeIdClaimerOptions options,
                    std::function<void(const absl::Status&)> on_lost,
                    ClaimCallback done);
  ~NodeIdClaimer();

  int id() const { return id_; }
  const std::string& key() const { return key_; }
  int64_t lease_id() const { return keeper_->lease_id(); }
  // Safe to mint with id() now.
  bool Held() const { return keeper_->Alive(); }
  // The keeper of the claim's lease: other keys that must live and die
  // with the claim (the replica's election key) go on it.
  const std::shared_ptr<LeaseKeeper>& keeper() const { return keeper_; }
  absl::Time valid_until() const { return keeper_->valid_until(); }
  // For callers driving time themselves (options.tick == 0).
  void Tick() { keeper_->Tick(); }
  // Stops keeping the lease and revokes it (the key goes with it).
  void Release(std::function<void(absl::Status)> done);

 private:
  struct Attempt;
  NodeIdClaimer(std::shared_ptr<Connection> conn, int id, std::string key,
                std::shared_ptr<LeaseKeeper> keeper)
      : conn_(std::move(conn)),
        id_(id),
        key_(std::move(key)),
        keeper_(std::move(keeper)) {}

  const std::shared_ptr<Connection> conn_;
  const int id_;
  const std::string key_;
  const std::shared_ptr<LeaseKeeper> keeper_;
};

}  // namespace registrar::etcd

#endif  // REGISTRAR_SERVICE_ETCD_NODE_ID_CLAIMER_H_
