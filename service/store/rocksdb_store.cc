#include "service/store/rocksdb_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <charconv>
#include <filesystem>
#include <optional>
#include <system_error>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "rocksdb/cache.h"
#include "rocksdb/convenience.h"
#include "rocksdb/db.h"
#include "rocksdb/experimental.h"
#include "rocksdb/listener.h"
#include "rocksdb/options.h"
#include "rocksdb/table.h"
#include "rocksdb/write_batch.h"
#include "service/common/absl_compat.h"
#include "service/common/status_macros.h"
#include "service/id/id.h"
#include "service/store/record_codec.h"

namespace registrar {
namespace fs = std::filesystem;
namespace {

// Column families, in the order of RocksDbHandles::cf.
constexpr int kMeta = 0, kRecords = 1, kEvents = 2, kLeases = 3, kNumCfs = 4;
const char* const kCfNames[kNumCfs] = {"default", "records", "events",
                                      "leases"};

constexpr std::string_view kFormatVersionKey = "registrar/format_version";
constexpr std::string_view kNodeIdKey = "registrar/node_id";
constexpr std::string_view kCreatedMsKey = "registrar/created_ms";
constexpr std::string_view kLastRevisionKey = "registrar/last_revision";
constexpr std::string_view kClockKey = "registrar/clock_high_water_ms";
constexpr std::string_view kProbeKey = "registrar/probe";

rocksdb::Slice ToSlice(std::string_view s) {
  return rocksdb::Slice(s.data(), s.size());
}
std::string_view ToView(const rocksdb::Slice& s) {
  return std::string_view(s.data(), s.size());
}
std::string RocksMessage(const rocksdb::Status& s) { return s.ToString(); }

bool ParseU64(std::string_view text, uint64_t* out) {
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

// Maps a RocksDB open error to our codes and words.
absl::Status OpenError(const std::string& path, const rocksdb::Status& s) {
  const std::string msg = RocksMessage(s);
  if (s.IsIOError() && absl::StrContains(msg, "lock hold by current process")) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data dir ", path, " is in use by another registrar process (this "
        "process already has it open): ", msg));
  }
  if (s.IsIOError() && absl::StrContains(msg, "While lock file")) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data dir ", path, " is in use by another registrar process: ", msg));
  }
  if (s.IsCorruption() || s.IsPathNotFound()) {  // e.g. a missing MANIFEST
    return absl::DataLossError(absl::StrCat(
        "data dir ", path, " is corrupted; RocksDB says: ", msg));
  }
  return absl::FailedPreconditionError(
      absl::StrCat("cannot open data dir ", path, ": ", msg));
}

absl::Status NotOurs(const std::string& path, std::string_view why) {
  return absl::FailedPreconditionError(
      absl::StrCat(path, " is not a Registrar data directory; refusing to "
                   "use it (", AsAbsl(why), "; nothing was changed)"));
}

enum class DirState { kFresh, kExisting };

// Files RocksDB writes while creating a database before CURRENT exists (a
// database without CURRENT and without WAL or SST files holds no data).
bool IsCreationLeftover(const std::string& name) {
  auto starts = [&](std::string_view p) { return name.rfind(p, 0) == 0; };
  auto ends = [&](std::string_view sfx) {
    return name.size() >= sfx.size() &&
           name.compare(name.size() - sfx.size(), sfx.size(), sfx) == 0;
  };
  return name == "LOCK" || name == "LOG" || name == "IDENTITY" ||
         starts("LOG.old.") || starts("MANIFEST-") || starts("OPTIONS-") ||
         ends(".dbtmp");
}

// Whether `path` is a place to create a new database (missing, empty, or
// holding only what a fresh volume or an interrupted first open leaves), an
// existing RocksDB database, or something else (refused).
absl::StatusOr<DirState> ClassifyDir(const std::string& path, bool create) {
  std::error_code ec;
  fs::file_status st = fs::status(path, ec);
  if (ec && ec != std::errc::no_such_file_or_directory) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot use data dir ", path, ": ", ec.message()));
  }
  if (!fs::exists(st)) {
    if (!create) {
      return absl::NotFoundError(absl::StrCat("data dir ", path,
                                              " does not exist"));
    }
    fs::create_directories(path, ec);
    if (ec) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot create data dir ", path, ": ", ec.message()));
    }
    return DirState::kFresh;
  }
  if (!fs::is_directory(st)) {
    return NotOurs(path, "it is not a directory");
  }
  bool has_current = false;
  std::string foreign;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name == "CURRENT") {
      has_current = true;
    } else if (name == "lost+found" || IsCreationLeftover(name)) {
      // A fresh volume, or a first open that stopped before CURRENT.
    } else if (foreign.empty()) {
      foreign = name;
    }
  }
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read data dir ", path, ": ", ec.message()));
  }
  if (has_current) return DirState::kExisting;
  if (!foreign.empty()) {
    return NotOurs(path, absl::StrCat("it holds files such as \"", foreign,
                                      "\" but no RocksDB database"));
  }
  return DirState::kFresh;
}

