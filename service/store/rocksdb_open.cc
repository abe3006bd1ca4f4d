#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "rocksdb/cache.h"
#include "rocksdb/convenience.h"
#include "rocksdb/db.h"
#include "rocksdb/listener.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"
#include "service/store/rocksdb_internal.h"

// Opening a RocksDB database with Registrar's options and families, and
// waiting for flushes (see rocksdb_internal.h).

namespace registrar {

rocksdb::ColumnFamilyHandle* RocksDbHandles::meta() const {
  return cf[rocksdb_internal::kMeta];
}
rocksdb::ColumnFamilyHandle* RocksDbHandles::records() const {
  return cf[rocksdb_internal::kRecords];
}
rocksdb::ColumnFamilyHandle* RocksDbHandles::events() const {
  return cf[rocksdb_internal::kEvents];
}
rocksdb::ColumnFamilyHandle* RocksDbHandles::leases() const {
  return cf[rocksdb_internal::kLeases];
}

RocksDbHandles::~RocksDbHandles() {
  if (db == nullptr) return;
  for (rocksdb::ColumnFamilyHandle* h : cf) {
    if (h != nullptr) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  }
  db->Close().PermitUncheckedError();
}

namespace rocksdb_internal {
namespace fs = std::filesystem;
namespace {

// RocksDB's info log ("LOG" in the data dir), written by us rather than by
// RocksDB's own file logger. Debian's librocksdb is built with assertions
// enabled, and that logger asserts (aborts the whole server) on the first
// line after a write of its file failed, which is exactly what happens
// when the disk fills up. This one ignores write errors: losing log lines
// is fine, losing the process is not. It rotates at `max_bytes` to
// LOG.old.<micros> like RocksDB, keeping the newest `keep` old files.
class DataDirLogger final : public rocksdb::Logger {
 public:
  DataDirLogger(std::string dir, size_t max_bytes, size_t keep)
      : rocksdb::Logger(rocksdb::InfoLogLevel::INFO_LEVEL),
        dir_(std::move(dir)),
        max_bytes_(max_bytes),
        keep_(keep) {
    absl::MutexLock lock(&mu_);
    OpenLocked();
  }
  ~DataDirLogger() override {
    absl::MutexLock lock(&mu_);
    if (fd_ >= 0) ::close(fd_);
  }

  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    char buf[1024];
    const absl::Time now = absl::Now();
    std::string line =
        absl::FormatTime("%Y/%m/%d-%H:%M:%E6S ", now, absl::LocalTimeZone());
    va_list copy;
    va_copy(copy, ap);
    const int n = std::vsnprintf(buf, sizeof(buf), format, copy);
    va_end(copy);
    if (n < 0) return;
    if (static_cast<size_t>(n) < sizeof(buf)) {
      line.append(buf, n);
    } else {
      std::string big(static_cast<size_t>(n) + 1, '\0');
      std::vsnprintf(big.data(), big.size(), format, ap);
      line.append(big.data(), n);
    }
    if (line.back() != '\n') line.push_back('\n');
    absl::MutexLock lock(&mu_);
    if (fd_ < 0) return;
    if (size_ + line.size() > max_bytes_) RotateLocked();
    if (fd_ < 0) return;
    const ssize_t w = ::write(fd_, line.data(), line.size());  // errors ignored
    if (w > 0) size_ += static_cast<size_t>(w);
  }
  size_t GetLogFileSize() const override {
    absl::MutexLock lock(&mu_);
    return size_;
  }

 private:
  void OpenLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    fd_ = ::open((dir_ + "/LOG").c_str(),
                 O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    struct stat st;
    size_ = fd_ >= 0 && ::fstat(fd_, &st) == 0 ? st.st_size : 0;
  }
  void RotateLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    std::error_code ec;
    fs::rename(dir_ + "/LOG",
               absl::StrCat(dir_, "/LOG.old.", absl::ToUnixMicros(absl::Now())),
               ec);
    std::vector<std::string> old;
    for (fs::directory_iterator it(dir_, ec), end; !ec && it != end;
         it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.rfind("LOG.old.", 0) == 0) old.push_back(it->path().string());
    }
    std::sort(old.begin(), old.end());  // same-width timestamps sort by time
    for (size_t i = 0; i + keep_ < old.size(); ++i) fs::remove(old[i], ec);
    OpenLocked();
  }

  const std::string dir_;
  const size_t max_bytes_;
  const size_t keep_;
  mutable absl::Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
  size_t size_ ABSL_GUARDED_BY(mu_) = 0;
};

