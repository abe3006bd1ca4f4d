#ifndef REGISTRAR_SERVICE_CLUSTER_REPLICA_H_
#define REGISTRAR_SERVICE_CLUSTER_REPLICA_H_

// One `registrar --store=etcd` process among several on one prefix
// (DESIGN.md): its role (writer or follower), the registry that answers
// for it, and what the RPC layer asks of it (api/cluster_hook.h).
//
// A replica works in generations: a generation is an EtcdStore, a Registry
// freshly loaded from it and, on a follower, a FollowerFeed and a
// ReadBarrier. A writer that steps down never turns its registry into a
// follower's: it builds a new generation by a fresh Load and swaps it in.
// A new writer takes over its caught-up follower generation instead.
//
//  - Start: a follower generation (Load, then the feed from the Load's
//    etcd revision + 1).
//  - Campaign: enters the election under <prefix>/leader/ on the node id
//    claim's lease, with the address other replicas forward to.
//  - Elected: the follower generation catches up with etcd, stops its
//    feed and is taken over as the writer generation (same store and
//    registry: no reload; every lease restarts its full TTL, so nothing
//    mass-expires), its store fenced by etcd's m/rev mod_revision, the node
//    id claim and the election's LeaderCompare(); if it cannot catch up, a
//    writer generation is loaded afresh instead. From then on changes are
//    taken here and Tick expires leases and drops tombstones. Until it is
//    installed, changes are refused UNAVAILABLE.
//  - Deposed (candidate key gone, or this generation's store fenced): the
//    writer generation refuses further writes at once (its fence checks
//    the election), and a follower generation is loaded and swapped in.
//  - A follower whose feed ended (etcd compacted past it, a value that
//    does not decode, every member down) loads a fresh follower generation.
//  - The writer's address refuses connections (found when a forwarded call
//    could not reach it, then probed twice): its etcd lease is revoked, so
//    that the next candidate is elected at once, not after the lease TTL.
//    Likewise when the writer named is at this replica's own address
//    under another lease: a previous process on this address, dead (a
//    replica restarted on its address, then the writer killed before the
//    old lease ran out, elected the dead one; every follower forwarded to
//    this one until the lease's TTL).
//  - The node id claim lost (the process paused, or etcd unreachable,
//    past the claim's TTL): nothing is written or forwarded with it again,
//    health says so. The role thread then claims a node id anew (the
//    same or another; ReplicaOptions::reclaim), mints with it from then
//    on, loads a fresh follower generation and enters the election again
//    (replica_recovery.cc). Without `reclaim`, the process must be
//    restarted.
//
// Role changes run on the replica's own thread (they block on etcd); the
// election's callbacks only wake it. A retired generation is destroyed on
// that thread once no call holds its registry any more.
//
// Thread-safe.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/api/cluster_hook.h"
#include "service/cluster/event_log.h"
#include "service/cluster/follower_feed.h"
#include "service/cluster/forwarder.h"
#include "service/cluster/read_barrier.h"
#include "service/common/clock.h"
#include "service/etcd/connection.h"
#include "service/etcd/election.h"
#include "service/etcd/etcd_store.h"
#include "service/etcd/node_id_claimer.h"
#include "service/id/id_generator.h"
#include "service/registry/observer.h"
#include "service/registry/registry.h"

namespace registrar::cluster {

struct ReplicaOptions {
  etcd::EtcdStoreOptions store;
  RegistryOptions registry;
  // A follower that has not applied what etcd holds for this long is
  // NOT_SERVING (--follower_max_lag).
  absl::Duration max_lag = absl::Seconds(10);
  // For the channels to the writer; null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> forward_credentials;
  // The name the writer's certificate is checked against; empty: the
  // address dialed.
  std::string forward_server_name;
  // A forwarded call's deadline: the caller's, but no later than this from
  // now (--call_timeout).
  absl::Duration forward_timeout = absl::Seconds(30);
  // Claims a node id again after the claim was lost (blocking; on the role
  // thread). Null: a replica that lost its claim stays out until
  // restarted.
  std::function<absl::StatusOr<std::shared_ptr<etcd::NodeIdClaimer>>()> reclaim;
};

// What health reports (CheckHealth).
struct ReplicaHealth {
  bool serving = true;
  std::string cause;  // why not serving; empty when serving
  bool leader = false;
  std::string leader_address;  // the writer's address; empty: none known
  uint64_t applied = 0;        // Registrar revision this replica holds
  // How often this replica became the writer: by taking over its caught-up
  // follower registry, or by loading a fresh one from etcd.
  uint64_t took_over = 0;
  uint64_t loaded_as_writer = 0;
  // Writers this replica found refusing connections and replaced at once
  // by revoking their etcd lease (ReplaceDeadWriter).
  uint64_t dead_writers_revoked = 0;
  // Node ids this replica claimed anew after losing its claim.
  uint64_t reclaimed = 0;
  int node_id = -1;  // the node id held now
};

class Replica final : public ClusterHook {
 public:
  // Loads the first (follower) generation. `conn`, `claim` (held), `clock`,
  // `ids` (minting with the claim's node id) and `observer` (nullable)
  // must outlive the replica. UNAVAILABLE when etcd cannot be read.
  static absl::StatusOr<std::unique_ptr<Replica>> Start(
      std::shared_ptr<etcd::Connection> conn,
      std::shared_ptr<etcd::NodeIdClaimer> claim, ReplicaOptions options,
      const Clock& clock, IdGenerator& ids, RegistryObserver* observer);
  // Stop().
  ~Replica() override;
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  // Enters the election with `advertise` (where the others forward
  // changes to), once this replica serves. Returns once the first leader
  // is known and, if it is this replica, its writer generation is
  // installed; or after `settle` (the role then settles in the
  // background). Errors: the election could not be entered.
  absl::Status Campaign(const std::string& advertise, absl::Duration settle);

