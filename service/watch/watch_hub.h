#ifndef REGISTRAR_SERVICE_WATCH_WATCH_HUB_H_
#define REGISTRAR_SERVICE_WATCH_WATCH_HUB_H_

// Watch, pull-based (as etcd's watchable store): every watcher is a cursor
// into the store's event log, and one pump thread reads the log for the
// watchers that can take more. Nothing is pushed to a watcher's memory as
// events are committed, so
//  - the store's event listener does O(1) work (records the newest revision
//    in an atomic and wakes the pump): issuers are never slowed by watchers;
//  - a watcher holds at most `batch` read-but-unsent events, however slow
//    its reader: a slow watcher costs a cursor, not a queue;
//  - a watcher that falls more than `max_lag` revisions behind is finished
//    with RESOURCE_EXHAUSTED, one whose cursor falls below the retained
//    history with OUT_OF_RANGE; both messages say where to resume.
//    "Behind" counts from the closest the watcher has been to the newest
//    revision: for one that has kept up, from the newest; one that started
//    (or resumed) far back may catch up at its pace, and is cut off only if
//    it falls a further max_lag behind. So following the message's advice
//    ("resume with start_revision=R") works even after a long lag.
//
// Invariants:
//  1. A watcher receives the events with revision >= its start, filtered by
//     tenant, in revision order, each once; so resuming with
//     start_revision = last received revision + 1 gives no gap and no
//     duplicate.
//  2. At most one WatchSink::Send is outstanding per watcher (the next one
//     only after WriteDone), and nothing is sent after WatchSink::Finish,
//     which is called at most once.
//  3. After Stop(watch) returns the hub never touches that watcher's sink.
//  4. The hub's own mutex is never held while a sink is called; a
//     watcher's sink is called only with that watcher's mutex held.
//
// This file knows nothing of gRPC: the RPC layer implements WatchSink.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/store/store.h"

namespace registrar {

struct WatchLimits {
  // Most concurrent watchers; more are refused with RESOURCE_EXHAUSTED.
  size_t max_watchers = 1000;
  // Most concurrent watchers of one tenant (the all-tenant watchers count
  // as one tenant, ""), and of one caller; so one tenant or one caller
  // cannot take every slot from the others. 0: no bound of its own.
  size_t max_watchers_per_tenant = 250;
  size_t max_watchers_per_caller = 250;
  // Revisions a watcher may fall behind the newest one (further than it
  // ever was, see above) before it is finished with RESOURCE_EXHAUSTED.
  uint64_t max_lag = 100'000;
  // Events read per store read, and the most a watcher holds unsent.
  size_t batch = 64;
};

// One watch stream, as the hub sees it. Implemented by the RPC layer (a
// gRPC ServerWriteReactor) and by tests.
//
// The hub calls these with the watcher's mutex held, from its pump thread
// or from inside WatchHub::WriteDone/Cancel/Shutdown: they must not block
// and must not call back into the hub (gRPC's StartWrite and Finish only
// queue work; their reactions run later on other threads).
class WatchSink {
 public:
  // Starts sending `event`. The sink calls WatchHub::WriteDone once it is
  // written (or failed). `event` is valid only during the call.
  virtual void Send(const Event& event) = 0;
  // Ends the stream with `status`. Called at most once; no Send follows.
  // A Send may still be outstanding: its WriteDone is then ignored.
  virtual void Finish(const absl::Status& status) = 0;

 protected:
  ~WatchSink() = default;
};

struct WatchSpec {
  // 0: from now (the next revision committed). N > 0: from revision N;
  // OUT_OF_RANGE when N is older than the retained history or beyond the
  // newest committed revision + 1 (the next one, which is waited for).
  uint64_t start_revision = 0;
  // Only records of this tenant; empty: every tenant.
  std::string tenant;
  // Who watches (the caller's name, or its address without authentication):
  // the key of max_watchers_per_caller.
  std::string caller;
};

// Thread-safe.
class WatchHub {
 public:
  // One watcher (opaque to callers).
  class Watcher;

  // `store` must outlive the hub. Becomes the store's event listener (a
  // store has one) until Shutdown.
  explicit WatchHub(Store& store, WatchLimits limits = {});
  // Shutdown(). Every sink must have been Stop()ped (gRPC: every call done)
  // before the hub is destroyed.
  ~WatchHub();
  WatchHub(const WatchHub&) = delete;
  WatchHub& operator=(const WatchHub&) = delete;