uint64_t DirBytes(const std::string& path, uint64_t* wal_bytes) {
  uint64_t total = 0;
  std::error_code ec;
  for (fs::directory_iterator it(path, ec), end; !ec && it != end;
       it.increment(ec)) {
    std::error_code ec2;
    if (!it->is_regular_file(ec2)) continue;
    const uint64_t size = it->file_size(ec2);
    if (ec2) continue;
    total += size;
    if (wal_bytes != nullptr && it->path().extension() == ".log") {
      *wal_bytes += size;
    }
  }
  return total;
}

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
    std::string line = absl::FormatTime("%Y/%m/%d-%H:%M:%E6S ", now,
                                        absl::LocalTimeZone());
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
rocksdb::Options MakeOptions(const RocksDbStoreOptions& o,
                             std::shared_ptr<rocksdb::Cache> cache,
                             std::vector<rocksdb::ColumnFamilyDescriptor>* cfs) {
  rocksdb::Options options;
  options.max_background_jobs = 2;         // the machine has 2 cores
  options.bytes_per_sync = 1 << 20;        // smooth SST writeback
  options.avoid_flush_during_shutdown = false;  // flush unlogged (kNone) data
  // One flush covers every family, so even without a WAL (kNone) the files
  // on disk always hold the same prefix of commits in every family.
  options.atomic_flush = true;
  options.max_total_wal_size = 4 * o.memtable_bytes;
  options.max_bgerror_resume_count = 0;  // see ManualRecoveryListener
  options.listeners.push_back(std::make_shared<ManualRecoveryListener>());
  options.db_write_buffer_size = 4 * o.memtable_bytes;  // all families

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
  cf.compression =
      has(rocksdb::kLZ4Compression) ? rocksdb::kLZ4Compression
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

// The open database and its families; closes them on destruction.
struct RocksDbHandles {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> cf;  // kNumCfs, then any others
  rocksdb::WriteOptions write_options;

  rocksdb::ColumnFamilyHandle* meta() const { return cf[kMeta]; }
  rocksdb::ColumnFamilyHandle* records() const { return cf[kRecords]; }
  rocksdb::ColumnFamilyHandle* events() const { return cf[kEvents]; }
  rocksdb::ColumnFamilyHandle* leases() const { return cf[kLeases]; }

  ~RocksDbHandles() {
    if (db == nullptr) return;
    for (rocksdb::ColumnFamilyHandle* h : cf) {
      if (h != nullptr) db->DestroyColumnFamilyHandle(h).PermitUncheckedError();
    }
    db->Close().PermitUncheckedError();
  }
};

namespace {

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
      read_only
          ? rocksdb::DB::OpenForReadOnly(options, path, cfs, &h->cf, &raw)
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

struct Meta {
  bool present = false;  // the format key exists
  uint64_t format_version = 0;
  uint64_t node_id = 0;
  uint64_t created_ms = 0;
  uint64_t last_revision = 0;
  uint64_t clock_high_water_ms = 0;
};

absl::StatusOr<Meta> ReadMeta(const std::string& path,
                              const RocksDbHandles& h) {
  Meta m;
  if (h.meta() == nullptr) return m;
  auto get = [&](std::string_view key, uint64_t* out,
                 bool* found) -> absl::Status {
    std::string value;
    rocksdb::Status s =
        h.db->Get(rocksdb::ReadOptions(), h.meta(), ToSlice(key), &value);
    if (s.IsNotFound()) {
      *found = false;
      return absl::OkStatus();
    }
    if (!s.ok()) return OpenError(path, s);
    if (!ParseU64(value, out)) {
      return absl::DataLossError(absl::StrCat(
          "data dir ", path, ": meta key ", AsAbsl(key),
          " holds \"", absl::CHexEscape(value), "\", not a number"));
    }
    *found = true;
    return absl::OkStatus();
  };
  bool found = false;
  RETURN_IF_ERROR(get(kFormatVersionKey, &m.format_version, &found));
  if (!found) return m;
  m.present = true;
  RETURN_IF_ERROR(get(kNodeIdKey, &m.node_id, &found));
  if (!found) {
    return absl::DataLossError(
        absl::StrCat("data dir ", path, " has no node_id meta key"));
  }
  RETURN_IF_ERROR(get(kCreatedMsKey, &m.created_ms, &found));
  RETURN_IF_ERROR(get(kLastRevisionKey, &m.last_revision, &found));
  RETURN_IF_ERROR(get(kClockKey, &m.clock_high_water_ms, &found));
  return m;
}

// True when no family holds any key: a database whose creation stopped
// before Registrar wrote its meta keys (safe to adopt).
absl::StatusOr<bool> IsEmptyDb(const std::string& path,
                               const RocksDbHandles& h) {
  for (rocksdb::ColumnFamilyHandle* c : h.cf) {
    if (c == nullptr) continue;
    std::unique_ptr<rocksdb::Iterator> it(
        h.db->NewIterator(rocksdb::ReadOptions(), c));
    it->SeekToFirst();
    if (it->Valid()) return false;
    if (!it->status().ok()) return OpenError(path, it->status());
  }
  return true;
}

// Checks the meta keys of an existing database against what we expect.
absl::Status CheckMeta(const std::string& path, const Meta& m,
                       std::optional<uint32_t> node_id) {
  if (m.format_version > kStoreFormatVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data dir ", path, " has format version ", m.format_version,
        ", written by a newer Registrar; this binary reads versions up to ",
        kStoreFormatVersion, ". Refusing to use it: upgrade registrar"));
  }
  if (m.format_version == 0) {
    return absl::DataLossError(
        absl::StrCat("data dir ", path, " has format version 0"));
  }
  if (node_id.has_value() && m.node_id != *node_id) {
    return absl::FailedPreconditionError(absl::StrCat(
        "data dir ", path, " belongs to node_id ", m.node_id,
        ", started with --node_id=", *node_id,
        "; each node needs its own data dir"));
  }
  return absl::OkStatus();
}

