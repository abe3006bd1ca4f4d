#ifndef REGISTRAR_SERVICE_STORE_ROCKSDB_STORE_H_
#define REGISTRAR_SERVICE_STORE_ROCKSDB_STORE_H_

// The default store (--store=rocksdb): one RocksDB database in a data
// directory that belongs to one Registrar node.
//
// Layout: four column families, so that each kind of data can be iterated,
// deleted and measured on its own (Load reads records without stepping over
// events; CompactEvents range-deletes events without leaving tombstones in
// the records' key space; disk usage is reported per family). One WAL and
// atomic flush keep them consistent with each other.
//   default  meta: "registrar/format_version", "registrar/node_id",
//            "registrar/created_ms", "registrar/last_revision",
//            "registrar/clock_high_water_ms" (decimal text, readable with
//            `ldb`), "registrar/probe" (CheckWritable's test write)
//   records  16-byte ID (hi, lo big-endian) -> StoredRecord
//   events   8-byte big-endian revision -> StoredEvent
//   leases   16-byte lease ID -> StoredLease
//
// Commits go through a GroupCommitter: each group of concurrent batches is
// ONE rocksdb::WriteBatch, written with one WAL sync (kFsync), no sync (kOs)
// or no WAL at all (kNone; memtables are flushed on a clean close). A failed
// write applies nothing (RocksDB batches are atomic); after a failed WAL or
// flush write RocksDB refuses all writes until CheckWritable recovers it.
//
// Why recovery reopens the database (RocksDB 7.8 as packaged by Debian):
//  - DB::Resume() after a failed WAL append can leave the WAL writer in its
//    error state (reported upstream as facebook/rocksdb#11643): the next
//    write then fails again, and Debian builds RocksDB with assertions on,
//    so it aborts the process instead
//    (WritableFileWriter::AssertFalseAndGetStatusForPrevError; seen here
//    when the WAL that failed was the fresh one after a memtable switch).
//  - RocksDB's own info-log writer has the same assertion, so a full disk
//    could abort the server through a log line: the LOG file is therefore
//    written by our own logger, which ignores write errors.
//  - I/O errors other than "no space" are fatal to a RocksDB instance anyway.
// So with a WAL, CheckWritable closes and reopens the database (replaying
// its WAL; a torn last record is dropped); without one (kNone) it uses
// DB::Resume(), which then writes no WAL and is safe. (After a Resume,
// DB::Flush(wait=true) was seen to return before flushing, so flushes wait
// on RocksDB's flush counters as well.)
//
// Load streams records with one sequential scan: 10M records (25 bytes each
// on disk after compaction) load in about 3 s of CPU on the 2-core dev box.
//
// Thread-safety: every method may be called from any thread, except that
// Load is called once, before any Commit, and the destructor runs after all
// other calls have returned.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/common/clock.h"
#include "service/model/kind.h"
#include "service/store/group_commit.h"
#include "service/store/store.h"
#include "service/store/store_metrics.h"

namespace rocksdb {
class ColumnFamilyHandle;
class DB;
}  // namespace rocksdb

namespace registrar {

struct RocksDbHandles;  // the open database (rocksdb_internal.h)
class RevisionWitness;  // revision_witness.h

// Version of the data-dir format written by this binary. Open refuses a data
// dir with a newer version (written by a newer Registrar).
inline constexpr uint32_t kStoreFormatVersion = 1;

struct RocksDbStoreOptions {
  std::string path;  // the data directory
  Durability durability = Durability::kFsync;
  uint32_t node_id = 0;                 // must match the data dir's
  size_t block_cache_bytes = 32 << 20;  // shared by all column families
  size_t memtable_bytes = 64 << 20;     // per column family; all together
                                        // are capped at 4x this. Lowered
                                        // on a small volume: see Open.
  // After a failed recovery attempt (CheckWritable), further calls answer
  // with that failure for this long instead of trying again: each attempt
  // may close, reopen and flush the database.
  absl::Duration recovery_interval = absl::Seconds(1);
  // The group-commit thread's nice value (GroupCommitter); 0 leaves it.
  int commit_thread_nice = 0;
  // Time for the recovery throttle, the probe interval and the data dir's
  // creation time; null means the system clock. Must outlive the store.
  const Clock* clock = nullptr;
  // The operator's override for a damaged data dir (registrar
  // --accept_data_loss): instead of refusing it (see Open), keep a copy of
  // its WAL and MANIFEST files in <path>/damaged-<unix ms>/, serve what
  // RocksDB recovers up to the damage, and continue revisions after the
  // newest acknowledged one (so none is handed out twice; the event
  // history restarts there). recovery_note() then says what was lost.
  bool accept_data_loss = false;
};

// What `registrarctl inspect` shows about a data dir.
struct DataDirInfo {
  std::string path;
  uint32_t format_version = 0;
  uint32_t node_id = 0;
  int64_t created_ms = 0;  // Unix ms when the dir was created
  uint64_t last_revision = 0;
  uint64_t clock_high_water_ms = 0;
  uint64_t records = 0;
  // records_by[kind][state], kind and state as their enum values.
  uint64_t records_by[kNumKinds][4] = {};
  uint64_t leases = 0;
  uint64_t oldest_event_revision = 0;  // 0 when no events are kept
  uint64_t newest_event_revision = 0;
  uint64_t sst_bytes = 0;  // live SST files, all families
  uint64_t wal_bytes = 0;  // *.log files
  uint64_t dir_bytes = 0;  // every file in the directory