  // Registers a watcher that sends to `sink` until finished. The sink may be
  // called (from the pump thread) before Start returns. Errors, with the
  // sink never called: OUT_OF_RANGE when spec.start_revision is older than
  // the retained history (the message names the oldest available
  // revision) or beyond the newest + 1 (the message names the newest);
  // RESOURCE_EXHAUSTED with max_watchers watchers already, or with
  // max_watchers_per_tenant of spec.tenant or max_watchers_per_caller of
  // spec.caller (the message names the limit and its flag); UNAVAILABLE after
  // Shutdown.
  absl::StatusOr<std::shared_ptr<Watcher>> Start(const WatchSpec& spec,
                                                 WatchSink* sink);

  // The sink's outstanding Send has completed; `ok` false means the stream
  // is broken (the watcher is finished with CANCELLED). Sends the next
  // pending event, if any, from the calling thread; else hands the watcher
  // back to the pump.
  void WriteDone(Watcher& watcher, bool ok);

  // The client went away: finishes the watcher with CANCELLED (unless it is
  // finished already).
  void Cancel(Watcher& watcher);

  // Forgets the watcher and its sink: after this returns the sink is never
  // called again. Call once the stream is over (gRPC: OnDone).
  void Stop(Watcher& watcher);

  // Finishes every watcher with UNAVAILABLE "server is shutting down",
  // refuses new ones, stops the pump thread and detaches from the store.
  // Idempotent.
  void Shutdown();

  // Watchers started and not yet stopped.
  size_t watcher_count() const;
  // Waits until watcher_count() is `n`; false if it was not within `bound`
  // (for tests: a gRPC stream starts or stops its watcher on its own
  // thread).
  bool AwaitWatcherCount(size_t n, absl::Duration bound) const;
  // Events `watcher` has read and not yet handed to its sink (at most
  // limits().batch): what a slow reader costs the server, for tests.
  size_t pending_events(Watcher& watcher) const;

  // The pump's step, for tests: wakes the pump and waits until a round of
  // it that began after this call served every watcher and found nothing
  // more to do (so whatever was committed and startable before the call
  // has been read and handed to the sinks that can take it). False when
  // that did not happen within `bound` (or the hub is shut down).
  bool AwaitPumpIdle(absl::Duration bound);
  const WatchLimits& limits() const { return limits_; }

 private:
  // The store's event listener: O(1), no allocation, never blocks.
  void OnCommitted(const std::vector<Event>& events);
  // Wakes the pump (lock-free).
  void Wake();
  void RunPump();
  // The pump's last store read, reused by watchers at the same cursor.
  struct ReadCache {
    bool valid = false;
    uint64_t from = 0;
    absl::Status status;
    std::vector<Event> events;
  };
  // One look at one watcher: cut it off, or read and send more. True when
  // it made progress that may allow more progress at once. Lowers
  // *wake_at to the newest revision at which this watcher next needs the
  // pump (its cursor when caught up; its cut-off point while writing).
  bool Serve(Watcher& w, uint64_t last, uint64_t oldest, uint64_t* wake_at,
             ReadCache* cache);

  Store& store_;
  const WatchLimits limits_;

  // Newest committed revision the listener has seen.
  std::atomic<uint64_t> latest_{0};
  // The listener wakes the pump only once latest_ reaches this: a commit
  // that no watcher can take now (every one is writing or finished) costs
  // the committer two atomic operations and no wake-up.
  std::atomic<uint64_t> wake_at_{0};
  // Bumped for every reason the pump may have work; the pump waits for it
  // to change (C++20 atomic wait: a futex, no lock for the notifier).
  std::atomic<uint32_t> wake_seq_{0};
  std::atomic<bool> stopping_{false};

  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<Watcher>> watchers_ ABSL_GUARDED_BY(mu_);
  // Bumped when watchers_ changes, so the pump re-copies it only then.
  uint64_t watchers_version_ ABSL_GUARDED_BY(mu_) = 0;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
  // Started and not yet stopped watchers per tenant and per caller.
  absl::flat_hash_map<std::string, size_t> per_tenant_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, size_t> per_caller_ ABSL_GUARDED_BY(mu_);

  // The wake_seq_ value of the pump's last round that ended idle (the pump
  // sets it just before it sleeps): AwaitPumpIdle's step hook. Only the
  // pump writes it, once per sleep, never on a committer's path.
  absl::Mutex idle_mu_;
  uint32_t idle_seq_ ABSL_GUARDED_BY(idle_mu_) = 0;
  bool idle_seen_ ABSL_GUARDED_BY(idle_mu_) = false;

  std::thread pump_;
  // Serialises Shutdown callers.
  absl::Mutex shutdown_mu_;
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_WATCH_WATCH_HUB_H_
