#ifndef REGISTRAR_SERVICE_API_REGISTRAR_SERVICE_H_
#define REGISTRAR_SERVICE_API_REGISTRAR_SERVICE_H_

// The gRPC face of the Registry: callback (reactor) handlers that check the
// request, call the core, and convert the result. No business rules live
// here; every handler finishes inline on the gRPC thread that ran it (the
// core never blocks on I/O). registrar_service.cc admits and routes a call
// (parse, access, rate limit, deadline, which replica answers);
// registrar_calls.cc holds what each method then does (the Do* members).

#include <atomic>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "service/api/access_control.h"
#include "service/api/access_log.h"
#include "service/api/api_metrics.h"
#include "service/api/cluster_hook.h"
#include "service/api/rate_limiter.h"
#include "service/api/request_validation.h"
#include "service/registry/registry.h"
#include "service/watch/watch_hub.h"  // Watch

namespace registrar {

// The unary methods take raw bytes: protobuf refuses a proto3 string that is
// not UTF-8, and gRPC would then answer UNIMPLEMENTED before any handler ran.
// Parsing here lets such a request get INVALID_ARGUMENT (or, in Validate, a
// MALFORMED verdict for that item alone).
using RawUnaryService = v1::Registrar::WithRawCallbackMethod_Issue<
    v1::Registrar::WithRawCallbackMethod_OpenContext<
        v1::Registrar::WithRawCallbackMethod_Validate<
            v1::Registrar::WithRawCallbackMethod_Cleanup<
                v1::Registrar::WithRawCallbackMethod_GrantLease<
                    v1::Registrar::WithRawCallbackMethod_KeepAlive<
                        v1::Registrar::WithRawCallbackMethod_RevokeLease<
                            v1::Registrar::WithRawCallbackMethod_Describe<
                                v1::Registrar::WithRawCallbackMethod_ListOwned<
                                    v1::Registrar::CallbackService>>>>>>>>>;

class RegistrarService final : public RawUnaryService {
 public:
  // `registry`, `metrics` (nullable) and `watch_hub` (nullable: Watch is
  // then UNIMPLEMENTED) must outlive the service.
  // `access` (nullable: no authentication) and `limiter` (nullable: no
  // per-caller rate) are checked before any call does anything.
  RegistrarService(Registry& registry, const ApiLimits& limits,
                   ApiMetrics* metrics, WatchHub* watch_hub = nullptr,
                   const AccessControl* access = nullptr,
                   RateLimiter* limiter = nullptr);
  // A replica of a cluster (service/cluster): `cluster` names the registry
  // of each call, holds reads until they may answer, and takes the
  // changing calls this replica does not (cluster_hook.h). It must outlive
  // the service.
  RegistrarService(ClusterHook& cluster, const ApiLimits& limits,
                   ApiMetrics* metrics, WatchHub* watch_hub = nullptr,
                   const AccessControl* access = nullptr,
                   RateLimiter* limiter = nullptr);

  // After this, every new call answers UNAVAILABLE (shutdown has begun).
  void StopAccepting() { stopping_.store(true, std::memory_order_release); }
  // Tells `log` (nullable; outlives the service) who calls for which tenant.
  void set_access_log(AccessLog* log) { access_log_ = log; }
  // Waits until no handler is running or `timeout` passes; true when idle.
  bool WaitIdle(absl::Duration timeout) const;

