#ifndef REGISTRAR_SERVICE_CLUSTER_EVENT_LOG_H_
#define REGISTRAR_SERVICE_CLUSTER_EVENT_LOG_H_

// The event log a replica's WatchHub reads (DESIGN.md, "Feed"): a Store
// whose event-log methods go to the store of the replica's current
// generation (the writer's own store, or a follower's store fed by its
// FollowerFeed through EtcdStore::NoteCommitted). The WatchHub is bound to
// one Store for its life; the replica swaps the store under it when its
// role changes, and revisions are cluster-wide, so a watcher's cursor
// stays valid across the swap.
//
// Only the event log is served: Commit, Submit and Load are refused (the
// registry writes through its generation's own store). Thread-safe.

#include <memory>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "service/etcd/etcd_store.h"
#include "service/store/store.h"

namespace registrar::cluster {

class EventLog final : public Store {
 public:
  EventLog() = default;
  ~EventLog() override;

  // From now on the log is `store`'s (kept alive by the shared pointer
  // while in use): the listener moves to it, and is told of its newest
  // revision so that watchers waiting for it wake.
  void Switch(std::shared_ptr<etcd::EtcdStore> store) ABSL_LOCKS_EXCLUDED(mu_);

  absl::Status Commit(WriteBatch* batch) override;
  absl::StatusOr<StoreMeta> Load(
      const std::function<void(RecordView&&)>& on_record) override;
  absl::Status ReadEvents(uint64_t from, size_t limit,
                          std::vector<Event>* out) override;
  uint64_t OldestRevision() override;
  uint64_t LastRevision() override;
  absl::Status CompactEvents(uint64_t below) override;
  void SetEventListener(EventListener listener) override;
  absl::Status CheckWritable() override;
  CommitStats commit_stats() const override;
  Durability durability() const override { return Durability::kFsync; }
  std::string_view name() const override { return "etcd"; }

 private:
  std::shared_ptr<etcd::EtcdStore> current() const ABSL_LOCKS_EXCLUDED(mu_);

  // Switch and SetEventListener, one at a time (they move the listener).
  absl::Mutex switch_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  std::shared_ptr<etcd::EtcdStore> store_ ABSL_GUARDED_BY(mu_);
  EventListener listener_ ABSL_GUARDED_BY(switch_mu_);
};

}  // namespace registrar::cluster

#endif  // REGISTRAR_SERVICE_CLUSTER_EVENT_LOG_H_
