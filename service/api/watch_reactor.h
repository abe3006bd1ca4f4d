#ifndef REGISTRAR_SERVICE_API_WATCH_REACTOR_H_
#define REGISTRAR_SERVICE_API_WATCH_REACTOR_H_

// The Watch RPC: a gRPC server-streaming reactor that is one WatchHub
// watcher's sink. All the watch logic (cursor, filter, limits) is in
// service/watch/watch_hub.h; this only turns store events into WatchEvent
// messages, one StartWrite at a time, and reports gRPC's reactions.

#include <memory>
#include <string>

#include "registrar/v1/registrar.grpc.pb.h"
#include "service/watch/watch_hub.h"

namespace registrar {

class WatchReactor final : public grpc::ServerWriteReactor<v1::WatchEvent>,
                           private WatchSink {
 public:
  // Registers with `hub` (which must outlive the call) for `caller` (the
  // key of the hub's per-caller bound), or finishes at once with the hub's
  // error. The reactor deletes itself in OnDone.
  static grpc::ServerWriteReactor<v1::WatchEvent>* Start(
      WatchHub& hub, const v1::WatchRequest& request, std::string caller);

  // Finishes at once with `status` (e.g. a bad request), no hub involved.
  static grpc::ServerWriteReactor<v1::WatchEvent>* Refuse(
      const absl::Status& status);

  // gRPC reactions.
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

 private:
  explicit WatchReactor(WatchHub* hub) : hub_(hub) {}
  ~WatchReactor() override = default;

  // WatchSink (called by the hub with the watcher's mutex held).
  void Send(const Event& event) override;
  void Finish(const absl::Status& status) override;

  WatchHub* const hub_;  // null when refused
  std::shared_ptr<WatchHub::Watcher> watcher_;
  v1::WatchEvent message_;  // the one write in flight
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_API_WATCH_REACTOR_H_
