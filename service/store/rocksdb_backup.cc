// Online backup (a RocksDB checkpoint) and restore into a fresh data dir.

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "rocksdb/utilities/checkpoint.h"
#include "service/common/field_error.h"
#include "service/common/status_macros.h"
#include "service/store/rocksdb_internal.h"
#include "service/store/rocksdb_store.h"

namespace registrar {
namespace fs = std::filesystem;

using rocksdb_internal::ClassifyDir;
using rocksdb_internal::DirState;
using rocksdb_internal::RocksMessage;

namespace {

absl::Status SyncDir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot open ", dir));
  }
  const int r = ::fsync(fd);
  ::close(fd);
  if (r != 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot fsync ", dir));
  }
  return absl::OkStatus();
}

absl::Status SyncFile(const std::string& file) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot open ", file));
  }
  const int r = ::fsync(fd);
  ::close(fd);
  if (r != 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot fsync ", file));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<BackupInfo> RocksDbStore::Backup(const std::string& dir) {
  if (dir.empty()) {
    return absl::InvalidArgumentError("backup: the directory is empty");
  }
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "backup: ", dir, " exists; a backup goes into a new directory"));
  }
  {
    absl::ReaderMutexLock lock(&db_mu_);
    if (h_ == nullptr) return Closed();
    rocksdb::Checkpoint* raw = nullptr;
    rocksdb::Status s = rocksdb::Checkpoint::Create(h_->db.get(), &raw);
    std::unique_ptr<rocksdb::Checkpoint> checkpoint(raw);
    // log_size_for_flush 0: flush first (atomically, every family), so the
    // copy holds everything written so far even in kNone mode; RocksDB
    // hard-links table files and copies the live WAL: one consistent
    // point in the commit order.
    if (s.ok()) s = checkpoint->CreateCheckpoint(dir, /*log_size_for_flush=*/0);
    if (!s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("backup: cannot create a checkpoint in ", dir, ": ",
                       RocksMessage(s)));
    }
  }
  // The revision the copy is consistent at, read from the copy itself.
  ASSIGN_OR_RETURN(DataDirInfo info, Inspect(dir));
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file()) RETURN_IF_ERROR(SyncFile(e.path().string()));
  }
  RETURN_IF_ERROR(SyncDir(dir));
  return BackupInfo{dir, info.last_revision, info.records, info.dir_bytes};
}

absl::StatusOr<BackupInfo> RocksDbStore::Restore(const std::string& backup,
                                                 const std::string& data_dir,
                                                 uint32_t node_id) {
  ASSIGN_OR_RETURN(DataDirInfo info, Inspect(backup));
  if (info.node_id != node_id) {
    return WithLimit(absl::FailedPreconditionError(absl::StrCat(
                         "restore: the backup ", backup, " belongs to node_id ",
                         info.node_id, ", this server is node_id ", node_id)),
                     Limit::kNodeId);
  }
  std::error_code ec;
  if (fs::exists(data_dir, ec)) {
    for (const auto& e : fs::directory_iterator(data_dir, ec)) {
      if (e.path().filename() != "lost+found") {
        return absl::FailedPreconditionError(absl::StrCat(
            "restore: the data dir ", data_dir, " is not empty (it holds ",
            e.path().filename().string(),
            "); restore only into an empty or missing directory"));
      }
    }
  }
  ASSIGN_OR_RETURN(DirState state, ClassifyDir(data_dir, /*create=*/true));
  if (state != DirState::kFresh) {
    return absl::FailedPreconditionError(
        absl::StrCat("restore: the data dir ", data_dir, " is not empty"));
  }
  for (const auto& e : fs::directory_iterator(backup, ec)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    if (name == "LOCK" || name.rfind("LOG", 0) == 0) continue;
    const std::string to = (fs::path(data_dir) / name).string();
    fs::copy_file(e.path(), to, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("restore: cannot copy ", e.path().string(), " to ", to,
                       ": ", ec.message()));
    }
    RETURN_IF_ERROR(SyncFile(to));
  }
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("restore: cannot read ", backup, ": ", ec.message()));
  }
  RETURN_IF_ERROR(SyncDir(data_dir));
  return BackupInfo{data_dir, info.last_revision, info.records, info.dir_bytes};
}

}  // namespace registrar