// First (or, with `last`, newest) event revision kept; 0 when none.
absl::StatusOr<uint64_t> EdgeEvent(const std::string& path,
                                    const RocksDbHandles& h,
                                    bool last) {
  if (h.events() == nullptr) return 0;
  std::unique_ptr<rocksdb::Iterator> it(
      h.db->NewIterator(rocksdb::ReadOptions(), h.events()));
  last ? it->SeekToLast() : it->SeekToFirst();
  if (!it->status().ok()) return OpenError(path, it->status());
  if (!it->Valid()) return 0;
  uint64_t rev = 0;
  if (!DecodeRevisionKey(ToView(it->key()), &rev)) {
    return absl::DataLossError(absl::StrCat(
        "data dir ", path, ": event key of ", it->key().size(), " bytes"));
  }
  if (!last) return rev;
  // The newest entry may hold several events: the last is the newest.
  RecordDecoder decoder;
  std::vector<Event> events;
  absl::Status s = decoder.DecodeEvents(rev, ToView(it->value()), &events);
  if (!s.ok()) {
    return absl::DataLossError(
        absl::StrCat("data dir ", path, ": ", s.message()));
  }
  return events.empty() ? rev : events.back().revision;
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

}  // namespace

namespace {

// Writes the meta keys of a new data dir.
absl::Status Initialize(const std::string& path, uint32_t node_id,
                        const RocksDbHandles& h) {
  rocksdb::WriteBatch wb;
  auto put = [&](std::string_view key, uint64_t value) {
    wb.Put(h.meta(), ToSlice(key), std::to_string(value))
        .PermitUncheckedError();
  };
  put(kFormatVersionKey, kStoreFormatVersion);
  put(kNodeIdKey, node_id);
  put(kCreatedMsKey, static_cast<uint64_t>(absl::ToUnixMillis(absl::Now())));
  put(kLastRevisionKey, 0);
  put(kClockKey, 0);
  rocksdb::WriteOptions w;
  w.sync = true;  // whatever the durability: the data dir's identity
  rocksdb::Status s = h.db->Write(w, &wb);
  if (!s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot initialize data dir ", path, ": ", RocksMessage(s)));
  }
  return absl::OkStatus();
}

// What Open and Reopen learn from a database they opened read-write.
struct OpenState {
  Meta meta;
  uint64_t oldest_revision = 0;
};

absl::StatusOr<OpenState> ReadOpenState(const std::string& path,
                                        uint32_t node_id,
                                        const RocksDbHandles& h) {
  OpenState st;
  ASSIGN_OR_RETURN(st.meta, ReadMeta(path, h));
  if (!st.meta.present) return NotOurs(path, "the format key vanished");
  RETURN_IF_ERROR(CheckMeta(path, st.meta, node_id));
  ASSIGN_OR_RETURN(uint64_t first, EdgeEvent(path, h, /*last=*/false));
  ASSIGN_OR_RETURN(uint64_t newest, EdgeEvent(path, h, /*last=*/true));
  if (newest != 0 && newest != st.meta.last_revision) {
    return absl::DataLossError(absl::StrCat(
        "data dir ", path, ": last revision is ", st.meta.last_revision,
        " but the newest event is ", newest));
  }
  st.oldest_revision = first != 0 ? first : st.meta.last_revision + 1;
  return st;
}

}  // namespace

