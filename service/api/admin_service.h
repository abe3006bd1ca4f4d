#ifndef REGISTRAR_SERVICE_API_ADMIN_SERVICE_H_
#define REGISTRAR_SERVICE_API_ADMIN_SERVICE_H_

// registrar.v1.Admin (proto/registrar/v1/admin.proto): operations on the
// server itself, for callers with the admin role (AccessControl).
//
// Backup runs on a thread of its own (a checkpoint flushes and fsyncs),
// never on gRPC's callback threads; one backup at a time.
//
// ListLeases and RevokeLeases (the leases of a holder, for an operator
// cleaning up after a dead gateway) answer from the registry: RevokeLeases
// ends each lease through the registry's one write path, as RevokeLease
// does, and finishes from the store's completion. On a replica of a
// cluster both go to the writer (cluster_hook.h): RevokeLeases changes
// state, and only the writer renews leases, so only it knows when they
// expire. They take raw bytes so that a follower can pass them on as they
// came.

#include <atomic>
#include <memory>
#include <thread>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "registrar/v1/admin.grpc.pb.h"
#include "service/api/access_control.h"
#include "service/api/api_metrics.h"
#include "service/api/cluster_hook.h"
#include "service/api/method.h"
#include "service/api/request_validation.h"
#include "service/registry/registry.h"

namespace registrar {

class RocksDbStore;

using RawLeaseAdmin = v1::Admin::WithRawCallbackMethod_ListLeases<
    v1::Admin::WithRawCallbackMethod_RevokeLeases<v1::Admin::CallbackService>>;

// Where the lease methods find the registry: `registry`, or on a replica of
// a cluster `cluster` (which also takes the calls this replica does not
// answer). With neither they answer UNIMPLEMENTED. `metrics` (nullable)
// times them in registrar_core_op_seconds.
struct AdminLeases {
  Registry* registry = nullptr;
  ClusterHook* cluster = nullptr;
  ApiLimits limits;
  ApiMetrics* metrics = nullptr;
};

class AdminService final : public RawLeaseAdmin {
 public:
  // `store` is null with the memory and etcd stores (Backup then answers
  // FAILED_PRECONDITION). Everything given must outlive the service.
  AdminService(RocksDbStore* store, AccessControl* access,
               AdminLeases leases = {})
      : store_(store), access_(access), leases_(leases) {}
  // Waits for a running backup.
  ~AdminService() override;

  grpc::ServerUnaryReactor* Backup(grpc::CallbackServerContext* ctx,
                                   const v1::BackupRequest* request,
                                   v1::BackupResponse* response) override;
  grpc::ServerUnaryReactor* ListLeases(grpc::CallbackServerContext* ctx,
                                       const grpc::ByteBuffer* request,
                                       grpc::ByteBuffer* response) override;
  grpc::ServerUnaryReactor* RevokeLeases(grpc::CallbackServerContext* ctx,
                                         const grpc::ByteBuffer* request,
                                         grpc::ByteBuffer* response) override;

 private:
  // A lease method's body: answers `req` into *resp from `registry`, then
  // runs `finish` once (later, for a change the store commits).
  using Finish = absl::AnyInvocable<void(absl::Status) &&>;
  template <typename Req, typename Resp>
  using Body = void (AdminService::*)(Registry& registry, const Req& req,
                                      Resp* resp, absl::Time deadline,
                                      Finish finish);

  // Passes the call on to the writer, or parses, authorizes and runs
  // `body`, then serialises the reply and finishes the call.
  template <typename Req, typename Resp>
  grpc::ServerUnaryReactor* HandleLeaseCall(grpc::CallbackServerContext* ctx,
                                            Method method,
                                            const grpc::ByteBuffer* request,
                                            grpc::ByteBuffer* response,
                                            Body<Req, Resp> body);
  void DoListLeases(Registry& registry, const v1::ListLeasesRequest& req,
                    v1::ListLeasesResponse* resp, absl::Time deadline,
                    Finish finish);
  void DoRevokeLeases(Registry& registry, const v1::RevokeLeasesRequest& req,
                      v1::RevokeLeasesResponse* resp, absl::Time deadline,
                      Finish finish);

  RocksDbStore* const store_;
  AccessControl* const access_;
  const AdminLeases leases_;
  std::atomic<bool> busy_{false};
  std::thread worker_;  // the last backup's thread (joined before the next)
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_API_ADMIN_SERVICE_H_
