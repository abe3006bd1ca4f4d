#include "service/registry/commit_queue.h"

#include <utility>

namespace registrar {

void CommitQueue::Enqueue(WriteBatch batch, Done done) {
  auto entry = std::make_unique<Entry>();
  entry->batch = std::move(batch);
  entry->done = std::move(done);
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(entry));
}

void CommitQueue::Flush() {
  std::deque<std::unique_ptr<Entry>> taken;
  {
    absl::MutexLock lock(&mu_);
    if (flushing_) return;  // that thread submits ours too (invariant 3)
    flushing_ = true;
  }
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      if (queue_.empty()) {
        flushing_ = false;
        return;
      }
      taken.swap(queue_);
    }
    for (std::unique_ptr<Entry>& entry : taken) {
      WriteBatch* batch = &entry->batch;
      store_.Submit(batch, [entry = std::move(entry)](absl::Status s) mutable {
        std::move(entry->done)(entry->batch, std::move(s));
      });
    }
    taken.clear();
  }
}

}  // namespace registrar
