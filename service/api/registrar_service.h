#ifndef REGISTRAR_SERVICE_API_REGISTRAR_SERVICE_H_
#define REGISTRAR_SERVICE_API_REGISTRAR_SERVICE_H_

// The gRPC face of the Registry: callback (reactor) handlers that check the
// request, call the core, and convert the result. No business rules live
// here; every handler finishes inline on the gRPC thread that ran it (the
// core never blocks on I/O).

#include <atomic>

#include "registrar/v1/registrar.grpc.pb.h"
#include "service/api/request_validation.h"
#include "service/metrics/metrics.h"
#include "service/registry/registry.h"
#include "service/watch/watch_hub.h"  // Watch

namespace registrar {

class RegistrarService final : public v1::Registrar::CallbackService {
 public:
  // `registry`, `metrics` (nullable) and `watch_hub` (nullable: Watch is
  // then UNIMPLEMENTED) must outlive the service.
  RegistrarService(Registry& registry, const ApiLimits& limits,
                   Metrics* metrics, WatchHub* watch_hub = nullptr);

  // After this, every new call answers UNAVAILABLE (shutdown has begun).
  void StopAccepting() { stopping_.store(true, std::memory_order_release); }
  // Waits until no handler is running or `timeout` passes; true when idle.
  bool WaitIdle(absl::Duration timeout) const;

  grpc::ServerUnaryReactor* Issue(grpc::CallbackServerContext* ctx,
                                  const v1::IssueRequest* request,
                                  v1::IssueResponse* response) override;
  grpc::ServerUnaryReactor* OpenContext(
      grpc::CallbackServerContext* ctx, const v1::OpenContextRequest* request,
      v1::OpenContextResponse* response) override;
  grpc::ServerUnaryReactor* Validate(grpc::CallbackServerContext* ctx,
                                     const v1::ValidateRequest* request,
                                     v1::ValidateResponse* response) override;
  grpc::ServerUnaryReactor* Cleanup(grpc::CallbackServerContext* ctx,
                                    const v1::CleanupRequest* request,
                                    v1::CleanupResponse* response) override;
  grpc::ServerUnaryReactor* GrantLease(
      grpc::CallbackServerContext* ctx, const v1::GrantLeaseRequest* request,
      v1::GrantLeaseResponse* response) override;
  grpc::ServerUnaryReactor* KeepAlive(grpc::CallbackServerContext* ctx,
                                      const v1::KeepAliveRequest* request,
                                      v1::KeepAliveResponse* response) override;
  grpc::ServerUnaryReactor* RevokeLease(
      grpc::CallbackServerContext* ctx, const v1::RevokeLeaseRequest* request,
      v1::RevokeLeaseResponse* response) override;
  grpc::ServerUnaryReactor* Describe(grpc::CallbackServerContext* ctx,
                                     const v1::DescribeRequest* request,
                                     v1::DescribeResponse* response) override;
  grpc::ServerUnaryReactor* ListOwned(grpc::CallbackServerContext* ctx,
                                      const v1::ListOwnedRequest* request,
                                      v1::ListOwnedResponse* response) override;
  // Watch: a stream served by the WatchHub (service/watch/watch_hub.h).
  grpc::ServerWriteReactor<v1::WatchEvent>* Watch(
      grpc::CallbackServerContext* ctx,
      const v1::WatchRequest* request) override;

 private:
  // The handlers' bodies, free of gRPC types but the messages.
  absl::Status DoIssue(const v1::IssueRequest& req, v1::IssueResponse* resp);
  absl::Status DoOpenContext(const v1::OpenContextRequest& req,
                             v1::OpenContextResponse* resp);
  absl::Status DoValidate(const v1::ValidateRequest& req,
                          v1::ValidateResponse* resp);
  absl::Status DoCleanup(const v1::CleanupRequest& req,
                         v1::CleanupResponse* resp);
  absl::Status DoGrantLease(const v1::GrantLeaseRequest& req,
                            v1::GrantLeaseResponse* resp);
  absl::Status DoKeepAlive(const v1::KeepAliveRequest& req,
                           v1::KeepAliveResponse* resp);
  absl::Status DoRevokeLease(const v1::RevokeLeaseRequest& req,
                             v1::RevokeLeaseResponse* resp);
  absl::Status DoDescribe(const v1::DescribeRequest& req,
                          v1::DescribeResponse* resp);
  absl::Status DoListOwned(const v1::ListOwnedRequest& req,
                           v1::ListOwnedResponse* resp);

  // Runs `body` unless stopping, timing it as `op`, and finishes the call.
  template <typename Body>
  grpc::ServerUnaryReactor* Handle(grpc::CallbackServerContext* ctx, CoreOp op,
                                   Body&& body);

  Registry& registry_;
  const ApiLimits limits_;
  Metrics* const metrics_;
  WatchHub* const watch_hub_;  // Watch
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> in_flight_{0};
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_API_REGISTRAR_SERVICE_H_