  // Several lines of "name: value", for people.
  std::string ToString() const;
};

// Bytes a live store uses; see RocksDbStore::disk_usage.
struct StoreDiskUsage {
  uint64_t sst_bytes = 0;          // rocksdb.total-sst-files-size, all families
  uint64_t live_sst_bytes = 0;     // rocksdb.live-sst-files-size, all families
  uint64_t records_sst_bytes = 0;  // live SSTs of the records family only
  uint64_t events_sst_bytes = 0;   // live SSTs of the events family only
  uint64_t wal_bytes = 0;          // WAL files
  uint64_t memtable_bytes = 0;     // rocksdb.cur-size-all-mem-tables (not disk)
  uint64_t dir_bytes = 0;          // every file in the directory
};

// What Backup wrote, or Restore copied.
struct BackupInfo {
  std::string dir;
  uint64_t revision = 0;  // the copy holds exactly the revisions up to this
  uint64_t records = 0;
  uint64_t bytes = 0;
};

class RocksDbStore final : public Store {
 public:
  // Opens the data dir at options.path, creating it (and the database) when
  // it is missing or empty (`lost+found`, as on a fresh volume, and the
  // files of a creation that stopped before RocksDB's CURRENT are fine).
  // The path is made canonical, so two spellings of one directory are one.
  // Errors, all naming the path; nothing is ever deleted or rewritten:
  //  - FailedPrecondition "… is not a Registrar data directory; refusing to
  //    use it" when it holds other files, or a RocksDB database without
  //    Registrar's format key;
  //  - FailedPrecondition "data dir belongs to node_id N, started with
  //    --node_id=M" when the node IDs differ;
  //  - FailedPrecondition when the format version is newer than
  //    kStoreFormatVersion;
  //  - FailedPrecondition "… is in use by another registrar process" when
  //    another process (or another store in this one) has it open;
  //  - DataLoss with RocksDB's message when the database is corrupt (a
  //    checksum error in a WAL, MANIFEST or table file), and DataLoss
  //    "… is damaged: revisions R+1..W were acknowledged but are missing"
  //    when RocksDB replayed less than the revision witness holds (a
  //    deleted or truncated WAL or MANIFEST); both name the WAL and
  //    MANIFEST files and leave every file untouched. With
  //    options.accept_data_loss the store opens instead (see there);
  //  - FailedPrecondition for other I/O errors (e.g. permissions).
  static absl::StatusOr<std::unique_ptr<RocksDbStore>> Open(
      const RocksDbStoreOptions& options);

  // Reads a data dir without changing it (read-only RocksDB open, which
  // writes no file and works while a server has the dir open; it then sees
  // the state as of the server's last WAL write, and keeps every table file
  // it needs open, so the server's compactions do not disturb it).
  // NotFound when `path` does not exist; the same refusals as Open for
  // directories that are not Registrar's. Counting records reads them all
  // (about 3 s of CPU per 10M).
  static absl::StatusOr<DataDirInfo> Inspect(const std::string& path);

  // Closes the database; with Durability::kNone, flushes memtables first
  // and waits for the flush.
  ~RocksDbStore() override;

