#ifndef REGISTRAR_SERVICE_STORE_GROUP_COMMIT_H_
#define REGISTRAR_SERVICE_STORE_GROUP_COMMIT_H_

// Group commit, leader/follower style: concurrent commits queue their
// batches; one thread at a time becomes the leader, takes every queued batch,
// assigns their revisions in queue order, writes them with ONE call to the
// backend's write function (one fsync), tells the listener, and wakes the
// others.
//
// Two ways in:
//  - Commit() blocks; the caller leads when no leader is active, so an
//    uncontended commit costs no thread handoff.
//  - Submit() queues and returns; `done` runs once the batch is written (or
//    failed), on the thread that led its group. Submitted batches are led by
//    a writer thread started with the first Submit (or by a blocking
//    Commit that comes along). No thread waits per call, which is what makes
//    fsync mode cheap: the only handoff is one wake-up of the writer per
//    group, not two context switches per call.
//
// Invariants:
//  1. Revisions are assigned only by the leader, consecutively from
//     last_revision() + 1, so they are gap-free and increase in the order
//     the groups reach the backend.
//  2. A group that fails to write consumes no revisions and is reported to
//     every batch in it; nothing of it is visible to the listener.
//  3. The listener sees each committed event once, in revision order.
//  4. Batches are written in the order they were queued (Commit or Submit),
//     so a caller that queues under its own lock orders its batches.
//  5. `done` callbacks run on the writer thread, never on a thread blocked
//     in Commit (which may hold its caller's locks), without the
//     committer's lock, in queue order; the next group may be written
//     meanwhile.
//
// The writer thread may run at a lower nice value than the threads that
// submit (writer_nice). It is the one place every change passes through,
// and each reply it sends wakes a gRPC thread: on a busy core a woken
// thread of equal weight preempts it between two replies, runs one
// callback and sleeps again. With a higher weight it writes and answers its
// group first, and the woken threads find all of the group's completions
// at once (bench/RESULTS.md section 16).

#include <cstdint>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "service/store/store.h"

namespace registrar {

class GroupCommitter {
 public:
  // Writes a group whose revisions are already assigned. Called by one
  // leader at a time, without the committer's lock held.
  using WriteFn = std::function<absl::Status(const std::vector<WriteBatch*>&)>;
  using Done = absl::AnyInvocable<void(absl::Status) &&>;

  // `writer_nice`: the writer thread's nice value; 0 leaves it as the
  // process's. Lowering it needs a privilege (common/thread_nice.h): the
  // owner checks that first (CheckThreadNice); if it is refused anyway,
  // the thread keeps the process's value.
  GroupCommitter(uint64_t last_revision, WriteFn write, int writer_nice = 0);
  ~GroupCommitter() { Stop(); }

  // Writes what is still queued, then stops the writer thread. Owners call
  // it before tearing down what the write function uses. Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  absl::Status Commit(WriteBatch* batch) ABSL_LOCKS_EXCLUDED(mu_);
  // `batch` must stay valid until `done` has run.
  void Submit(WriteBatch* batch, Done done) ABSL_LOCKS_EXCLUDED(mu_);

  void SetListener(EventListener listener) ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t last_revision() const ABSL_LOCKS_EXCLUDED(mu_);

  using Stats = CommitStats;
  Stats stats() const ABSL_LOCKS_EXCLUDED(mu_);
  // Batches queued and not yet taken by a leader (a group being written is
  // not counted).
  size_t queued() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Waiter {
    WriteBatch* batch;
    Done done;  // empty for a blocking Commit
    bool finished = false;
    absl::Status status;
  };

  // As leader: writes every queued batch as one group, marks the blocking
  // waiters finished and moves the submitted ones to finished_ (their
  // statuses set) for the writer thread.
  void LeadGroup() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriterLoop() ABSL_LOCKS_EXCLUDED(mu_);

  const WriteFn write_;
  const int writer_nice_;
  mutable absl::Mutex mu_;
  // Blocking waiters live on their callers' stacks; submitted ones are owned
  // here (released when moved to a leader's callbacks).
  std::vector<Waiter*> queue_ ABSL_GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Waiter>> finished_ ABSL_GUARDED_BY(mu_);
  bool leader_active_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t last_revision_ ABSL_GUARDED_BY(mu_);
  EventListener listener_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
  std::thread writer_;  // started by the first Submit (under mu_)
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_STORE_GROUP_COMMIT_H_