// Turns off RocksDB's own recovery from background errors (for "no space"
// it polls every 5 s and waits for a free-space margin; meanwhile a manual
// DB::Resume returns Busy). Recovery then happens only when the registry
// calls CheckWritable, which answers at once whether writes work again.
class ManualRecoveryListener final : public rocksdb::EventListener {
 public:
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason /*reason*/,
                            rocksdb::Status /*bg_error*/,
                            bool* auto_recovery) override {
    *auto_recovery = false;
  }
};

// RocksDB options for this workload: small values, appends, a full scan at
// start, rare point reads.
rocksdb::Options MakeOptions(
    const RocksDbStoreOptions& o, std::shared_ptr<rocksdb::Cache> cache,
    std::vector<rocksdb::ColumnFamilyDescriptor>* cfs) {
  rocksdb::Options options;
  options.max_background_jobs = 2;              // the machine has 2 cores
  options.bytes_per_sync = 1 << 20;             // smooth SST writeback
  options.avoid_flush_during_shutdown = false;  // flush unlogged (kNone) data
  // One flush covers every family, so even without a WAL (kNone) the files
  // on disk always hold the same prefix of commits in every family.
  options.atomic_flush = true;
  options.max_total_wal_size = 4 * o.memtable_bytes;
  options.max_bgerror_resume_count = 0;  // see ManualRecoveryListener
  options.listeners.push_back(std::make_shared<ManualRecoveryListener>());
  options.db_write_buffer_size = 4 * o.memtable_bytes;  // all families
  // A damaged WAL is refused, not replayed up to the damage: RocksDB's
  // default (kPointInTimeRecovery) silently stops at the first bad record
  // and drops the rest, acknowledged or not. kTolerateCorruptedTailRecords
  // accepts only an incomplete last record (a write torn by a crash, never
  // acknowledged in fsync mode) and fails on any checksum error. What a
  // clean loss hides from RocksDB (a deleted WAL, a WAL cut at a record
  // boundary) the revision witness catches (revision_witness.h).
  // track_and_verify_wals_in_manifest is left off: in RocksDB 7.8 it does
  // not track the live WAL (facebook/rocksdb#10080) and can raise a false
  // "Missing WAL" (fixed after 7.8, #10892), which would refuse a healthy
  // store. With the operator's override, point-in-time recovery keeps
  // everything before the damage.
  options.wal_recovery_mode =
      o.accept_data_loss
          ? rocksdb::WALRecoveryMode::kPointInTimeRecovery
          : rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  options.paranoid_checks = true;  // the default, relied on: check SSTs

  // No bloom filter: point lookups are rare (everything is loaded at start).
  // 16 KiB blocks compress better and make the start-up scan cheaper.
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = std::move(cache);
  table.block_size = 16 << 10;

  rocksdb::ColumnFamilyOptions cf;
  cf.OptimizeLevelStyleCompaction(o.memtable_bytes * 4);  // -> memtable
  const auto supported = rocksdb::GetSupportedCompressions();
  auto has = [&](rocksdb::CompressionType c) {
    return std::find(supported.begin(), supported.end(), c) != supported.end();
  };
  // LZ4 is cheap enough for every level (it replaces the per-level choice
  // of OptimizeLevelStyleCompaction); ZSTD on the last level, where most
  // bytes end up and which is rewritten least often.
  cf.compression_per_level.clear();
  cf.compression = has(rocksdb::kLZ4Compression) ? rocksdb::kLZ4Compression
                                                 : rocksdb::kNoCompression;
  if (has(rocksdb::kZSTD)) cf.bottommost_compression = rocksdb::kZSTD;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  // The same options for every family: with atomic flush a small family
  // with a small memtable would trigger flushes (and small files) of all
  // of them. Memtable memory is allocated as it fills, so the mostly idle
  // meta and leases families cost nothing extra.
  static_cast<rocksdb::ColumnFamilyOptions&>(options) = cf;
  cfs->clear();
  for (const char* name : kCfNames) cfs->emplace_back(name, cf);
  return options;
}

}  // namespace

// Maps a RocksDB open error to our codes and words.
absl::Status OpenError(const std::string& path, const rocksdb::Status& s) {
  const std::string msg = RocksMessage(s);
  if (s.IsIOError() && absl::StrContains(msg, "lock hold by current process")) {
    return absl::FailedPreconditionError(
        absl::StrCat("data dir ", path,
                     " is in use by another registrar process (this "
                     "process already has it open): ",
                     msg));
  }
  if (s.IsIOError() && absl::StrContains(msg, "While lock file")) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data dir ", path, " is in use by another registrar process: ", msg));
  }
  if (s.IsCorruption() || s.IsPathNotFound()) {  // e.g. a missing MANIFEST
    return absl::DataLossError(
        absl::StrCat("data dir ", path, " is corrupted; RocksDB says: ", msg));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("cannot open data dir ", path, ": ", msg));
}

