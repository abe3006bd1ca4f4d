#ifndef REGISTRAR_SERVICE_STORE_GROUP_COMMIT_H_
#define REGISTRAR_SERVICE_STORE_GROUP_COMMIT_H_

// Group commit, leader/follower style: concurrent Commit calls queue their
// batches; one caller at a time becomes the leader, takes every queued batch,
// assigns their revisions in queue order, writes them with ONE call to the
// backend's write function (one fsync), tells the listener, and wakes the
// others. No thread of its own, so an uncontended commit costs no handoff.
//
// Invariants:
//  1. Revisions are assigned only by the leader, consecutively from
//     last_revision() + 1, so they are gap-free and increase in the order
//     the groups reach the backend.
//  2. A group that fails to write consumes no revisions and is reported to
//     every batch in it; nothing of it is visible to the listener.
//  3. The listener sees each committed event once, in revision order.

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "service/store/store.h"

namespace registrar {

class GroupCommitter {
 public:
  // Writes a group whose revisions are already assigned. Called by one
  // leader at a time, without the committer's lock held.
  using WriteFn = std::function<absl::Status(const std::vector<WriteBatch*>&)>;

  GroupCommitter(uint64_t last_revision, WriteFn write);

  absl::Status Commit(WriteBatch* batch) ABSL_LOCKS_EXCLUDED(mu_);

  void SetListener(EventListener listener) ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t last_revision() const ABSL_LOCKS_EXCLUDED(mu_);

  using Stats = CommitStats;
  Stats stats() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Waiter {
    WriteBatch* batch;
    bool done = false;
    absl::Status status;
  };

  const WriteFn write_;
  mutable absl::Mutex mu_;
  std::vector<Waiter*> queue_ ABSL_GUARDED_BY(mu_);
  bool leader_active_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t last_revision_ ABSL_GUARDED_BY(mu_);
  EventListener listener_ ABSL_GUARDED_BY(mu_);
  Stats stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_STORE_GROUP_COMMIT_H_
