#ifndef REGISTRAR_SERVICE_REGISTRY_COMMIT_QUEUE_H_
#define REGISTRAR_SERVICE_REGISTRY_COMMIT_QUEUE_H_

// The registry's one way to the store: changes decided under shard locks
// are queued here in the order they were decided, and handed to the store
// in that order by whoever calls Flush next, with no registry lock held.
//
//   under the shard lock(s):  admit, stage in memory, Enqueue(batch, done)
//   after unlocking:          Flush()  ->  Store::Submit, in queue order
//   on the store's completion: done(status)  (apply or roll back, reply)
//
// Invariants:
//  1. Batches reach Store::Submit in Enqueue order, so a change decided
//     after another (a cascade ending records an earlier Issue added) is
//     committed after it; the store completes them in that order too.
//  2. Enqueue never calls the store and never blocks on I/O: it may be
//     called with registry locks held. Flush calls the store and must be
//     called with none held; it may run completions (a store that commits
//     on the caller's thread) before returning.
//  3. Every enqueued batch is submitted by some Flush: a caller whose Flush
//     finds another thread flushing leaves its batch to that thread, which
//     keeps going until the queue is empty.
//
// Thread-safe.

#include <deque>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "service/store/store.h"

namespace registrar {

class CommitQueue {
 public:
  // Gets the commit's status, once, on a store thread or in a Flush, with
  // no registry lock held. The batch is valid until it returns.
  using Done = absl::AnyInvocable<void(WriteBatch&, absl::Status) &&>;

  // `store` must outlive the queue.
  explicit CommitQueue(Store& store) : store_(store) {}
  CommitQueue(const CommitQueue&) = delete;
  CommitQueue& operator=(const CommitQueue&) = delete;

  // Queues `batch` behind everything queued before.
  void Enqueue(WriteBatch batch, Done done) ABSL_LOCKS_EXCLUDED(mu_);

  // Submits what is queued, in order, unless another thread is doing so.
  void Flush() ABSL_LOCKS_EXCLUDED(mu_);

  Store& store() const { return store_; }

 private:
  struct Entry {
    WriteBatch batch;
    Done done;
  };

  Store& store_;
  absl::Mutex mu_;
  std::deque<std::unique_ptr<Entry>> queue_ ABSL_GUARDED_BY(mu_);
  bool flushing_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_REGISTRY_COMMIT_QUEUE_H_