absl::StatusOr<std::unique_ptr<RocksDbStore>> RocksDbStore::Open(
    const RocksDbStoreOptions& given) {
  if (given.path.empty()) {
    return absl::InvalidArgumentError("store: the data dir path is empty");
  }
  ASSIGN_OR_RETURN(DirState state, ClassifyDir(given.path, /*create=*/true));
  // One spelling per directory: RocksDB's in-process lock check compares
  // path strings (and fcntl locks never conflict within a process), so
  // "./data" and "/srv/data" must not look like two directories.
  RocksDbStoreOptions options = given;
  std::error_code ec;
  options.path = fs::canonical(given.path, ec).string();
  if (ec) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot use data dir ", given.path, ": ", ec.message()));
  }
  const std::string& path = options.path;

  bool initialize = state == DirState::kFresh;
  if (state == DirState::kExisting) {
    // Look before touching: a read-only open writes nothing (not even a
    // LOG), so a foreign database is left exactly as it was. It also works
    // while another process holds the dir; the read-write open says so.
    ASSIGN_OR_RETURN(auto ro, OpenDb(path, options, /*read_only=*/true,
                                     /*exists=*/true));
    ASSIGN_OR_RETURN(Meta meta, ReadMeta(path, *ro));
    if (!meta.present) {
      ASSIGN_OR_RETURN(bool empty, IsEmptyDb(path, *ro));
      if (!empty) {
        return NotOurs(path,
                       "it is a RocksDB database without Registrar's "
                       "format key");
      }
      initialize = true;  // an interrupted first open: adopt it
    } else {
      RETURN_IF_ERROR(CheckMeta(path, meta, options.node_id));
    }
  }

  ASSIGN_OR_RETURN(auto h,
                   OpenDb(path, options, /*read_only=*/false,
                          /*exists=*/state == DirState::kExisting));
  if (initialize) RETURN_IF_ERROR(Initialize(path, options.node_id, *h));
  // Authoritative read, under RocksDB's lock.
  ASSIGN_OR_RETURN(OpenState st, ReadOpenState(path, options.node_id, *h));
  return std::unique_ptr<RocksDbStore>(
      new RocksDbStore(options, std::move(h), st.meta.last_revision,
                       st.meta.clock_high_water_ms, st.oldest_revision));
}

RocksDbStore::RocksDbStore(const RocksDbStoreOptions& options,
                           std::unique_ptr<RocksDbHandles> handles,
                           uint64_t last_revision, uint64_t clock_high_water_ms,
                           uint64_t oldest_revision)
    : options_(options),
      durability_(options.durability),
      node_id_(options.node_id),
      h_(std::move(handles)),
      written_revision_(last_revision),
      clock_high_water_ms_(clock_high_water_ms),
      oldest_revision_(oldest_revision),
      committer_(last_revision, [this](const std::vector<WriteBatch*>& group) {
        return Write(group);
      }) {
  h_->write_options = WriteOptionsFor(durability_);
}

RocksDbStore::~RocksDbStore() {
  committer_.Stop();  // submitted batches are written before the close
  absl::MutexLock lock(&db_mu_);
  // Without a WAL the memtables are the only copy: flush them explicitly
  // and wait (RocksDB's own flush on close was seen to race with shutdown
  // after a resumed background error, losing the last commits).
  if (h_ != nullptr && durability_ == Durability::kNone) {
    FlushAndWait(*h_).IgnoreError();
  }
  h_.reset();  // closes the database
}

absl::Status RocksDbStore::Closed() const {
  return absl::UnavailableError(absl::StrCat(
      "store: cannot write: the database in ", path_,
      " is closed after a failed reopen; the server retries about once a second"));
}

absl::Status RocksDbStore::Broken() const {
  return absl::UnavailableError(absl::StrCat(
      "store: cannot write: the data dir ", path_, " holds a commit that was "
      "reported as failed; restart registrar to load it"));
}

absl::Status RocksDbStore::Commit(WriteBatch* batch) {
  return committer_.Commit(batch);
}

void RocksDbStore::Submit(WriteBatch* batch, CommitDone done) {
  if (defers_commits()) {
    committer_.Submit(batch, std::move(done));
  } else {
    std::move(done)(committer_.Commit(batch));
  }
}

