#include "service/store/group_commit.h"

#include <pthread.h>

#include <utility>

#include "service/common/field_error.h"
#include "service/common/thread_nice.h"

namespace registrar {

GroupCommitter::GroupCommitter(uint64_t last_revision, WriteFn write,
                               int writer_nice)
    : write_(std::move(write)),
      writer_nice_(writer_nice),
      last_revision_(last_revision) {}

void GroupCommitter::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (writer_.joinable()) writer_.join();
}

absl::Status GroupCommitter::Commit(WriteBatch* batch) {
  Waiter self{batch, nullptr, false, absl::OkStatus()};
  absl::MutexLock lock(&mu_);
  queue_.push_back(&self);
  // Wait until a leader has written our batch, or it is our turn to lead.
  auto done_or_free = [this, &self]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return self.finished || !leader_active_;
  };
  mu_.Await(absl::Condition(&done_or_free));
  if (!self.finished) LeadGroup();
  return self.status;
}

void GroupCommitter::Submit(WriteBatch* batch, Done done) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(new Waiter{batch, std::move(done), false, absl::OkStatus()});
  if (!writer_.joinable()) {
    writer_ = std::thread([this] {
      // Named for top/perf (it would inherit the submitting thread's name).
      pthread_setname_np(pthread_self(), "group-commit");
      if (writer_nice_ != 0) SetThisThreadNice(writer_nice_).IgnoreError();
      WriterLoop();
    });
  }
}

void GroupCommitter::WriterLoop() {
  std::vector<std::unique_ptr<Waiter>> callbacks;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !finished_.empty() || (!leader_active_ && !queue_.empty()) ||
               (stopping_ && !leader_active_);
      };
      mu_.Await(absl::Condition(&work));
      if (finished_.empty() && queue_.empty()) return;  // stopping, all done
      if (finished_.empty() && !leader_active_) LeadGroup();
      callbacks.swap(finished_);
    }
    for (std::unique_ptr<Waiter>& w : callbacks) {
      std::move(w->done)(w->status);
    }
    callbacks.clear();
  }
}

void GroupCommitter::LeadGroup() {
  leader_active_ = true;
  std::vector<Waiter*> group;
  group.swap(queue_);
  // Batches whose caller gave up while they were queued are not written.
  const absl::Time now = absl::Now();
  std::vector<WriteBatch*> batches;
  batches.reserve(group.size());
  uint64_t revision = last_revision_;
  for (Waiter* w : group) {
    if (w->batch->deadline < now) {
      w->status = WithLimit(
          absl::DeadlineExceededError(
              "the change waited past its deadline (the client's or the "
              "server's) before it could be written; nothing was done"),
          Limit::kCallDeadline);
      continue;
    }
    for (Event& e : w->batch->events) {
      e.revision = ++revision;
      e.record.revision = revision;
    }
    batches.push_back(w->batch);
  }

  absl::Status status;
  if (!batches.empty()) {
    mu_.Unlock();
    status = write_(batches);
    mu_.Lock();
  }

  if (status.ok()) {
    if (!batches.empty()) {
      last_revision_ = revision;
      stats_.batches += batches.size();
      ++stats_.writes;
    }
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
    if (w->status.ok()) w->status = status;
    if (w->done) {
      finished_.emplace_back(w);
    } else {
      w->finished = true;
    }
  }
  leader_active_ = false;
}

void GroupCommitter::SetListener(EventListener listener) {
  absl::MutexLock lock(&mu_);
  listener_ = std::move(listener);
}

uint64_t GroupCommitter::last_revision() const {
  absl::MutexLock lock(&mu_);
  return last_revision_;
}

size_t GroupCommitter::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

GroupCommitter::Stats GroupCommitter::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace registrar
