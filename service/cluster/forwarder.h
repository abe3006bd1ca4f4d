#ifndef REGISTRAR_SERVICE_CLUSTER_FORWARDER_H_
#define REGISTRAR_SERVICE_CLUSTER_FORWARDER_H_

// Hands a changing call from a follower to the writer (DESIGN.md,
// "Changing calls"): a generic gRPC proxy of one unary call, on the
// callback API, so no thread waits for the writer's answer.
//
//  - The request bytes go as they came; the reply bytes and the status
//    (code, message, details) come back unchanged.
//  - The caller's `authorization`, `x-request-id` and `traceparent`
//    metadata are passed on, plus `x-registrar-forwarded` (this replica's
//    address), by which the writer knows the call was forwarded once
//    already and must not be forwarded again.
//  - The caller's deadline is the forwarded call's deadline, but no later
//    than `max_time` from now (a caller without a deadline must not keep a
//    call open on a writer that hangs).
//  - One channel per writer address, rebuilt when the address changes.
//
// Thread-safe.

#include <grpcpp/channel.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/server_context.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace registrar::cluster {

// Metadata key a forwarded call carries.
inline constexpr char kForwardedHeader[] = "x-registrar-forwarded";

class Forwarder {
 public:
  // `credentials` for the channels to the writer; `self` goes into
  // x-registrar-forwarded; `server_name`, when not empty, is the name the
  // writer's TLS certificate is checked against instead of its address.
  Forwarder(std::shared_ptr<grpc::ChannelCredentials> credentials,
            std::string self, std::string server_name = "",
            absl::Duration max_time = absl::Seconds(30));

  // Sends `request` as `method` ("/package.Service/Method") to `address`;
  // `done` gets the writer's status once it answered (*response then
  // holds its reply), on a gRPC thread. Returns at once.
  void Forward(const std::string& address, const std::string& method,
               grpc::CallbackServerContext* ctx,
               const grpc::ByteBuffer& request, grpc::ByteBuffer* response,
               std::function<void(const grpc::Status&)> done)
      ABSL_LOCKS_EXCLUDED(mu_);

  // True when `ctx`'s call was forwarded to this replica by another one.
  static bool WasForwarded(const grpc::CallbackServerContext& ctx);

  // True when a forwarded call's `status` says it never reached the writer:
  // gRPC failed to pick a connection (the writer is dead or unreachable, as
  // between its death and the next election), so nothing was sent and
  // nothing done. Every other UNAVAILABLE may have been applied.
  static bool NeverSent(const grpc::Status& status);

  // Calls handed to Forward so far, sent or not (tests, metrics).
  uint64_t forwarded() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  std::shared_ptr<grpc::GenericStub> StubFor(const std::string& address)
      ABSL_LOCKS_EXCLUDED(mu_);

  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  const std::string self_;
  const std::string server_name_;
  const absl::Duration max_time_;
  mutable absl::Mutex mu_;
  std::string address_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<grpc::Channel> channel_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<grpc::GenericStub> stub_ ABSL_GUARDED_BY(mu_);
  uint64_t forwarded_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace registrar::cluster

#endif  // REGISTRAR_SERVICE_CLUSTER_FORWARDER_H_