  grpc::ServerUnaryReactor* Issue(grpc::CallbackServerContext* ctx,
                                  const grpc::ByteBuffer* request,
                                  grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* OpenContext(grpc::CallbackServerContext* ctx,
                                        const grpc::ByteBuffer* request,
                                        grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Validate(grpc::CallbackServerContext* ctx,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Cleanup(grpc::CallbackServerContext* ctx,
                                    const grpc::ByteBuffer* request,
                                    grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* GrantLease(grpc::CallbackServerContext* ctx,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* KeepAlive(grpc::CallbackServerContext* ctx,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* RevokeLease(grpc::CallbackServerContext* ctx,
                                        const grpc::ByteBuffer* request,
                                        grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* Describe(grpc::CallbackServerContext* ctx,
                                     const grpc::ByteBuffer* request,
                                     grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* ListOwned(grpc::CallbackServerContext* ctx,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;
  // Watch: a stream served by the WatchHub (service/watch/watch_hub.h).
  grpc::ServerWriteReactor<v1::WatchEvent>* Watch(
      grpc::CallbackServerContext* ctx,
      const v1::WatchRequest* request) override;

 private:
  // The handlers' bodies, free of gRPC types but the messages.
  // Ends a call whose body finishes later, with the body's status.
  using Finish = absl::AnyInvocable<void(absl::Status) &&>;
  // Calls that change state hold no thread while the store commits:
  // `finish` runs once the change is durable (or has failed), from the
  // store's completion; a change not written by `deadline` does nothing.
  void DoIssueAsync(Registry& registry, const Caller* caller,
                    const v1::IssueRequest& req, v1::IssueResponse* resp,
                    absl::Time deadline, Finish finish);
  void DoOpenContextAsync(Registry& registry, const Caller* caller,
                          const v1::OpenContextRequest& req,
                          v1::OpenContextResponse* resp, absl::Time deadline,
                          Finish finish);
  void DoCleanupAsync(Registry& registry, const Caller* caller,
                      const v1::CleanupRequest& req, v1::CleanupResponse* resp,
                      absl::Time deadline, Finish finish);
  void DoGrantLeaseAsync(Registry& registry, const Caller* caller,
                         const v1::GrantLeaseRequest& req,
                         v1::GrantLeaseResponse* resp, absl::Time deadline,
                         Finish finish);
  void DoRevokeLeaseAsync(Registry& registry, const Caller* caller,
                          const v1::RevokeLeaseRequest& req,
                          v1::RevokeLeaseResponse* resp, absl::Time deadline,
                          Finish finish);
  absl::Status DoValidate(Registry& registry, const Caller* caller,
                          const v1::ValidateRequest& req,
                          v1::ValidateResponse* resp);
  absl::Status DoKeepAlive(Registry& registry, const Caller* caller,
                           const v1::KeepAliveRequest& req,
                           v1::KeepAliveResponse* resp);
  absl::Status DoDescribe(Registry& registry, const Caller* caller,
                          const v1::DescribeRequest& req,
                          v1::DescribeResponse* resp);
  absl::Status DoListOwned(Registry& registry, const Caller* caller,
                           const v1::ListOwnedRequest& req,
                           v1::ListOwnedResponse* resp);

  // Parses the request (with `parse`), runs the body unless stopping, timing
  // it as `op`, serialises the response and finishes the call. Exactly one
  // body is given: `body` (reads) runs here; `async_body` (changes) starts
  // here and finishes the call when the store has committed its change.
  template <typename Req, typename Resp>
  grpc::ServerUnaryReactor* Handle(
      grpc::CallbackServerContext* ctx, Method method,
      const grpc::ByteBuffer* request, grpc::ByteBuffer* response,
      absl::Status (RegistrarService::*body)(Registry&, const Caller*,
                                             const Req&, Resp*),
      absl::Status (*parse)(const grpc::ByteBuffer&, Req*),
      void (RegistrarService::*async_body)(Registry&, const Caller*, const Req&,
                                           Resp*, absl::Time,
                                           Finish) = nullptr);
  // The registry for a call starting now (the cluster's current one).
  std::shared_ptr<Registry> CurrentRegistry() const;

  // Authentication, authorization, rate and in-flight bounds, in that
  // order; the caller (null without authentication) or the refusal.
  // `tenants` (TenantsOf the request) is called only for an authenticated
  // caller: without authentication no call pays for listing them.
  absl::StatusOr<CallerPtr> Admit(
      grpc::CallbackServerContext* ctx, Method method,
      absl::FunctionRef<std::vector<TenantUse>()> tenants);
  // Who a lease call must have granted the lease (nullopt: anyone).
  static std::optional<std::string> LeaseCaller(const Caller* caller);

  Registry* const registry_;    // without a cluster
  ClusterHook* const cluster_;  // a replica of a cluster; else null
  const ApiLimits limits_;
  const AccessControl* const access_;
  RateLimiter* const limiter_;
  AccessLog* access_log_ = nullptr;
  ApiMetrics* const metrics_;
  WatchHub* const watch_hub_;  // Watch
  std::atomic<bool> stopping_{false};
  std::atomic<int64_t> in_flight_{0};
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_API_REGISTRAR_SERVICE_H_
