#ifndef REGISTRAR_SERVICE_STORE_ROCKSDB_INTERNAL_H_
#define REGISTRAR_SERVICE_STORE_ROCKSDB_INTERNAL_H_

// Private to the RocksDB store (rocksdb_*.cc, data_dir.cc): the open
// database's handles, the data dir's layout and meta keys, and the helpers
// the store's files share. Not for use outside service/store.
//
//   rocksdb_open.cc      RocksDB options, our info logger, opening a database,
//                        flushing and waiting
//   data_dir.cc          what a data dir is: classification, meta keys,
//                        creation, the state read at open, Inspect
//   rocksdb_store.cc     Open, the commit path (group-commit writer), Load,
//                        disk usage and statistics
//   rocksdb_events.cc    the event log: reading and compacting it
//   rocksdb_recovery.cc  writability: the probe, reopen after write errors
//   wal_check.cc         damage found at open: the refusal, the override

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"
#include "rocksdb/slice.h"
#include "rocksdb/status.h"
#include "service/store/revision_witness.h"
#include "service/store/rocksdb_store.h"

namespace registrar {

// The open database and its families; closes them on destruction.
struct RocksDbHandles {
  std::unique_ptr<rocksdb::DB> db;
  std::vector<rocksdb::ColumnFamilyHandle*> cf;  // kNumCfs, then any others
  rocksdb::WriteOptions write_options;

  rocksdb::ColumnFamilyHandle* meta() const;
  rocksdb::ColumnFamilyHandle* records() const;
  rocksdb::ColumnFamilyHandle* events() const;
  rocksdb::ColumnFamilyHandle* leases() const;

  ~RocksDbHandles();
};

// Between the store and its metrics collectable (store_metrics.h): the
// store clears `store` when it closes, so a late scrape finds nothing.
struct StoreMetricsLink {
  absl::Mutex mu;
  RocksDbStore* store ABSL_GUARDED_BY(mu) = nullptr;
};

namespace rocksdb_internal {

// Column families, in the order of RocksDbHandles::cf.
inline constexpr int kMeta = 0, kRecords = 1, kEvents = 2, kLeases = 3,
                     kNumCfs = 4;
inline constexpr const char* kCfNames[kNumCfs] = {"default", "records",
                                                  "events", "leases"};

inline constexpr std::string_view kFormatVersionKey =
    "registrar/format_version";
inline constexpr std::string_view kNodeIdKey = "registrar/node_id";
inline constexpr std::string_view kCreatedMsKey = "registrar/created_ms";
inline constexpr std::string_view kLastRevisionKey = "registrar/last_revision";
inline constexpr std::string_view kClockKey = "registrar/clock_high_water_ms";
inline constexpr std::string_view kProbeKey = "registrar/probe";
inline constexpr std::string_view kTagKeyKey = "registrar/tag_key";

inline rocksdb::Slice ToSlice(std::string_view s) {
  return rocksdb::Slice(s.data(), s.size());
}
inline std::string_view ToView(const rocksdb::Slice& s) {
  return std::string_view(s.data(), s.size());
}
inline std::string RocksMessage(const rocksdb::Status& s) {
  return s.ToString();
}

// --- rocksdb_open.cc ---

// Maps a RocksDB open error to our codes and words.
absl::Status OpenError(const std::string& path, const rocksdb::Status& s);

// Opens the database at `path` with our families (plus any others it has,
// as RocksDB requires), read-only or not. `exists`: there is a database to
// open; else one is created. A read-only open pads families the database
// lacks with null.
absl::StatusOr<std::unique_ptr<RocksDbHandles>> OpenDb(
    const std::string& path, const RocksDbStoreOptions& o, bool read_only,
    bool exists);

// Flushes every family and waits until no flush is pending or running.
absl::Status FlushAndWait(const RocksDbHandles& h);

rocksdb::WriteOptions WriteOptionsFor(Durability d);
uint64_t AggregatedProperty(rocksdb::DB* db, const char* name);
uint64_t CfProperty(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                    const char* name);

// --- data_dir.cc ---

absl::Status NotOurs(const std::string& path, std::string_view why);

enum class DirState { kFresh, kExisting };

// Whether `path` is a place to create a new database (missing, empty, or
// holding only what a fresh volume or an interrupted first open leaves), an
// existing RocksDB database, or something else (refused). With `create`, a
// missing directory is created.
absl::StatusOr<DirState> ClassifyDir(const std::string& path, bool create);

// Bytes of every regular file in `path`; the *.log files' sum to
// `*wal_bytes` when given.
uint64_t DirBytes(const std::string& path, uint64_t* wal_bytes);

struct Meta {
  bool present = false;  // the format key exists
  uint64_t format_version = 0;
  uint64_t node_id = 0;
  uint64_t created_ms = 0;
  uint64_t last_revision = 0;
  uint64_t clock_high_water_ms = 0;
};

absl::StatusOr<Meta> ReadMeta(const std::string& path, const RocksDbHandles& h);

// True when no family holds any key: a database whose creation stopped
// before Registrar wrote its meta keys (safe to adopt).
absl::StatusOr<bool> IsEmptyDb(const std::string& path,
                               const RocksDbHandles& h);

// Checks the meta keys of an existing database against what we expect.
absl::Status CheckMeta(const std::string& path, const Meta& m,
                       std::optional<uint32_t> node_id);

// First (or, with `last`, newest) event revision kept; 0 when none.
absl::StatusOr<uint64_t> EdgeEvent(const std::string& path,
                                   const RocksDbHandles& h, bool last);

// Writes the meta keys of a new data dir (created_ms from `now`).
absl::Status Initialize(const std::string& path, uint32_t node_id,
                        absl::Time now, const RocksDbHandles& h);

// What Open and Reopen learn from a database they opened read-write.
struct OpenState {
  Meta meta;
  uint64_t oldest_revision = 0;
};

absl::StatusOr<OpenState> ReadOpenState(const std::string& path,
                                        uint32_t node_id,
                                        const RocksDbHandles& h);

// --- wal_check.cc ---

inline constexpr std::string_view kRevisionWitnessName = kRevisionWitnessFile;

// "000012.log (2113 bytes), CURRENT (16 bytes), MANIFEST-000005 (…)".
std::string DescribeLogFiles(const std::string& path);

// DataLoss: the data dir is damaged (`what`), naming its WAL and MANIFEST
// files, saying that nothing was changed and how to accept the loss.
absl::Status DamagedStore(const std::string& path, const std::string& what);

// Copies the WAL, MANIFEST, CURRENT, OPTIONS and witness files of `path`
// into a new `path`/damaged-<unix ms>/ before an accepted loss lets RocksDB
// rewrite them; returns that directory.
absl::StatusOr<std::string> KeepDamagedCopy(const std::string& path,
                                            absl::Time now);

// Records that revisions up to `revision` are used (some of them lost), so
// that no revision is ever handed out twice, and drops the event history,
// which has a hole now.
absl::Status SkipLostRevisions(const std::string& path, uint64_t revision,
                               const RocksDbHandles& h);

}  // namespace rocksdb_internal
}  // namespace registrar

#endif  // REGISTRAR_SERVICE_STORE_ROCKSDB_INTERNAL_H_
