#include "service/store/group_commit.h"

#include <utility>

namespace registrar {

GroupCommitter::GroupCommitter(uint64_t last_revision, WriteFn write)
    : write_(std::move(write)), last_revision_(last_revision) {}

absl::Status GroupCommitter::Commit(WriteBatch* batch) {
  Waiter self{batch, false, absl::OkStatus()};
  absl::MutexLock lock(&mu_);
  queue_.push_back(&self);
  // Wait until a leader has written our batch, or it is our turn to lead.
  auto done_or_free = [this, &self]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return self.done || !leader_active_;
  };
  mu_.Await(absl::Condition(&done_or_free));
  if (self.done) return self.status;

  leader_active_ = true;
  std::vector<Waiter*> group;
  group.swap(queue_);
  std::vector<WriteBatch*> batches;
  batches.reserve(group.size());
  uint64_t revision = last_revision_;
  for (Waiter* w : group) {
    for (Event& e : w->batch->events) {
      e.revision = ++revision;
      e.record.revision = revision;
    }
    batches.push_back(w->batch);
  }

  mu_.Unlock();
  absl::Status status = write_(batches);
  mu_.Lock();

  if (status.ok()) {
    last_revision_ = revision;
    stats_.batches += group.size();
    ++stats_.writes;
    if (listener_) {
      for (WriteBatch* b : batches) {
        if (!b->events.empty()) listener_(b->events);
      }
    }
  } else {
    for (WriteBatch* b : batches) {
      for (Event& e : b->events) e.revision = e.record.revision = 0;
    }
  }
  for (Waiter* w : group) {
    w->status = status;
    w->done = true;
  }
  leader_active_ = false;
  return self.status;
}

void GroupCommitter::SetListener(EventListener listener) {
  absl::MutexLock lock(&mu_);
  listener_ = std::move(listener);
}

uint64_t GroupCommitter::last_revision() const {
  absl::MutexLock lock(&mu_);
  return last_revision_;
}

GroupCommitter::Stats GroupCommitter::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace registrar
