#include "service/etcd/timer.h"

#include <map>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace registrar::etcd {

struct Timer::State {
  absl::Mutex mu;
  // By due time; equal times run in the order they were added.
  std::multimap<absl::Time, std::function<void()>> due ABSL_GUARDED_BY(mu);
  bool stop ABSL_GUARDED_BY(mu) = false;

  void Run() {
    absl::MutexLock lock(&mu);
    while (!stop) {
      if (due.empty()) {
        mu.Await(absl::Condition(
            +[](State* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) {
              return s->stop || !s->due.empty();
            },
            this));
        continue;
      }
      const absl::Time next = due.begin()->first;
      if (absl::Now() < next) {
        // Wakes early when an earlier entry is added or on stop.
        const size_t size = due.size();
        struct Args {
          State* s;
          size_t size;
          absl::Time next;
        } args{this, size, next};
        mu.AwaitWithDeadline(
            absl::Condition(
                +[](Args* a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(a->s->mu) {
                  return a->s->stop || a->s->due.size() != a->size ||
                         a->s->due.begin()->first != a->next;
                },
                &args),
            next);
        continue;
      }
      std::function<void()> fn = std::move(due.begin()->second);
      due.erase(due.begin());
      mu.Unlock();
      fn();
      fn = nullptr;  // released outside the lock too
      mu.Lock();
    }
    // Dropped outside the lock: releasing a callback may destroy its owner.
    auto left = std::move(due);
    due.clear();
    mu.Unlock();
    left.clear();
    mu.Lock();
  }
};

Timer::Timer() : state_(std::make_shared<State>()) {
  thread_ = std::thread([state = state_] { state->Run(); });
}

Timer::~Timer() {
  {
    absl::MutexLock lock(&state_->mu);
    state_->stop = true;
  }
  if (thread_.get_id() == std::this_thread::get_id()) {
    thread_.detach();  // inside a callback: the loop ends when it returns
  } else {
    thread_.join();
  }
}

void Timer::After(absl::Duration delay, std::function<void()> fn) {
  absl::MutexLock lock(&state_->mu);
  if (state_->stop) return;
  state_->due.emplace(absl::Now() + delay, std::move(fn));
}

}  // namespace registrar::etcd