absl::Status RocksDbStore::Write(const std::vector<WriteBatch*>& group) {
  if (broken_.load()) return Broken();
  absl::ReaderMutexLock lock(&db_mu_);
  if (h_ == nullptr) return Closed();
  rocksdb::WriteBatch wb;
  std::string record_value, event_value;
  char id_key[kIdKeySize];
  char rev_key[kRevisionKeySize];
  const uint64_t old_clock = clock_high_water_ms_.load();
  uint64_t clock = old_clock;
  uint64_t last_revision = 0;
  // Put/Delete on an in-memory batch fail only past 4 GiB (max_bytes unset).
  for (const WriteBatch* b : group) {
    for (const Event& e : b->events) {
      EncodeIdKey(e.record.id, id_key);
      EncodeRecordValue(e.record, &record_value);
      wb.Put(h_->records(), rocksdb::Slice(id_key, kIdKeySize), record_value)
          .PermitUncheckedError();
      last_revision = std::max(last_revision, e.revision);
    }
    // The batch's events in one entry: its revisions are consecutive.
    if (!b->events.empty()) {
      EncodeEventBatchValue(b->events, &event_value);
      EncodeRevisionKey(b->events.front().revision, rev_key);
      wb.Put(h_->events(), rocksdb::Slice(rev_key, kRevisionKeySize),
             event_value)
          .PermitUncheckedError();
    }
    for (const Id128& id : b->drop_records) {
      EncodeIdKey(id, id_key);
      wb.Delete(h_->records(), rocksdb::Slice(id_key, kIdKeySize))
          .PermitUncheckedError();
    }
    for (const LeaseView& l : b->put_leases) {
      EncodeIdKey(l.id, id_key);
      EncodeLeaseValue(l, &record_value);
      wb.Put(h_->leases(), rocksdb::Slice(id_key, kIdKeySize), record_value)
          .PermitUncheckedError();
    }
    for (const Id128& id : b->delete_leases) {
      EncodeIdKey(id, id_key);
      wb.Delete(h_->leases(), rocksdb::Slice(id_key, kIdKeySize))
          .PermitUncheckedError();
    }
    clock = std::max(clock, b->clock_high_water_ms);
  }
  if (last_revision != 0) {
    wb.Put(h_->meta(), ToSlice(kLastRevisionKey),
           std::to_string(last_revision))
        .PermitUncheckedError();
  }
  if (clock != old_clock) {
    wb.Put(h_->meta(), ToSlice(kClockKey), std::to_string(clock))
        .PermitUncheckedError();
  }
  if (wb.Count() == 0) return absl::OkStatus();
  rocksdb::Status s = h_->db->Write(h_->write_options, &wb);
  if (!s.ok()) {
    ++write_failures_;
    return absl::UnavailableError(
        absl::StrCat("store: cannot write: ", RocksMessage(s)));
  }
  if (last_revision != 0) written_revision_.store(last_revision);
  clock_high_water_ms_.store(clock);
  return absl::OkStatus();
}

uint64_t RocksDbStore::ApproximateRecordCount() {
  absl::ReaderMutexLock lock(&db_mu_);
  if (h_ == nullptr) return 0;
  uint64_t n = 0;
  return h_->db->GetIntProperty(h_->records(), "rocksdb.estimate-num-keys", &n)
             ? n
             : 0;
}

absl::StatusOr<StoreMeta> RocksDbStore::Load(
    const std::function<void(RecordView&&)>& on_record) {
  absl::ReaderMutexLock lock(&db_mu_);
  if (h_ == nullptr) return Closed();
  // One sequential pass: no block-cache pollution, large readahead.
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;
  ro.readahead_size = 4 << 20;
  ro.adaptive_readahead = true;
  RecordDecoder decoder;
  {
    std::unique_ptr<rocksdb::Iterator> it(
        h_->db->NewIterator(ro, h_->records()));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      RecordView r;
      Id128 id;
      if (!DecodeIdKey(ToView(it->key()), &id)) {
        return absl::DataLossError(absl::StrCat(
            "store: record key of ", it->key().size(), " bytes in ", path_));
      }
      absl::Status s = decoder.DecodeRecord(id, ToView(it->value()), &r);
      if (!s.ok()) {
        return absl::DataLossError(absl::StrCat("store: record ",
                                                FormatUuid(id), " in ", path_,
                                                ": ", s.message()));
      }
      on_record(std::move(r));
    }
    if (!it->status().ok()) {
      return absl::DataLossError(absl::StrCat(
          "store: cannot read records in ", path_, ": ",
          RocksMessage(it->status())));
    }
  }
  StoreMeta meta;
  meta.revision = committer_.last_revision();
  meta.clock_high_water_ms = clock_high_water_ms_.load();
  std::unique_ptr<rocksdb::Iterator> it(h_->db->NewIterator(ro, h_->leases()));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    LeaseView l;
    Id128 id;
    if (!DecodeIdKey(ToView(it->key()), &id)) {
      return absl::DataLossError(absl::StrCat(
          "store: lease key of ", it->key().size(), " bytes in ", path_));
    }
    absl::Status s = decoder.DecodeLease(id, ToView(it->value()), &l);
    if (!s.ok()) {
      return absl::DataLossError(absl::StrCat(
          "store: lease ", FormatUuid(id), " in ", path_, ": ", s.message()));
    }
    meta.leases.push_back(std::move(l));
  }
  if (!it->status().ok()) {
    return absl::DataLossError(absl::StrCat("store: cannot read leases in ",
                                            path_, ": ",
                                            RocksMessage(it->status())));
  }
  return meta;
}