  // Store.
  // Within one batch, record puts come before drop_records and lease puts
  // before delete_leases, so a drop or delete wins over a put of the same
  // key. clock_high_water_ms is kept as the maximum ever committed.
  absl::Status Commit(WriteBatch* batch) override;
  absl::StatusOr<StoreMeta> Load(
      const std::function<void(RecordView&&)>& on_record) override;
  absl::Status ReadEvents(uint64_t from, size_t limit,
                          std::vector<Event>* out) override;
  uint64_t OldestRevision() override;
  uint64_t LastRevision() override;
  // `below` is capped at LastRevision() + 1: events not yet written cannot
  // be forgotten. Range-deletes the events and asks RocksDB to compact that
  // range in the background.
  absl::Status CompactEvents(uint64_t below) override;
  void SetEventListener(EventListener listener) override;
  // OK when a small test write succeeds (at most one per second: a good
  // answer is reused for a second unless a Commit failed meanwhile).
  // Otherwise recovers: with a WAL (kFsync, kOs) by closing and reopening
  // the database, but only when the disk has room for it (else it says how
  // much is free and changes nothing); with kNone by DB::Resume().
  // Unavailable with the cause while writes still fail; while the database
  // is closed for a failed reopen, every other call is Unavailable too.
  // Recovery is tried at most once per options.recovery_interval (between
  // attempts the last failure is returned), so a health check may call
  // this on every tick.
  // If the reopened database holds more revisions than were committed (a
  // write that reported failure had reached the disk, e.g. its fsync
  // failed), the store stops taking writes for good: Unavailable saying
  // "restart registrar" (which then loads that state).
  absl::Status CheckWritable() override;
  Durability durability() const override { return durability_; }
  std::string_view name() const override { return "rocksdb"; }
  // With a WAL (fsync, os) a commit makes a write(2) and, in fsync mode,
  // waits for the disk: Submit queues for the group-commit writer thread,
  // which writes many callers' batches at once. Without a WAL (none) it
  // commits on the caller's thread. (os mode measured 40-43k against
  // 34-36k Issue calls/s at 64 callers, queued against on the caller's or
  // the commit pool's thread; none mode the same either way.)
  void Submit(WriteBatch* batch, CommitDone done) override;
  bool defers_commits() const override {
    return durability_ != Durability::kNone;
  }

  CommitStats commit_stats() const override { return committer_.stats(); }
  uint64_t ApproximateRecordCount() override;
  const std::string& path() const { return path_; }
  // Times CheckWritable reopened the database successfully.
  uint64_t reopens() const { return reopens_.load(); }
  // Times CheckWritable tried to recover, successfully or not.
  uint64_t recovery_attempts() const { return recovery_attempts_.load(); }
  uint32_t node_id() const { return node_id_; }
  // Empty, or what an accepted loss (options.accept_data_loss) cost and
  // where the damaged files were kept: for the server's log.
  const std::string& recovery_note() const { return recovery_note_; }
  // The data dir remembers the fingerprint of the tag key that signed its
  // IDs (KeyRing::Fingerprint of the signing key at the last start).
  // FAILED_PRECONDITION (tagged Limit::kTagKey) when that key is not among
  // `held` (the fingerprints of every key this server holds): every ID
  // issued before would be answered FORGED. Otherwise records `signing`
  // (durably) and returns OK. A data dir that remembers none (new, or
  // written before this check) takes `signing`.
  absl::Status AdoptTagKey(const std::vector<std::string>& held,
                           const std::string& signing);

  // Empty, or how the store was sized to a small volume: for the log.
  const std::string& sizing_note() const { return sizing_note_; }
  // The memtable size in use (options.memtable_bytes, or less on a small
  // volume).
  size_t memtable_bytes() const { return options_.memtable_bytes; }

  // Bytes on disk (and in memtables) now. For bytes per record, Flush()
  // first: until then recent commits are only in the WAL and memtables.
  StoreDiskUsage disk_usage();

  // Online backup: writes a copy of the store into `dir` (which must not
  // exist), consistent at one revision: every change committed before the
  // call is in it, a change committed meanwhile is in it wholly or not at
  // all. A RocksDB checkpoint: the memtables are flushed, table files are
  // hard-linked when `dir` is on the same filesystem (else copied), the
  // WAL is copied; then every file is fsynced. The result is a data dir
  // that Restore (or a server started on it) can use. Commits continue
  // meanwhile. AlreadyExists when `dir` exists; Unavailable when the
  // checkpoint fails.
  absl::StatusOr<BackupInfo> Backup(const std::string& dir);

