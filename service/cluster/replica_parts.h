#ifndef REGISTRAR_SERVICE_CLUSTER_REPLICA_PARTS_H_
#define REGISTRAR_SERVICE_CLUSTER_REPLICA_PARTS_H_

// Replica's private parts, shared by replica.cc and replica_recovery.cc
// only.

#include <atomic>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "service/cluster/replica.h"

namespace registrar::cluster {

struct Replica::Shared {
  absl::Mutex mu;
  bool dirty ABSL_GUARDED_BY(mu) = false;
  bool stopping ABSL_GUARDED_BY(mu) = false;
  std::shared_ptr<etcd::Election> election ABSL_GUARDED_BY(mu);
  // The create revision of a writer a forwarded call could not reach (0:
  // none): the role thread checks whether its process is gone.
  int64_t unreachable_writer ABSL_GUARDED_BY(mu) = 0;

  void Wake() {
    absl::MutexLock lock(&mu);
    dirty = true;
  }
  void Unreachable(int64_t writer) {
    absl::MutexLock lock(&mu);
    unreachable_writer = writer;
    dirty = true;
  }
};

struct Replica::Generation {
  bool leader = false;
  // Set when the generation is swapped out: a writer's store then refuses
  // every write (its fence checks it).
  std::shared_ptr<std::atomic<bool>> retired =
      std::make_shared<std::atomic<bool>>(false);
  // Shared with the writer generation that took them over (TakeOver).
  std::shared_ptr<etcd::EtcdStore> store;
  std::shared_ptr<Registry> registry;
  std::unique_ptr<FollowerFeed> feed;    // followers
  std::unique_ptr<ReadBarrier> barrier;  // followers
  // Set (on the role thread) once a writer generation took over the store
  // and registry: this one must not stop them.
  bool handed_over = false;

  // The barrier and the feed before the registry they read and change,
  // the registry (which may wait for its queued writes) before its store
  // stops. The store itself may live on a little in the event log.
  ~Generation() {
    barrier.reset();
    feed.reset();
    registry.reset();
    if (store != nullptr && !handed_over) store->Stop();
  }
};

}  // namespace registrar::cluster

#endif  // REGISTRAR_SERVICE_CLUSTER_REPLICA_PARTS_H_
