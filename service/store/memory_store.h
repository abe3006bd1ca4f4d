#ifndef REGISTRAR_SERVICE_STORE_MEMORY_STORE_H_
#define REGISTRAR_SERVICE_STORE_MEMORY_STORE_H_

// A store with no disk (--store=memory): commits only assign revisions and
// keep the most recent events for Watch. Everything is gone on restart.

#include <cstdint>
#include <deque>
#include <memory>

#include "absl/synchronization/mutex.h"
#include "service/store/group_commit.h"
#include "service/store/store.h"

namespace registrar {

class MemoryStore final : public Store {
 public:
  // Keeps the last `event_history` events readable by ReadEvents.
  explicit MemoryStore(size_t event_history = 100'000);

  absl::Status Commit(WriteBatch* batch) override;
  absl::StatusOr<StoreMeta> Load(
      const std::function<void(RecordView&&)>& on_record) override;
  absl::Status ReadEvents(uint64_t from, size_t limit,
                          std::vector<Event>* out) override;
  uint64_t OldestRevision() override;
  uint64_t LastRevision() override;
  absl::Status CompactEvents(uint64_t below) override;
  void SetEventListener(EventListener listener) override;
  absl::Status CheckWritable() override { return absl::OkStatus(); }
  Durability durability() const override { return Durability::kNone; }
  std::string_view name() const override { return "memory"; }

  CommitStats commit_stats() const override { return committer_.stats(); }

 private:
  absl::Status Write(const std::vector<WriteBatch*>& group);

  const size_t event_history_;
  mutable absl::Mutex mu_;
  std::deque<Event> events_ ABSL_GUARDED_BY(mu_);
  uint64_t oldest_ ABSL_GUARDED_BY(mu_) = 1;
  GroupCommitter committer_;
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_STORE_MEMORY_STORE_H_