  // Copies the backup (or any data dir no server writes to) at `backup`
  // into `data_dir`, which must be missing or empty (a `lost+found` is
  // fine): FailedPrecondition otherwise, and when the backup belongs to
  // another node_id; the same refusals as Inspect for a `backup` that is
  // not a Registrar data dir. Nothing is written to `data_dir` unless the
  // checks pass.
  static absl::StatusOr<BackupInfo> Restore(const std::string& backup,
                                            const std::string& data_dir,
                                            uint32_t node_id);

  // RocksDB's figures for an operator, read now (store_metrics.h).
  StoreOperatorStats operator_stats();
  // A prometheus collectable of operator_stats(), for the server's
  // Metrics::AddCollectable; safe to scrape after the store is gone.
  std::shared_ptr<prometheus::Collectable> MetricsCollectable();

  // Writes memtables to SST files and waits.
  absl::Status Flush();
  // Compacts every family fully and waits (benchmarks: steady-state size).
  absl::Status CompactAll();

  // A few lines of counters; with `rocksdb_stats`, RocksDB's own
  // "rocksdb.stats" for each family as well.
  std::string DebugStats(bool rocksdb_stats = false);

 private:
  RocksDbStore(const RocksDbStoreOptions& options,
               std::unique_ptr<RocksDbHandles> handles, uint64_t last_revision,
               uint64_t clock_high_water_ms, uint64_t oldest_revision);

  absl::Status Write(const std::vector<WriteBatch*>& group)
      ABSL_LOCKS_EXCLUDED(db_mu_);
  // The test write of CheckWritable.
  absl::Status Probe() ABSL_SHARED_LOCKS_REQUIRED(db_mu_);
  absl::Status Reopen() ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  // One recovery attempt (CheckWritable).
  absl::Status Recover(const absl::Status& probe)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(db_mu_);
  absl::Status Closed() const;
  absl::Status Broken() const;

  const RocksDbStoreOptions options_;
  const Clock& clock_;
  const std::string& path_ = options_.path;
  const Durability durability_;
  const uint32_t node_id_;
  // Shared by every user of the database; exclusive only to reopen it.
  mutable absl::Mutex db_mu_;
  // Null only while a reopen has failed (see CheckWritable).
  std::unique_ptr<RocksDbHandles> h_ ABSL_GUARDED_BY(db_mu_);
  // The last revision written to RocksDB, updated inside Write (under
  // a shared db_mu_, by one leader at a time; a reopen, holding db_mu_
  // exclusively, sees exactly what RocksDB acknowledged).
  std::atomic<uint64_t> written_revision_;
  // Set when a reopened database disagrees with written_revision_.
  std::atomic<bool> broken_{false};
  // Written only by the group-commit leader (one at a time).
  std::atomic<uint64_t> clock_high_water_ms_;
  // Raised by CompactEvents before it deletes, so that readers never see a
  // half-deleted range as history.
  std::atomic<uint64_t> oldest_revision_;
  std::atomic<uint64_t> probe_count_{0};
  // CheckWritable skips its probe for kProbeInterval after a good one,
  // unless a write failed since (write_failures_ moved).
  static constexpr absl::Duration kProbeInterval = absl::Seconds(1);
  std::atomic<uint64_t> write_failures_{0};
  std::atomic<uint64_t> failures_at_good_probe_{0};
  std::atomic<int64_t> good_probe_ns_{0};
  std::atomic<uint64_t> reopens_{0};
  std::atomic<uint64_t> recovery_attempts_{0};
  // The last recovery attempt's failure and when it was made (OK: the last
  // attempt succeeded, or none was made).
  absl::Status recovery_failure_ ABSL_GUARDED_BY(db_mu_);
  absl::Time recovery_attempt_ ABSL_GUARDED_BY(db_mu_) = absl::InfinitePast();
  std::string recovery_note_;
  std::string sizing_note_;
  const std::shared_ptr<StoreMetricsLink> metrics_link_;
  // Written by the group-commit leader after each successful write (one at
  // a time; not in kNone, which has no WAL to check).
  std::unique_ptr<RevisionWitness> witness_;
  absl::Time witness_synced_ = absl::InfinitePast();  // by the leader too
  GroupCommitter committer_;
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_STORE_ROCKSDB_STORE_H_
