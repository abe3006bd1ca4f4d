#ifndef REGISTRAR_SERVICE_ETCD_TIMER_H_
#define REGISTRAR_SERVICE_ETCD_TIMER_H_

// A small timer thread: runs callbacks after a real-time delay (retry
// backoff, periodic keep-alive ticks). Decisions that depend on time (lease
// deadlines, fencing) read the injected Clock; this only decides when to
// look again.
//
// Thread-safe. Callbacks run one at a time on the timer's thread and must
// not block. Destroying the Timer drops the callbacks not yet run; it may
// happen on the timer's own thread (the last owner released in a
// callback): the thread then ends by itself.

#include <functional>
#include <memory>
#include <thread>

#include "absl/time/time.h"

namespace registrar::etcd {

class Timer {
 public:
  Timer();
  ~Timer();
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  void After(absl::Duration delay, std::function<void()> fn);

 private:
  struct State;
  std::shared_ptr<State> state_;
  std::thread thread_;
};

}  // namespace registrar::etcd

#endif  // REGISTRAR_SERVICE_ETCD_TIMER_H_