namespace {
absl::Status TooOld(uint64_t from, uint64_t oldest) {
  return absl::OutOfRangeError(absl::StrCat(
      "start_revision ", from, " is older than the retained history; the "
      "oldest available revision is ", oldest));
}
}  // namespace

absl::Status RocksDbStore::ReadEvents(uint64_t from, size_t limit,
                                      std::vector<Event>* out) {
  if (from < oldest_revision_.load()) {
    return TooOld(from, oldest_revision_.load());
  }
  if (limit == 0) return absl::OkStatus();
  absl::ReaderMutexLock lock(&db_mu_);
  if (h_ == nullptr) return Closed();
  const size_t start_size = out->size();
  RecordDecoder decoder;
  std::unique_ptr<rocksdb::Iterator> it(
      h_->db->NewIterator(rocksdb::ReadOptions(), h_->events()));
  char key[kRevisionKeySize];
  EncodeRevisionKey(from, key);
  // The entry holding `from` is the last one keyed at or before it.
  it->SeekForPrev(rocksdb::Slice(key, kRevisionKeySize));
  if (it->status().ok() && !it->Valid()) {
    it->Seek(rocksdb::Slice(key, kRevisionKeySize));
  }
  uint64_t expected = from;
  std::vector<Event> entry;
  for (; it->Valid() && limit > 0; it->Next()) {
    uint64_t first = 0;
    if (!DecodeRevisionKey(ToView(it->key()), &first)) {
      out->resize(start_size);
      return absl::DataLossError(absl::StrCat(
          "store: event key of ", it->key().size(), " bytes in ", path_));
    }
    entry.clear();
    absl::Status s = decoder.DecodeEvents(first, ToView(it->value()), &entry);
    if (!s.ok()) {
      out->resize(start_size);
      return absl::DataLossError(
          absl::StrCat("store: in ", path_, ": ", s.message()));
    }
    for (Event& e : entry) {
      if (e.revision < expected) continue;
      if (e.revision != expected) {
        // Revisions are gap-free, so a gap means CompactEvents removed
        // events while we read (it raised oldest_revision_ first).
        out->resize(start_size);
        return TooOld(from, std::max(oldest_revision_.load(), from + 1));
      }
      if (limit == 0) break;
      out->push_back(std::move(e));
      ++expected;
      --limit;
    }
  }
  if (!it->status().ok()) {
    out->resize(start_size);
    return absl::UnavailableError(absl::StrCat(
        "store: cannot read events: ", RocksMessage(it->status())));
  }
  return absl::OkStatus();
}

uint64_t RocksDbStore::OldestRevision() { return oldest_revision_.load(); }

uint64_t RocksDbStore::LastRevision() { return committer_.last_revision(); }

absl::Status RocksDbStore::CompactEvents(uint64_t below) {
  below = std::min(below, committer_.last_revision() + 1);
  uint64_t oldest = oldest_revision_.load();
  do {
    if (below <= oldest) return absl::OkStatus();
  } while (!oldest_revision_.compare_exchange_weak(oldest, below));
  absl::ReaderMutexLock lock(&db_mu_);
  if (h_ == nullptr) return Closed();
  // Not synced: if it is lost in a crash the events come back, which is
  // harmless (the next CompactEvents deletes them again).
  rocksdb::WriteOptions w = h_->write_options;
  w.sync = false;
  // Entries hold a batch of events each. One that straddles `below` is
  // rewritten under key `below` without its older events, in the same
  // write as the deletion, so what is on disk is exactly what is readable.
  const std::string begin = RevisionKey(0);
  const std::string end = RevisionKey(below);
  rocksdb::WriteBatch wb;
  {
    std::unique_ptr<rocksdb::Iterator> it(
        h_->db->NewIterator(rocksdb::ReadOptions(), h_->events()));
    it->SeekForPrev(end);
    if (!it->status().ok()) {
      return absl::UnavailableError(absl::StrCat(
          "store: cannot read events: ", RocksMessage(it->status())));
    }
    uint64_t first = 0;
    if (it->Valid() && DecodeRevisionKey(ToView(it->key()), &first) &&
        first < below) {
      RecordDecoder decoder;
      std::vector<Event> events;
      RETURN_IF_ERROR(decoder.DecodeEvents(first, ToView(it->value()), &events));
      std::erase_if(events, [below](const Event& e) { return e.revision < below; });
      if (!events.empty()) {
        std::string value;
        EncodeEventBatchValue(events, &value);
        wb.Put(h_->events(), end, value).PermitUncheckedError();
      }
    }
  }
  wb.DeleteRange(h_->events(), begin, end).PermitUncheckedError();
  rocksdb::Status s = h_->db->Write(w, &wb);
  // Ask for the deleted range to be compacted away in the background: an
  // append-only family's old files are otherwise rarely rewritten.
  rocksdb::Slice b(begin), e(end);
  rocksdb::experimental::SuggestCompactRange(h_->db.get(), h_->events(), &b,
                                             &e)
      .PermitUncheckedError();
  return absl::OkStatus();
}