// Opens the database at `path` with our families (plus any others it has, as
// RocksDB requires), read-only or not. `exists`: there is a database to
// open; else one is created.
absl::StatusOr<std::unique_ptr<RocksDbHandles>> OpenDb(
    const std::string& path, const RocksDbStoreOptions& o, bool read_only,
    bool exists) {
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  rocksdb::Options options =
      MakeOptions(o, rocksdb::NewLRUCache(o.block_cache_bytes), &cfs);
  if (exists) {
    std::vector<std::string> existing;
    rocksdb::Status s =
        rocksdb::DB::ListColumnFamilies(options, path, &existing);
    if (!s.ok()) return OpenError(path, s);
    for (const std::string& name : existing) {
      bool ours = false;
      for (const auto& d : cfs) ours |= d.name == name;
      if (!ours) cfs.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
    if (read_only) {
      // A read-only open must not name families the database lacks.
      std::erase_if(cfs, [&](const rocksdb::ColumnFamilyDescriptor& d) {
        return std::find(existing.begin(), existing.end(), d.name) ==
               existing.end();
      });
    }
  }
  options.create_if_missing = !exists && !read_only;
  if (!read_only) {
    options.info_log =
        std::make_shared<DataDirLogger>(path, 16 << 20, /*keep=*/4);
  }
  options.create_missing_column_families = !read_only;

  auto h = std::make_unique<RocksDbHandles>();
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s =
      read_only ? rocksdb::DB::OpenForReadOnly(options, path, cfs, &h->cf, &raw)
                : rocksdb::DB::Open(options, path, cfs, &h->cf, &raw);
  if (!s.ok()) return OpenError(path, s);
  h->db.reset(raw);
  if (read_only) {
    // Pad missing families with null so the accessors are uniform; callers
    // of a read-only open check for null.
    std::vector<rocksdb::ColumnFamilyHandle*> ordered(kNumCfs, nullptr);
    std::vector<rocksdb::ColumnFamilyHandle*> extra;
    for (rocksdb::ColumnFamilyHandle* c : h->cf) {
      bool placed = false;
      for (int i = 0; i < kNumCfs; ++i) {
        if (c->GetName() == kCfNames[i]) {
          ordered[i] = c;
          placed = true;
        }
      }
      if (!placed) extra.push_back(c);
    }
    ordered.insert(ordered.end(), extra.begin(), extra.end());
    h->cf = std::move(ordered);
  }
  return h;
}

// Flushes every family and waits until no flush is pending or running.
// DB::Flush(wait=true) alone is not enough in RocksDB 7.8: after DB::Resume
// it was seen to return at once, before the flush had run.
absl::Status FlushAndWait(const RocksDbHandles& h) {
  rocksdb::FlushOptions f;
  f.wait = true;
  std::vector<rocksdb::ColumnFamilyHandle*> cfs(h.cf.begin(),
                                                h.cf.begin() + kNumCfs);
  rocksdb::Status s = h.db->Flush(f, cfs);
  if (!s.ok()) {
    return absl::UnavailableError(
        absl::StrCat("store: cannot flush: ", RocksMessage(s)));
  }
  const absl::Time deadline = absl::Now() + absl::Minutes(2);
  while (true) {
    uint64_t busy = 0, v = 0;
    if (h.db->GetIntProperty("rocksdb.num-running-flushes", &v)) busy += v;
    for (rocksdb::ColumnFamilyHandle* c : cfs) {
      if (h.db->GetIntProperty(c, "rocksdb.mem-table-flush-pending", &v)) {
        busy += v;
      }
      if (h.db->GetIntProperty(c, "rocksdb.num-immutable-mem-table", &v)) {
        busy += v;
      }
    }
    if (busy == 0) return absl::OkStatus();
    if (absl::Now() > deadline) {
      return absl::DeadlineExceededError("store: flush did not finish");
    }
    absl::SleepFor(absl::Milliseconds(1));
  }
}

rocksdb::WriteOptions WriteOptionsFor(Durability d) {
  rocksdb::WriteOptions w;
  w.sync = d == Durability::kFsync;
  w.disableWAL = d == Durability::kNone;
  return w;
}

uint64_t AggregatedProperty(rocksdb::DB* db, const char* name) {
  uint64_t v = 0;
  return db->GetAggregatedIntProperty(name, &v) ? v : 0;
}

uint64_t CfProperty(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                    const char* name) {
  uint64_t v = 0;
  return cf != nullptr && db->GetIntProperty(cf, name, &v) ? v : 0;
}

}  // namespace rocksdb_internal
}  // namespace registrar
