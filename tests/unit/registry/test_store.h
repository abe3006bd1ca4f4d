#ifndef REGISTRAR_TESTS_UNIT_REGISTRY_TEST_STORE_H_
#define REGISTRAR_TESTS_UNIT_REGISTRY_TEST_STORE_H_

// A store for registry tests that behaves like a remote one: Submit only
// queues; one writer thread takes everything queued, waits `delay` (the
// round trip the store simulates), then commits the group to a MemoryStore
// (or fails it, when failures are switched on) and completes each batch in
// order. It records how many batches each group held, so a test can see
// whether changes overlapped in the store (several in one group) or came
// one at a time (a registry that held a lock across its commits).

#include <algorithm>
#include <atomic>
#include <deque>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "service/store/memory_store.h"
#include "service/store/store.h"

namespace registrar::testing {

// A MemoryStore behind the Store interface, for test stores that change
// only how commits are submitted.
class ForwardingStore : public Store {
 public:
  absl::Status Commit(WriteBatch* batch) override {
    return inner_.Commit(batch);
  }
  absl::StatusOr<StoreMeta> Load(
      const std::function<void(RecordView&&)>& on_record) override {
    return inner_.Load(on_record);
  }
  absl::Status ReadEvents(uint64_t from, size_t limit,
                          std::vector<Event>* out) override {
    return inner_.ReadEvents(from, limit, out);
  }
  uint64_t OldestRevision() override { return inner_.OldestRevision(); }
  uint64_t LastRevision() override { return inner_.LastRevision(); }
  absl::Status CompactEvents(uint64_t below) override {
    return inner_.CompactEvents(below);
  }
  void SetEventListener(EventListener listener) override {
    inner_.SetEventListener(std::move(listener));
  }
  absl::Status CheckWritable() override { return absl::OkStatus(); }
  CommitStats commit_stats() const override { return inner_.commit_stats(); }
  Durability durability() const override { return Durability::kFsync; }
  bool defers_commits() const override { return true; }

 protected:
  MemoryStore inner_;
};

class DelayStore final : public ForwardingStore {
 public:
  explicit DelayStore(absl::Duration delay) : delay_(delay) {
    writer_ = std::thread([this] { Run(); });
  }
  ~DelayStore() override {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    writer_.join();
  }

  // From now on every commit fails with UNAVAILABLE (true) or goes through.
  void FailCommits(bool fail) { fail_.store(fail); }

  // What the writer saw: groups written and the largest group, by kind of
  // batch (any batch; batches that end records; batches with leases).
  struct Groups {
    uint64_t groups = 0;
    size_t largest = 0;
    size_t largest_ending = 0;  // batches with released/expired events
    size_t largest_leases = 0;  // batches that put or delete leases
    size_t largest_issuing = 0;  // batches with issued events
  };
  Groups groups() {
    absl::MutexLock lock(&mu_);
    return groups_;
  }

  absl::Status Commit(WriteBatch* batch) override {
    if (fail_.load()) return absl::UnavailableError("test store: failing");
    return inner_.Commit(batch);
  }
  void Submit(WriteBatch* batch, CommitDone done) override {
    absl::MutexLock lock(&mu_);
    queue_.emplace_back(batch, std::move(done));
  }
  std::string_view name() const override { return "delay"; }

 private:
  using Queued = std::pair<WriteBatch*, CommitDone>;

  void Run() {
    for (;;) {
      std::deque<Queued> group;
      {
        absl::MutexLock lock(&mu_);
        auto work = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || !queue_.empty();
        };
        mu_.Await(absl::Condition(&work));
        if (queue_.empty()) return;  // stopping
        group.swap(queue_);
        Count(group);
      }
      // The simulated round trip: the latency under test (a store whose
      // commits take this long), not a test waiting for something.
      absl::SleepFor(delay_);
      const bool fail = fail_.load();
      for (Queued& q : group) {
        absl::Status s = fail ? absl::UnavailableError("test store: failing")
                              : inner_.Commit(q.first);
        std::move(q.second)(std::move(s));
      }
    }
  }

  void Count(const std::deque<Queued>& group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    size_t ending = 0, leases = 0, issuing = 0;
    for (const Queued& q : group) {
      const WriteBatch& b = *q.first;
      bool ends = false, issues = false;
      for (const Event& e : b.events) {
        (e.type == EventType::kIssued ? issues : ends) = true;
      }
      ending += ends;
      issuing += issues;
      leases += !b.put_leases.empty() || !b.delete_leases.empty();
    }
    ++groups_.groups;
    groups_.largest = std::max(groups_.largest, group.size());
    groups_.largest_ending = std::max(groups_.largest_ending, ending);
    groups_.largest_leases = std::max(groups_.largest_leases, leases);
    groups_.largest_issuing = std::max(groups_.largest_issuing, issuing);
  }

  const absl::Duration delay_;
  std::atomic<bool> fail_{false};
  absl::Mutex mu_;
  std::deque<Queued> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  Groups groups_ ABSL_GUARDED_BY(mu_);
  std::thread writer_;
};

}  // namespace registrar::testing

#endif  // REGISTRAR_TESTS_UNIT_REGISTRY_TEST_STORE_H_
