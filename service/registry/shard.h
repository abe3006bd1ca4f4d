#ifndef REGISTRAR_SERVICE_REGISTRY_SHARD_H_
#define REGISTRAR_SERVICE_REGISTRY_SHARD_H_

// One slice of the registry's records and the one sequence every change to
// them follows (see ARCHITECTURE.md, "The write path"):
//
//   1. admit, under the shard's lock: check the call against the table
//      (quota, parent, connection, ownership) and stage the new state:
//      new records are inserted as pending (revision 0, invisible to
//      reads), records to end are marked ending (still live to reads, but
//      nothing new attaches to them and no second change ends them);
//   2. queue the batch (CommitQueue::Enqueue, no store call) before the
//      lock is released, so changes of one shard reach the store in the
//      order they were admitted;
//   3. submit, with no registry lock held (CommitQueue::Flush);
//   4. on the store's completion, under the lock again: apply (pending
//      records get their revision, ending records end) or roll back (pending
//      records go, ending marks are cleared), so a failed commit leaves no
//      trace in memory;
//   5. reply, with no lock held.
//
// A change that finds a record another change is ending does not stage
// anything: it waits behind that change (an empty batch queued after it)
// and admits itself again once it has completed (Registry::StartEnd).

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "service/model/kind.h"
#include "service/registry/observer.h"
#include "service/registry/record_table.h"
#include "service/store/store.h"

namespace registrar {
namespace registry_internal {

// What one change ended, for its reply and for the observer.
struct Ended {
  EndCause cause;
  State state;
  std::shared_ptr<const std::string> reason;
  std::vector<std::pair<Kind, Id128>> records;
  uint64_t count[kNumKinds] = {};

  // Text IDs of everything ended, formatted outside any lock.
  std::vector<std::string> TakeIds() {
    std::vector<std::string> out;
    out.reserve(records.size());
    for (const auto& [kind, id] : records) out.push_back(FormatId(kind, id));
    return out;
  }
};

struct Shard {
  using Ref = RecordTable::Ref;

  mutable absl::Mutex mu;
  RecordTable table ABSL_GUARDED_BY(mu);
  // A tombstone drop of this shard is queued: the next tick skips it.
  bool dropping ABSL_GUARDED_BY(mu) = false;

  // Step 1 for new records (all of one owner): inserts them pending, adds
  // their events to *batch and their Refs to *refs.
  void StageInsert(std::vector<RecordView>& records, std::vector<Ref>* refs,
                   WriteBatch* batch) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Step 4 for them: `events` are theirs, in order. On success they take
  // their revisions; on failure they are removed. Returns how many were
  // removed per kind (the caller uncounts them).
  void ApplyInsert(const std::vector<Ref>& refs, const Event* events,
                   bool committed, uint64_t removed[kNumKinds])
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // True when one of `refs` is being ended by another change.
  bool AnyEnding(const std::vector<Ref>& refs) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  // Step 1 for ending `refs` (live, not ending): marks them ending and adds
  // their ended state to *batch.
  void StageEnd(const std::vector<Ref>& refs, int64_t now_ms,
                const Ended& ended, WriteBatch* batch)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
};

}  // namespace registry_internal
}  // namespace registrar

#endif  // REGISTRAR_SERVICE_REGISTRY_SHARD_H_
