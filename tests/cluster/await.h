#ifndef REGISTRAR_TESTS_CLUSTER_AWAIT_H_
#define REGISTRAR_TESTS_CLUSTER_AWAIT_H_

// Turns the etcd client's callbacks into values for tests: Await<T> hands
// out a callback and waits (bounded) for it to be called.

#include <functional>
#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace registrar::testing {

// How long a test waits for anything etcd does.
inline constexpr absl::Duration kAwait = absl::Seconds(20);

template <class T>
class Await {
 public:
  Await() : state_(std::make_shared<State>()) {}

  // The callback to hand to the client (copyable; the first call counts).
  std::function<void(T)> Callback() {
    return [state = state_](T value) {
      absl::MutexLock lock(&state->mu);
      if (!state->value.has_value()) state->value.emplace(std::move(value));
    };
  }
  // The value, or nullopt when the callback was not called in time.
  std::optional<T> Wait(absl::Duration timeout = kAwait) {
    absl::MutexLock lock(&state_->mu);
    state_->mu.AwaitWithTimeout(
        absl::Condition(
            +[](std::optional<T>* v) { return v->has_value(); },
            &state_->value),
        timeout);
    return state_->value;
  }

 private:
  struct State {
    absl::Mutex mu;
    std::optional<T> value ABSL_GUARDED_BY(mu);
  };
  std::shared_ptr<State> state_;
};

// Calls fn(callback) and waits for the result; a timeout is
// DEADLINE_EXCEEDED.
template <class T, class Fn>
absl::StatusOr<T> Call(Fn fn, absl::Duration timeout = kAwait) {
  Await<absl::StatusOr<T>> await;
  fn(await.Callback());
  std::optional<absl::StatusOr<T>> r = await.Wait(timeout);
  if (!r.has_value()) {
    return absl::DeadlineExceededError("the etcd callback did not come");
  }
  return *std::move(r);
}

// Waits (bounded) until done() holds, for state that has no completion to
// wait on (re-checked every 20 ms); done()'s value at the end.
inline bool WaitFor(const std::function<bool()>& done,
                    absl::Duration timeout = kAwait) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Mutex mu;
  absl::MutexLock lock(&mu);
  const bool never = false;
  while (!done() && absl::Now() < deadline) {
    mu.AwaitWithTimeout(absl::Condition(&never), absl::Milliseconds(20));
  }
  return done();
}

}  // namespace registrar::testing

#endif  // REGISTRAR_TESTS_CLUSTER_AWAIT_H_
