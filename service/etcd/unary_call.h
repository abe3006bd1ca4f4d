#ifndef REGISTRAR_SERVICE_ETCD_UNARY_CALL_H_
#define REGISTRAR_SERVICE_ETCD_UNARY_CALL_H_

// One asynchronous unary etcd call on gRPC's callback API, with failover:
// a member failure (IsMemberFailure) moves the connection to the next
// member, and a call marked idempotent is tried again there (once per
// member). A call that changes state is not retried: when it fails with
// UNAVAILABLE its outcome is unknown (it may have been committed), which
// only the caller can resolve (e.g. a Txn that compares first is safe to
// send again). An attempt waits at most attempt_timeout (and the
// connection's call timeout); a member that took the call but lost its
// leader meanwhile answers only after etcd's request timeout, so a
// shorter attempt lets an idempotent call move on. The callback runs on a
// gRPC thread, exactly once.

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "service/etcd/connection.h"
#include "service/etcd/status.h"

namespace registrar::etcd {

enum class Retry { kNo, kOnAnotherMember };

template <class Req, class Resp>
class UnaryCall : public std::enable_shared_from_this<UnaryCall<Req, Resp>> {
 public:
  using Callback = std::function<void(absl::StatusOr<Resp>)>;
  // Starts the call on an endpoint's stub, e.g.
  //   [](const Endpoint& e, grpc::ClientContext* c, const Req* q, Resp* r,
  //      std::function<void(grpc::Status)> f) {
  //     e.kv->async()->Range(c, q, r, std::move(f)); }
  using Invoke =
      std::function<void(const Endpoint&, grpc::ClientContext*, const Req*,
                         Resp*, std::function<void(grpc::Status)>)>;

  static void Start(
      std::shared_ptr<Connection> conn, const char* name, Req req, Retry retry,
      Invoke invoke, Callback done,
      absl::Duration attempt_timeout = absl::InfiniteDuration()) {
    std::shared_ptr<UnaryCall> call(new UnaryCall(
        std::move(conn), name, std::move(req), retry, std::move(invoke),
        std::move(done), attempt_timeout));
    call->Attempt();
  }

 private:
  UnaryCall(std::shared_ptr<Connection> conn, const char* name, Req req,
            Retry retry, Invoke invoke, Callback done,
            absl::Duration attempt_timeout)
      : conn_(std::move(conn)),
        name_(name),
        req_(std::move(req)),
        retry_(retry),
        invoke_(std::move(invoke)),
        done_(std::move(done)),
        attempt_timeout_(attempt_timeout) {}

  void Attempt() {
    ++attempts_;
    const int member = conn_->current();
    member_ = member;
    ctx_ = conn_->NewCallContext(attempt_timeout_);
    resp_ = Resp();
    invoke_(conn_->endpoint(member), ctx_.get(), &req_, &resp_,
            [self = this->shared_from_this()](grpc::Status s) {
              self->Finished(std::move(s));
            });
    // Not member_: the call may have finished (and retried) already.
    conn_->KeepForProcess(member);
  }

  void Finished(grpc::Status s) {
    if (!s.ok() && IsMemberFailure(s)) {
      conn_->ReportFailure(member_);
      if (retry_ == Retry::kOnAnotherMember && attempts_ < conn_->size()) {
        Attempt();  // a new context; the old call is complete
        return;
      }
    }
    if (!s.ok()) {
      done_(ToAbsl(s, absl::StrCat("etcd ", name_, " on ",
                                   conn_->endpoint(member_).address)));
      return;
    }
    done_(std::move(resp_));
  }

  const std::shared_ptr<Connection> conn_;
  const char* const name_;
  const Req req_;
  const Retry retry_;
  const Invoke invoke_;
  const Callback done_;
  const absl::Duration attempt_timeout_;
  // Touched only by the attempt in flight (one at a time).
  int attempts_ = 0;
  int member_ = 0;
  std::unique_ptr<grpc::ClientContext> ctx_;
  Resp resp_;
};

}  // namespace registrar::etcd

#endif  // REGISTRAR_SERVICE_ETCD_UNARY_CALL_H_
