// Damage found at open: what the refusal says, and what the operator's
// override (RocksDbStoreOptions::accept_data_loss) does. See
// revision_witness.h for how lost acknowledged revisions are detected.

#include <algorithm>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "service/common/field_error.h"
#include "service/store/record_codec.h"
#include "service/store/rocksdb_internal.h"

namespace registrar {
namespace rocksdb_internal {
namespace fs = std::filesystem;
namespace {

bool IsDbFile(const std::string& name) {
  auto ends = [&](std::string_view sfx) {
    return name.size() >= sfx.size() &&
           name.compare(name.size() - sfx.size(), sfx.size(), sfx) == 0;
  };
  return ends(".log") || name == "CURRENT" || name.rfind("MANIFEST-", 0) == 0 ||
         name.rfind("OPTIONS-", 0) == 0 || name == kRevisionWitnessName;
}

}  // namespace

std::string DescribeLogFiles(const std::string& path) {
  std::vector<std::string> files;
  std::error_code ec;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!IsDbFile(name) || name.rfind("OPTIONS-", 0) == 0) continue;
    std::error_code ec2;
    const uint64_t size = it->file_size(ec2);
    files.push_back(ec2 ? name : absl::StrCat(name, " (", size, " bytes)"));
  }
  std::sort(files.begin(), files.end());
  return files.empty() ? "none" : absl::StrJoin(files, ", ");
}

absl::Status DamagedStore(const std::string& path, const std::string& what) {
  return WithLimit(
      absl::DataLossError(absl::StrCat(
          "data dir ", path, " is damaged: ", what,
          ". Its WAL, MANIFEST and REVISION files: ", DescribeLogFiles(path),
          ". Nothing was changed; restore a backup, or accept the loss "
          "explicitly to serve what is left")),
      Limit::kAcceptDataLoss);
}

absl::StatusOr<std::string> KeepDamagedCopy(const std::string& path,
                                            absl::Time now) {
  const std::string copy =
      absl::StrCat(path, "/damaged-", absl::ToUnixMillis(now));
  std::error_code ec;
  fs::create_directory(copy, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create ", copy, ": ", ec.message()));
  }
  for (fs::directory_iterator it(path, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!IsDbFile(name)) continue;
    std::error_code ec2;
    fs::copy_file(it->path(), fs::path(copy) / name, ec2);
    if (ec2) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot copy ", it->path().string(), " to ", copy, ": ",
                       ec2.message()));
    }
  }
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read ", path, ": ", ec.message()));
  }
  return copy;
}

absl::Status SkipLostRevisions(const std::string& path, uint64_t revision,
                               const RocksDbHandles& h) {
  rocksdb::WriteBatch wb;
  wb.Put(h.meta(), ToSlice(kLastRevisionKey), std::to_string(revision))
      .PermitUncheckedError();
  // History with a hole cannot be replayed to a watcher: it restarts after
  // the lost revisions.
  wb.DeleteRange(h.events(), RevisionKey(0), RevisionKey(revision + 1))
      .PermitUncheckedError();
  rocksdb::WriteOptions w;
  w.sync = true;
  rocksdb::Status s = h.db->Write(w, &wb);
  if (!s.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("data dir ", path,
                     ": cannot record the lost revisions: ", RocksMessage(s)));
  }
  return absl::OkStatus();
}

}  // namespace rocksdb_internal
}  // namespace registrar
