#include "service/api/admin_service.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "service/api/status_conversion.h"
#include "service/store/rocksdb_store.h"

namespace registrar {
namespace {

constexpr size_t kMaxDirBytes = 4096;

absl::Status CheckDir(const std::string& dir) {
  if (dir.empty()) {
    return absl::InvalidArgumentError("dir is required");
  }
  if (dir.size() > kMaxDirBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "dir is ", dir.size(), " bytes; the limit is ", kMaxDirBytes));
  }
  if (dir.front() != '/') {
    return absl::InvalidArgumentError(
        "dir must be an absolute path (it is on the server's filesystem)");
  }
  for (unsigned char c : dir) {
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError("dir holds a control character");
    }
  }
  return absl::OkStatus();
}

}  // namespace

AdminService::~AdminService() {
  if (worker_.joinable()) worker_.join();
}

grpc::ServerUnaryReactor* AdminService::Backup(grpc::CallbackServerContext* ctx,
                                               const v1::BackupRequest* request,
                                               v1::BackupResponse* response) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  absl::StatusOr<CallerPtr> caller = access_->Authenticate(*ctx);
  absl::Status st = caller.status();
  if (st.ok()) st = access_->Authorize(caller->get(), Method::kBackup, {});
  if (st.ok()) st = CheckDir(request->dir());
  if (st.ok() && store_ == nullptr) {
    st = absl::FailedPreconditionError(
        "backup needs the rocksdb store; this server keeps its records in "
        "memory");
  }
  if (st.ok() && busy_.exchange(true)) {
    st = absl::UnavailableError("a backup is already running; try later");
  }
  if (!st.ok()) {
    reactor->Finish(ToGrpcStatus(st));
    return reactor;
  }
  // busy_ was false: the previous worker has finished (or is finishing).
  if (worker_.joinable()) worker_.join();
  worker_ = std::thread([this, reactor, request, response] {
    absl::StatusOr<BackupInfo> info = store_->Backup(request->dir());
    grpc::Status status = ToGrpcStatus(info.status());
    if (info.ok()) {
      response->set_dir(info->dir);
      response->set_revision(info->revision);
      response->set_records(info->records);
      response->set_bytes(info->bytes);
    }
    busy_.store(false);
    reactor->Finish(status);
  });
  return reactor;
}

}  // namespace registrar
