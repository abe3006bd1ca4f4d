#ifndef REGISTRAR_SERVICE_API_ADMIN_SERVICE_H_
#define REGISTRAR_SERVICE_API_ADMIN_SERVICE_H_

// registrar.v1.Admin (proto/registrar/v1/admin.proto): operations on the
// server itself, for callers with the admin role (AccessControl). Backup
// runs on a thread of its own (a checkpoint flushes and fsyncs), never on
// gRPC's callback threads; one backup at a time.

#include <atomic>
#include <thread>

#include "registrar/v1/admin.grpc.pb.h"
#include "service/api/access_control.h"

namespace registrar {

class RocksDbStore;

class AdminService final : public v1::Admin::CallbackService {
 public:
  // `store` is null with the memory store (Backup then answers
  // FAILED_PRECONDITION). Both must outlive the service.
  AdminService(RocksDbStore* store, AccessControl* access)
      : store_(store), access_(access) {}
  // Waits for a running backup.
  ~AdminService() override;

  grpc::ServerUnaryReactor* Backup(grpc::CallbackServerContext* ctx,
                                   const v1::BackupRequest* request,
                                   v1::BackupResponse* response) override;

 private:
  RocksDbStore* const store_;
  AccessControl* const access_;
  std::atomic<bool> busy_{false};
  std::thread worker_;  // the last backup's thread (joined before the next)
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_API_ADMIN_SERVICE_H_