void RocksDbStore::SetEventListener(EventListener listener) {
  committer_.SetListener(std::move(listener));
}

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
  const int64_t now_ns = absl::GetCurrentTimeNanos();
  if (failures == failures_at_good_probe_.load() &&
      now_ns - good_probe_ns_.load() < kProbeInterval) {
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
  const absl::Time now = absl::Now();
  if (!recovery_failure_.ok() &&
      now - recovery_attempt_ < options_.recovery_interval) {
    return recovery_failure_;
  }
  recovery_attempt_ = now;
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
        absl::StrAppend(&msg, "; RocksDB cannot resume after this error: "
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
        "is ", st->meta.last_revision, " but only ", written_revision_.load(),
        " were committed (a write that failed had reached the disk); "
        "restart registrar to load it"));
  }
  return Probe();
}

StoreDiskUsage RocksDbStore::disk_usage() {
  StoreDiskUsage u;
  uint64_t wal = 0;
  u.dir_bytes = DirBytes(path_, &wal);
  u.wal_bytes = wal;
  absl::ReaderMutexLock lock(&db_mu_);
  if (h_ == nullptr) return u;
  rocksdb::DB* db = h_->db.get();
  u.sst_bytes = AggregatedProperty(db, "rocksdb.total-sst-files-size");
  u.live_sst_bytes = AggregatedProperty(db, "rocksdb.live-sst-files-size");
  u.records_sst_bytes =
      CfProperty(db, h_->records(), "rocksdb.live-sst-files-size");
  u.events_sst_bytes =
      CfProperty(db, h_->events(), "rocksdb.live-sst-files-size");
  u.memtable_bytes = AggregatedProperty(db, "rocksdb.cur-size-all-mem-tables");
  return u;
}

absl::Status RocksDbStore::Flush() {
  absl::ReaderMutexLock lock(&db_mu_);
  if (h_ == nullptr) return Closed();
  return FlushAndWait(*h_);
}

absl::Status RocksDbStore::CompactAll() {
  RETURN_IF_ERROR(Flush());
  absl::ReaderMutexLock lock(&db_mu_);
  if (h_ == nullptr) return Closed();
  rocksdb::CompactRangeOptions c;
  c.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
  for (int i = 0; i < kNumCfs; ++i) {
    rocksdb::Status s = h_->db->CompactRange(c, h_->cf[i], nullptr, nullptr);
    if (!s.ok()) {
      return absl::UnavailableError(
          absl::StrCat("store: cannot compact: ", RocksMessage(s)));
    }
  }
  return absl::OkStatus();
}

std::string RocksDbStore::DebugStats(bool rocksdb_stats) {
  const GroupCommitter::Stats c = committer_.stats();
  const StoreDiskUsage u = disk_usage();
  std::string out = absl::StrFormat(
      "store: rocksdb at %s, node_id %d, durability %s\n"
      "revisions: last %d, oldest event %d\n"
      "commits: %d batches in %d writes; %d reopens after write errors\n"
      "disk: %d bytes in the dir (SST %d, of which records %d, events %d; "
      "WAL %d); memtables %d bytes\n",
      path_, node_id_, AsAbsl(DurabilityName(durability_)),
      committer_.last_revision(), oldest_revision_.load(), c.batches,
      c.writes, reopens_.load(), u.dir_bytes, u.live_sst_bytes,
      u.records_sst_bytes, u.events_sst_bytes, u.wal_bytes, u.memtable_bytes);
  if (rocksdb_stats) {
    absl::ReaderMutexLock lock(&db_mu_);
    for (int i = 0; h_ != nullptr && i < kNumCfs; ++i) {
      std::string s;
      if (h_->db->GetProperty(h_->cf[i], "rocksdb.stats", &s)) {
        absl::StrAppend(&out, "--- ", kCfNames[i], " ---\n", s);
      }
    }
  }
  return out;
}

