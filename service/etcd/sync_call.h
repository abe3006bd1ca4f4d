#ifndef REGISTRAR_SERVICE_ETCD_SYNC_CALL_H_
#define REGISTRAR_SERVICE_ETCD_SYNC_CALL_H_

// Waits for one asynchronous etcd call, for callers that must block (the
// Store interface's synchronous methods, EtcdStore's writer thread). The
// wait is bounded by the call's own deadline (ConnectionOptions::
// call_timeout): every etcd call completes.

#include <memory>
#include <optional>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace registrar::etcd {

// start(callback) starts the call; returns what the callback got.
template <class T, class Start>
absl::StatusOr<T> SyncCall(Start start) {
  struct State {
    absl::Mutex mu;
    std::optional<absl::StatusOr<T>> value ABSL_GUARDED_BY(mu);
  };
  auto state = std::make_shared<State>();
  start([state](absl::StatusOr<T> r) {
    absl::MutexLock lock(&state->mu);
    if (!state->value.has_value()) state->value.emplace(std::move(r));
  });
  absl::MutexLock lock(&state->mu);
  state->mu.Await(absl::Condition(
      +[](std::optional<absl::StatusOr<T>>* v) { return v->has_value(); },
      &state->value));
  return *std::move(state->value);
}

}  // namespace registrar::etcd

#endif  // REGISTRAR_SERVICE_ETCD_SYNC_CALL_H_
