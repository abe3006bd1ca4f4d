#include <algorithm>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "rocksdb/db.h"
#include "rocksdb/experimental.h"
#include "rocksdb/write_batch.h"
#include "service/common/absl_compat.h"
#include "service/common/status_macros.h"
#include "service/store/record_codec.h"
#include "service/store/rocksdb_internal.h"
#include "service/store/rocksdb_store.h"

// Writability: the probe of CheckWritable and recovery after write errors
// (closing and reopening the database; see rocksdb_store.h for why).

namespace registrar {
namespace fs = std::filesystem;

using rocksdb_internal::kProbeKey;
using rocksdb_internal::OpenDb;
using rocksdb_internal::ReadOpenState;
using rocksdb_internal::RocksMessage;
using rocksdb_internal::ToSlice;
using rocksdb_internal::WriteOptionsFor;

absl::Status RocksDbStore::Probe() {
  // With a WAL: a real WAL append (fsynced in kFsync). A stopped database
  // refuses it before touching the WAL. Without a WAL (kNone) it only tells
  // whether RocksDB takes writes, which is all a kNone commit needs.
  rocksdb::WriteOptions w = h_->write_options;
  rocksdb::Status s = h_->db->Put(w, h_->meta(), ToSlice(kProbeKey),
                                  std::to_string(++probe_count_));
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("store: cannot write: ", RocksMessage(s)));
  }
  return absl::OkStatus();
}

absl::Status RocksDbStore::CheckWritable() {
  if (broken_.load()) return Broken();
  // A health check may call this often (the server: every tick); a recent
  // good probe with no failed write since answers without another one.
  const uint64_t failures = write_failures_.load();
  const absl::Time now = clock_.Now();
  const int64_t now_ns = absl::ToUnixNanos(now);
  if (failures == failures_at_good_probe_.load() &&
      now_ns - good_probe_ns_.load() <
          absl::ToInt64Nanoseconds(kProbeInterval)) {
    return absl::OkStatus();
  }
  absl::Status probe;
  {
    absl::ReaderMutexLock lock(&db_mu_);
    if (h_ != nullptr) {
      probe = Probe();
      if (probe.ok()) {
        failures_at_good_probe_.store(failures);
        good_probe_ns_.store(now_ns);
        return probe;
      }
    }
  }
  absl::MutexLock lock(&db_mu_);
  if (h_ != nullptr) {
    // Another caller may have recovered it meanwhile.
    probe = Probe();
    if (probe.ok()) return probe;
  }
  if (!recovery_failure_.ok() &&
      now - recovery_attempt_ < options_.recovery_interval) {
    return recovery_failure_;
  }
  recovery_attempt_ = now;
  recovery_attempts_.fetch_add(1);
  recovery_failure_ = Recover(probe);
  return recovery_failure_;
}

absl::Status RocksDbStore::Recover(const absl::Status& probe) {
  if (durability_ == Durability::kNone && h_ != nullptr) {
    // No WAL is ever written, so DB::Resume is safe here (see the header).
    rocksdb::Status s = h_->db->Resume();
    if (!s.ok()) {
      std::string msg = absl::StrCat("store: cannot write: ", RocksMessage(s));
      if (s.severity() >= rocksdb::Status::Severity::kFatalError) {
        absl::StrAppend(&msg,
                        "; RocksDB cannot resume after this error: "
                        "fix the cause and restart registrar");
      }
      return absl::UnavailableError(msg);
    }
    return Probe();
  }
  // Only close what we can reopen: a reopen writes a new MANIFEST and WAL
  // and may flush the replayed WAL, so it needs room for about a memtable.
  std::error_code ec;
  const fs::space_info space = fs::space(path_, ec);
  const uint64_t need = options_.memtable_bytes + (1 << 20);
  if (!ec && space.available < need) {
    return absl::UnavailableError(absl::StrCat(
        probe.ok() ? "store: cannot write" : probe.message(), " (", path_,
        " has ", space.available, " bytes free; recovery needs ", need, ")"));
  }
  return Reopen();
}

absl::Status RocksDbStore::Reopen() {
  h_.reset();  // close; a torn last WAL record is dropped when reopening
  auto opened = OpenDb(path_, options_, /*read_only=*/false, /*exists=*/true);
  if (!opened.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "store: cannot write: reopening after a write error failed: ",
        opened.status().message()));
  }
  auto st = ReadOpenState(path_, node_id_, **opened);
  if (!st.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "store: cannot write: reopening after a write error failed: ",
        st.status().message()));
  }
  h_ = std::move(opened).value();
  h_->write_options = WriteOptionsFor(durability_);
  ++reopens_;
  if (st->meta.last_revision != written_revision_.load()) {
    broken_.store(true);
    return absl::UnavailableError(absl::StrCat(
        "store: cannot write: after reopening, the data dir's last revision "
        "is ",
        st->meta.last_revision, " but only ", written_revision_.load(),
        " were committed (a write that failed had reached the disk); "
        "restart registrar to load it"));
  }
  return Probe();
}

}  // namespace registrar