absl::StatusOr<DataDirInfo> RocksDbStore::Inspect(const std::string& path) {
  ASSIGN_OR_RETURN(DirState state, ClassifyDir(path, /*create=*/false));
  if (state == DirState::kFresh) {
    return NotOurs(path, "it holds no database");
  }
  RocksDbStoreOptions options;
  options.path = path;
  options.block_cache_bytes = 8 << 20;
  ASSIGN_OR_RETURN(auto h, OpenDb(path, options, /*read_only=*/true,
                                  /*exists=*/true));
  ASSIGN_OR_RETURN(Meta meta, ReadMeta(path, *h));
  if (!meta.present) {
    return NotOurs(path, "it is a RocksDB database without Registrar's "
                         "format key");
  }
  RETURN_IF_ERROR(CheckMeta(path, meta, std::nullopt));

  DataDirInfo info;
  info.path = path;
  info.format_version = static_cast<uint32_t>(meta.format_version);
  info.node_id = static_cast<uint32_t>(meta.node_id);
  info.created_ms = static_cast<int64_t>(meta.created_ms);
  info.last_revision = meta.last_revision;
  info.clock_high_water_ms = meta.clock_high_water_ms;

  rocksdb::ReadOptions ro;
  ro.fill_cache = false;
  ro.readahead_size = 4 << 20;
  RecordDecoder decoder;
  if (h->records() != nullptr) {
    std::unique_ptr<rocksdb::Iterator> it(h->db->NewIterator(ro, h->records()));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      Kind kind;
      State st;
      RETURN_IF_ERROR(decoder.DecodeKindState(ToView(it->value()), &kind, &st));
      ++info.records;
      ++info.records_by[static_cast<int>(kind)][static_cast<int>(st)];
    }
    if (!it->status().ok()) return OpenError(path, it->status());
  }
  if (h->leases() != nullptr) {
    std::unique_ptr<rocksdb::Iterator> it(h->db->NewIterator(ro, h->leases()));
    for (it->SeekToFirst(); it->Valid(); it->Next()) ++info.leases;
    if (!it->status().ok()) return OpenError(path, it->status());
  }
  ASSIGN_OR_RETURN(info.oldest_event_revision, EdgeEvent(path, *h, false));
  ASSIGN_OR_RETURN(info.newest_event_revision, EdgeEvent(path, *h, true));
  std::vector<rocksdb::ColumnFamilyHandle*> cfs;
  for (auto* c : h->cf) {
    if (c != nullptr) {
      info.sst_bytes += CfProperty(h->db.get(), c,
                                   "rocksdb.live-sst-files-size");
    }
  }
  info.dir_bytes = DirBytes(path, &info.wal_bytes);
  return info;
}

std::string DataDirInfo::ToString() const {
  static constexpr const char* kStateNames[4] = {"unspecified", "live",
                                                 "released", "expired"};
  std::string out = absl::StrFormat(
      "data dir: %s\nformat version: %d\nnode_id: %d\ncreated: %s\n"
      "last revision: %d\nclock high water: %s (%d ms)\nrecords: %d\n",
      path, format_version, node_id,
      absl::FormatTime(absl::FromUnixMillis(created_ms), absl::UTCTimeZone()),
      last_revision,
      absl::FormatTime(absl::FromUnixMillis(
                           static_cast<int64_t>(clock_high_water_ms)),
                       absl::UTCTimeZone()),
      clock_high_water_ms, records);
  for (int k = 0; k < kNumKinds; ++k) {
    for (int s = 0; s < 4; ++s) {
      if (records_by[k][s] == 0) continue;
      absl::StrAppendFormat(&out, "  %s %s: %d\n",
                            AsAbsl(KindName(static_cast<Kind>(k))),
                            kStateNames[s], records_by[k][s]);
    }
  }
  absl::StrAppendFormat(&out, "leases: %d\n", leases);
  if (oldest_event_revision == 0) {
    absl::StrAppend(&out, "events: none kept\n");
  } else {
    absl::StrAppendFormat(&out, "events: %d (revisions %d..%d)\n",
                          newest_event_revision - oldest_event_revision + 1,
                          oldest_event_revision, newest_event_revision);
  }
  absl::StrAppendFormat(&out, "disk: %d bytes (SST %d, WAL %d)\n", dir_bytes,
                        sst_bytes, wal_bytes);
  return out;
}

}  // namespace registrar
