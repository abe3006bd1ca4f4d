#ifndef REGISTRAR_SERVICE_CLUSTER_FOLLOWER_FEED_H_
#define REGISTRAR_SERVICE_CLUSTER_FOLLOWER_FEED_H_

// Keeps a follower's registry current (DESIGN.md, "Feed"): an etcd Watch of
// the store's prefix from the revision after the follower's Load, each
// etcd revision decoded (committed_txn.h) and applied with
// Registry::ApplyCommitted, in order. Tracks the Registrar revision applied
// so far, for the read barrier (read_barrier.h).
//
// The feed ends when the watch ends (compacted past what was applied:
// OUT_OF_RANGE; every member down: UNAVAILABLE) or a value does not decode
// (DATA_LOSS); then status() says why, waiters are woken with it, and the
// owner must build a fresh registry (Load) and a new feed. Thread-safe.

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/cluster/committed_txn.h"
#include "service/etcd/connection.h"
#include "service/etcd/etcd_layout.h"
#include "service/etcd/watch.h"
#include "service/registry/registry.h"

namespace registrar::cluster {

class FollowerFeed {
 public:
  // Runs after each Txn is applied to the registry, on the watch's thread,
  // in revision order, with no lock of the feed held (a follower hands the
  // events to its store's event log there: EtcdStore::NoteCommitted).
  using AppliedFn = std::function<void(const CommittedTxn& txn)>;

  // `registry` was loaded from etcd at etcd revision `loaded_at` (see
  // EtcdStore::loaded_at), holding Registrar revision `loaded_revision`;
  // it must outlive the feed, and nothing but the feed may change it.
  FollowerFeed(std::shared_ptr<etcd::Connection> conn, etcd::EtcdLayout layout,
               int64_t loaded_at, uint64_t loaded_revision, Registry& registry,
               AppliedFn on_applied = nullptr);
  // Stop(CANCELLED).
  ~FollowerFeed();
  // Cancels the watch and waits for its end: nothing is applied after it
  // returns. Waiters still waiting, and status() from now on, get `why`
  // (unless the feed had ended already). Idempotent.
  void Stop(absl::Status why) ABSL_LOCKS_EXCLUDED(mu_);
  FollowerFeed(const FollowerFeed&) = delete;
  FollowerFeed& operator=(const FollowerFeed&) = delete;

  // The Registrar revision applied so far.
  uint64_t applied() const ABSL_LOCKS_EXCLUDED(mu_);
  // OK while following; why the feed ended otherwise.
  absl::Status status() const ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until applied() >= revision. DEADLINE_EXCEEDED (saying how far
  // behind) when `deadline` passes first; the feed's status if it ends.
  absl::Status WaitApplied(uint64_t revision, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);

  // WaitApplied without a waiting thread: `done` gets what it would
  // return, once: at once when applied already, else from the watch's
  // thread once applied, from a timer thread (checked every 50 ms) once
  // `deadline` passed, or when the feed ends. No lock of the feed is held
  // when it runs.
  using AppliedCallback = std::function<void(absl::Status)>;
  void OnApplied(uint64_t revision, absl::Time deadline, AppliedCallback done);

 private:
  // From the watch (its callbacks never run concurrently).
  void OnEvents(const std::vector<mvccpb::Event>& events);
  void OnEnd(const etcd::WatchEnd& end);
  // Records why the feed ended; the feed's status.
  absl::Status EndLocked(const etcd::WatchEnd& end)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The callers of OnApplied; shared with the timer that expires them.
  class Waiters;

  Registry& registry_;
  const AppliedFn on_applied_;
  const std::shared_ptr<Waiters> waiters_;
  CommittedTxnDecoder decoder_;  // watch callbacks only
  mutable absl::Mutex mu_;
  std::shared_ptr<etcd::Watch> watch_ ABSL_GUARDED_BY(mu_);
  uint64_t applied_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace registrar::cluster

#endif  // REGISTRAR_SERVICE_CLUSTER_FOLLOWER_FEED_H_