  // ClusterHook.
  std::shared_ptr<Registry> registry() override;
  void BeforeRead(absl::Time deadline, ReadReady ready) override;
  bool Forward(grpc::CallbackServerContext* ctx, Method method,
               const grpc::ByteBuffer& request, grpc::ByteBuffer* response,
               ForwardDone done) override;

  // The event log the WatchHub reads: always the current generation's.
  Store& event_log() { return event_log_; }

  // The writer's periodic work (lease expiry, tombstone drops); nothing on
  // a follower. Call from one thread (the server's ticker).
  std::vector<std::string> Tick();

  // Serving or why not, the role and the writer. May block for about a
  // second (one barrier probe on a follower); call from one thread.
  ReplicaHealth CheckHealth();

  // True when this replica is the writer with its writer generation in.
  bool IsLeader() const;

  // The node id claim held now (another one after a re-claim).
  std::shared_ptr<etcd::NodeIdClaimer> claim() const ABSL_LOCKS_EXCLUDED(mu_);

  // Leaves the election and stops the role thread; generations stay until
  // destruction. Idempotent.
  void Stop();

 private:
  struct Generation;
  // What the election's callbacks and the stores' fences share with the
  // replica; outlives it when a callback is late.
  struct Shared;

  Replica(std::shared_ptr<etcd::Connection> conn,
          std::shared_ptr<etcd::NodeIdClaimer> claim, ReplicaOptions options,
          const Clock& clock, IdGenerator& ids, RegistryObserver* observer);

  // A fresh generation loaded from etcd.
  absl::StatusOr<std::shared_ptr<Generation>> Build(bool leader);
  // A writer generation on `follower`'s store and registry, once its feed
  // applied everything etcd holds; the follower's feed is stopped. Errors:
  // it could not catch up (then load afresh).
  absl::StatusOr<std::shared_ptr<Generation>> TakeOver(Generation& follower);
  // What a writer generation's store requires before each write: the node
  // id claim, the election's LeaderCompare, and `retired` still false.
  absl::StatusOr<etcd::EtcdStore::WriteFence> WriterFence(
      std::shared_ptr<std::atomic<bool>> retired);
  void Install(std::shared_ptr<Generation> g) ABSL_LOCKS_EXCLUDED(mu_);
  std::shared_ptr<Generation> current() const ABSL_LOCKS_EXCLUDED(mu_);
  std::shared_ptr<etcd::Election> election() const;
  // Enters the writer election under claim()'s lease (blocking).
  absl::Status EnterElection();

  // The role thread: reconciles the generation with the election.
  void Run();
  void Reconcile();
  // After a forwarded call found the writer unreachable: when its address
  // refuses connections (its process is gone), revokes its etcd lease, so
  // that its election key goes now instead of after the lease's TTL and the
  // next replica takes over at once.
  // Also: a writer named at this replica's own advertise address under
  // another lease is a previous process on that address, dead; revoked at
  // once.
  void ReplaceDeadWriter();
  bool IsPredecessor(const etcd::LeaderInfo& leader) const
      ABSL_LOCKS_EXCLUDED(mu_);
  void RevokeWriterLease(const etcd::LeaderInfo& leader, std::string_view why);
  // The claim is lost: leaves the election, retires the generation and
  // claims a node id again (replica_recovery.cc).
  void Reclaim();
  // After a re-claim: a fresh follower generation, then the election.
  void Rejoin();
  void FreeRetired();

  const std::shared_ptr<etcd::Connection> conn_;
  const ReplicaOptions options_;
  const Clock& clock_;
  IdGenerator& ids_;
  RegistryObserver* const observer_;
  const std::shared_ptr<Shared> shared_;
  EventLog event_log_;

  mutable absl::Mutex mu_;
  std::shared_ptr<Generation> current_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<Forwarder> forwarder_ ABSL_GUARDED_BY(mu_);  // Campaign
  std::string advertise_ ABSL_GUARDED_BY(mu_);                 // Campaign
  std::shared_ptr<etcd::NodeIdClaimer> claim_ ABSL_GUARDED_BY(mu_);
  // Role thread only.
  std::vector<std::shared_ptr<Generation>> retired_;
  absl::Time next_build_ = absl::InfinitePast();
  absl::Time next_revoke_ = absl::InfinitePast();
  int64_t last_revoked_ = 0;  // the last writer lease revoked
  absl::Time next_reclaim_ = absl::InfinitePast();

  // CheckHealth only.
  absl::Time behind_since_ = absl::InfiniteFuture();
  absl::Time last_probe_ = absl::InfinitePast();
  absl::Status last_probe_status_;

  std::thread thread_;
  std::atomic<bool> stopped_{false};
  // ReplicaHealth's counts (written on the role thread).
  std::atomic<uint64_t> took_over_{0};
  std::atomic<uint64_t> loaded_as_writer_{0};
  std::atomic<uint64_t> dead_writers_revoked_{0};
  std::atomic<uint64_t> reclaimed_{0};
  // A re-claimed replica still has to rejoin (set and cleared on the role
  // thread; health reads it).
  std::atomic<bool> rejoin_{false};
};

}  // namespace registrar::cluster

#endif  // REGISTRAR_SERVICE_CLUSTER_REPLICA_H_
