#include "service/api/watch_reactor.h"

#include <string>
#include <utility>

#include "service/api/proto_conversion.h"
#include "service/api/status_conversion.h"

namespace registrar {

grpc::ServerWriteReactor<v1::WatchEvent>* WatchReactor::Start(
    WatchHub& hub, const v1::WatchRequest& request, std::string caller) {
  auto* reactor = new WatchReactor(&hub);
  WatchSpec spec;
  spec.start_revision = request.start_revision();
  spec.tenant = request.tenant();
  spec.caller = std::move(caller);
  // The hub may call Send from its pump thread before Start returns; gRPC
  // keeps a write (or finish) issued before the reactor is bound.
  absl::StatusOr<std::shared_ptr<WatchHub::Watcher>> watcher =
      hub.Start(spec, reactor);
  if (!watcher.ok()) {
    reactor->Finish(watcher.status());
  } else {
    reactor->watcher_ = *std::move(watcher);
  }
  return reactor;
}

grpc::ServerWriteReactor<v1::WatchEvent>* WatchReactor::Refuse(
    const absl::Status& status) {
  auto* reactor = new WatchReactor(nullptr);
  reactor->Finish(status);
  return reactor;
}

void WatchReactor::Send(const Event& event) {
  message_.Clear();
  message_.set_revision(event.revision);
  // Store EventType values equal registrar.v1.EventType.
  message_.set_type(static_cast<v1::EventType>(event.type));
  RecordToProto(event.record, message_.mutable_record());
  StartWrite(&message_);
}

void WatchReactor::Finish(const absl::Status& status) {
  grpc::ServerWriteReactor<v1::WatchEvent>::Finish(ToGrpcStatus(status));
}

void WatchReactor::OnWriteDone(bool ok) {
  if (watcher_) hub_->WriteDone(*watcher_, ok);
}

void WatchReactor::OnCancel() {
  if (watcher_) {
    hub_->Cancel(*watcher_);  // finishes with CANCELLED unless finished
  }
}

void WatchReactor::OnDone() {
  if (watcher_) hub_->Stop(*watcher_);
  delete this;
}

}  // namespace registrar
