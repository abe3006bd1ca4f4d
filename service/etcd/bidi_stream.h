#ifndef REGISTRAR_SERVICE_ETCD_BIDI_STREAM_H_
#define REGISTRAR_SERVICE_ETCD_BIDI_STREAM_H_

// One bidirectional gRPC stream on the callback API (etcd's Watch and
// LeaseKeepAlive): writes queued from any thread, one read after another,
// and one end. It keeps itself alive from Start until gRPC is done with it.
// A hold keeps the call open while a write is queued or in flight, so a
// write never races the end of the call.
//
// on_read(response) runs for each message, one at a time; on_done(status)
// runs once, last. Neither may block. Thread-safe.

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/client_callback.h"

namespace registrar::etcd {

template <class Req, class Resp>
class BidiStream final
    : public grpc::ClientBidiReactor<Req, Resp>,
      public std::enable_shared_from_this<BidiStream<Req, Resp>> {
 public:
  struct Handlers {
    std::function<void(Resp& response)> on_read;
    std::function<void(const grpc::Status& status)> on_done;
  };
  // Binds the reactor to the call, e.g.
  //   [&](grpc::ClientContext* c, grpc::ClientBidiReactor<Req, Resp>* r) {
  //     endpoint.watch->async()->Watch(c, r); }
  using Bind = std::function<void(grpc::ClientContext*,
                                  grpc::ClientBidiReactor<Req, Resp>*)>;

  // The stream is live when this returns; `first` is written first.
  static std::shared_ptr<BidiStream> Start(
      std::unique_ptr<grpc::ClientContext> ctx, const Bind& bind,
      std::optional<Req> first, Handlers handlers) {
    std::shared_ptr<BidiStream> s(
        new BidiStream(std::move(ctx), std::move(handlers)));
    s->self_ = s;
    bind(s->ctx_.get(), s.get());
    s->AddHold();
    if (first.has_value()) s->Write(*std::move(first));
    s->StartRead(&s->resp_);
    s->StartCall();
    return s;
  }

  // Queues a message; dropped once reads have ended.
  void Write(Req req) {
    {
      absl::MutexLock lock(&mu_);
      if (reads_done_) return;
      queue_.push_back(std::move(req));
      if (writing_) return;
      writing_ = true;
      write_ = std::move(queue_.front());
      queue_.pop_front();
    }
    this->StartWrite(&write_);
  }

  // Ends the call (on_done follows, CANCELLED unless it ended already).
  void Cancel() { ctx_->TryCancel(); }

 private:
  BidiStream(std::unique_ptr<grpc::ClientContext> ctx, Handlers handlers)
      : ctx_(std::move(ctx)), handlers_(std::move(handlers)) {}

  void OnWriteDone(bool ok) override {
    bool next = false;
    bool release = false;
    {
      absl::MutexLock lock(&mu_);
      if (ok && !queue_.empty() && !reads_done_) {
        write_ = std::move(queue_.front());
        queue_.pop_front();
        next = true;
      } else {
        writing_ = false;
        release = reads_done_ && !hold_removed_;
        if (release) hold_removed_ = true;
      }
    }
    if (next) {
      this->StartWrite(&write_);
    } else if (release) {
      this->RemoveHold();
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      bool release = false;
      {
        absl::MutexLock lock(&mu_);
        reads_done_ = true;
        release = !writing_ && !hold_removed_;
        if (release) hold_removed_ = true;
      }
      if (release) this->RemoveHold();
      return;
    }
    if (handlers_.on_read) handlers_.on_read(resp_);
    this->StartRead(&resp_);
  }

  void OnDone(const grpc::Status& s) override {
    std::shared_ptr<BidiStream> self = std::move(self_);
    if (handlers_.on_done) handlers_.on_done(s);
  }

  const std::unique_ptr<grpc::ClientContext> ctx_;
  const Handlers handlers_;
  std::shared_ptr<BidiStream> self_;  // until OnDone

  absl::Mutex mu_;
  std::deque<Req> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_removed_ ABSL_GUARDED_BY(mu_) = false;
  Req write_;  // the write in flight
  Resp resp_;  // the read in flight
};

}  // namespace registrar::etcd

#endif  // REGISTRAR_SERVICE_ETCD_BIDI_STREAM_H_
