#ifndef REGISTRAR_SERVICE_API_BLOCKING_EXECUTOR_H_
#define REGISTRAR_SERVICE_API_BLOCKING_EXECUTOR_H_

// A fixed pool of threads for handler work that blocks on I/O (a commit that
// waits for its fsync). gRPC's callback threads are few; a handler that
// blocks one of them stalls every call behind it and leaves nothing for
// group commit to group. Handlers hand such work here and return; the pool
// thread finishes the call.

#include <deque>
#include <thread>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace registrar {

class BlockingExecutor {
 public:
  explicit BlockingExecutor(int threads);
  // Runs what is queued, then joins the threads.
  ~BlockingExecutor();

  BlockingExecutor(const BlockingExecutor&) = delete;
  BlockingExecutor& operator=(const BlockingExecutor&) = delete;

  // Queues `task` for a pool thread. Thread-safe; never blocks for long.
  void Submit(absl::AnyInvocable<void() &&> task) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Run() ABSL_LOCKS_EXCLUDED(mu_);

  absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void() &&>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_API_BLOCKING_EXECUTOR_H_
