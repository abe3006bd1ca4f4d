#include "service/store/rocksdb_store.h"

#include <algorithm>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "rocksdb/db.h"
#include "rocksdb/experimental.h"
#include "rocksdb/write_batch.h"
#include "service/common/absl_compat.h"
#include "service/common/field_error.h"
#include "service/common/status_macros.h"
#include "service/common/text.h"
#include "service/id/id.h"
#include "service/store/record_codec.h"
#include "service/store/revision_witness.h"
#include "service/store/rocksdb_internal.h"

// Opening the store, the commit path (each group of the GroupCommitter is
// one rocksdb::WriteBatch), Load, and what the store reports about itself.

namespace registrar {
namespace fs = std::filesystem;

using rocksdb_internal::AggregatedProperty;
using rocksdb_internal::CfProperty;
using rocksdb_internal::CheckMeta;
using rocksdb_internal::ClassifyDir;
using rocksdb_internal::DamagedStore;
using rocksdb_internal::DirBytes;
using rocksdb_internal::DirState;
using rocksdb_internal::FlushAndWait;
using rocksdb_internal::Initialize;
using rocksdb_internal::IsEmptyDb;
using rocksdb_internal::kCfNames;
using rocksdb_internal::kClockKey;
using rocksdb_internal::KeepDamagedCopy;
using rocksdb_internal::kLastRevisionKey;
using rocksdb_internal::kNumCfs;
using rocksdb_internal::kTagKeyKey;
using rocksdb_internal::Meta;
using rocksdb_internal::NotOurs;
using rocksdb_internal::OpenDb;
using rocksdb_internal::OpenState;
using rocksdb_internal::ReadMeta;
using rocksdb_internal::ReadOpenState;
using rocksdb_internal::RocksMessage;
using rocksdb_internal::SkipLostRevisions;
using rocksdb_internal::ToSlice;
using rocksdb_internal::ToView;
using rocksdb_internal::WriteOptionsFor;

namespace {
// The smallest memtable a small volume gets (see Open).
constexpr uint64_t kMinMemtableBytes = 256 << 10;

const Clock& ClockOf(const RocksDbStoreOptions& o) {
  static const SystemClock* const system = new SystemClock();
  return o.clock != nullptr ? *o.clock : *system;
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
    return absl::FailedPreconditionError(
        absl::StrCat("cannot use data dir ", given.path, ": ", ec.message()));
  }
  const std::string& path = options.path;
  // Recovering from a full disk reopens the database, which needs about a
  // memtable of free space (Recover). On a small volume that could never
  // be free: size the memtables to the volume (a 32nd of it, 256 KiB at
  // least) so that freeing a little space is enough.
  std::string sizing_note;
  if (const fs::space_info space = fs::space(path, ec);
      !ec && space.capacity > 0) {
    const uint64_t fit =
        std::max<uint64_t>(kMinMemtableBytes, space.capacity / 32);
    if (options.memtable_bytes > fit) {
      sizing_note = absl::StrCat(
          "data dir ", path, " is on a volume of ", space.capacity,
          " bytes: memtables sized to ", fit, " bytes instead of ",
          options.memtable_bytes,
          " so that recovery after a full disk needs only that much free");
      options.memtable_bytes = fit;
    }
  }

  bool initialize = state == DirState::kFresh;
  // Revisions acknowledged but missing after RocksDB's replay, when the
  // operator accepted their loss: the store continues after them.
  uint64_t skip_to = 0;
  std::string note;
  if (state == DirState::kExisting) {
    // Look before touching: a read-only open writes nothing (not even a
    // LOG), so a foreign or damaged database is left exactly as it was. It
    // also works while another process holds the dir; the read-write open
    // says so.
    auto ro = OpenDb(path, options, /*read_only=*/true, /*exists=*/true);
    if (!ro.ok()) {
      if (ro.status().code() != absl::StatusCode::kDataLoss) {
        return ro.status();
      }
      return DamagedStore(path, std::string(ro.status().message()));
    }
    ASSIGN_OR_RETURN(Meta meta, ReadMeta(path, **ro));
    // Written only once Registrar's meta keys are in: a witness means the
    // dir was initialized, even when its meta keys are gone with the WAL.
    ASSIGN_OR_RETURN(std::optional<uint64_t> witness,
                     RevisionWitness::Read(path));
    if (!meta.present && !witness.has_value()) {
      ASSIGN_OR_RETURN(bool empty, IsEmptyDb(path, **ro));
      if (!empty) {
        return NotOurs(path,
                       "it is a RocksDB database without Registrar's "
                       "format key");
      }
      initialize = true;  // an interrupted first open: adopt it
    } else if (meta.present) {
      RETURN_IF_ERROR(CheckMeta(path, meta, options.node_id));
    }
    std::string damage;
    if (witness.has_value() &&
        (!meta.present || *witness > meta.last_revision)) {
      damage = meta.present
                   ? absl::StrCat("revisions ", meta.last_revision + 1, "..",
                                  *witness, " were acknowledged (", path, "/",
                                  kRevisionWitnessFile,
                                  ") but the WAL replays only up to revision ",
                                  meta.last_revision)
                   : absl::StrCat(
                         "the WAL replays none of the data dir's "
                         "own keys (format version, node_id) and so "
                         "none of the revisions up to ",
                         *witness, " that were acknowledged (", path, "/",
                         kRevisionWitnessFile, ")");
    } else if (meta.present) {
      // A MANIFEST that lost the creation of our families makes RocksDB
      // skip their WAL entries: the meta keys survive, the records do not.
      std::vector<std::string> missing;
      for (int i = 0; i < kNumCfs; ++i) {
        if ((*ro)->cf[i] == nullptr) missing.push_back(kCfNames[i]);
      }
      if (!missing.empty()) {
        damage = absl::StrCat(
            "the column families ", absl::StrJoin(missing, ", "),
            " are missing from the MANIFEST, with everything in them "
            "(revisions up to ",
            meta.last_revision, " were acknowledged)");
      }
    }
    if (!damage.empty()) {
      if (!options.accept_data_loss) return DamagedStore(path, damage);
      ro->reset();
      ASSIGN_OR_RETURN(std::string copy,
                       KeepDamagedCopy(path, ClockOf(options).Now()));
      initialize = !meta.present;
      skip_to = std::max(witness.value_or(0), meta.last_revision);
      note = absl::StrCat("data dir ", path, ": ", damage,
                          "; the loss was accepted (accept_data_loss): "
                          "revisions continue after ",
                          skip_to,
                          ", the event history restarts there, and the "
                          "damaged files were copied to ",
                          copy);
    }
  }

  ASSIGN_OR_RETURN(auto h, OpenDb(path, options, /*read_only=*/false,
                                  /*exists=*/state == DirState::kExisting));
  if (initialize) {
    RETURN_IF_ERROR(
        Initialize(path, options.node_id, ClockOf(options).Now(), *h));
  }
  if (skip_to != 0) RETURN_IF_ERROR(SkipLostRevisions(path, skip_to, *h));
  // Authoritative read, under RocksDB's lock.
  ASSIGN_OR_RETURN(OpenState st, ReadOpenState(path, options.node_id, *h));
  // From here on the witness holds at least every acknowledged revision.
  ASSIGN_OR_RETURN(std::unique_ptr<RevisionWitness> witness,
                   RevisionWitness::Open(path, st.meta.last_revision));
  auto store = std::unique_ptr<RocksDbStore>(
      new RocksDbStore(options, std::move(h), st.meta.last_revision,
                       st.meta.clock_high_water_ms, st.oldest_revision));
  store->recovery_note_ = std::move(note);
  store->sizing_note_ = std::move(sizing_note);
  if (options.durability != Durability::kNone) {
    store->witness_ = std::move(witness);
  }
  return store;
}

RocksDbStore::RocksDbStore(const RocksDbStoreOptions& options,
                           std::unique_ptr<RocksDbHandles> handles,
                           uint64_t last_revision, uint64_t clock_high_water_ms,
                           uint64_t oldest_revision)
    : options_(options),
      clock_(ClockOf(options)),
      durability_(options.durability),
      node_id_(options.node_id),
      h_(std::move(handles)),
      written_revision_(last_revision),
      clock_high_water_ms_(clock_high_water_ms),
      oldest_revision_(oldest_revision),
      metrics_link_(std::make_shared<StoreMetricsLink>()),
      committer_(
          last_revision,
          [this](const std::vector<WriteBatch*>& group) {
            return Write(group);
          },
          options.commit_thread_nice) {
  h_->write_options = WriteOptionsFor(durability_);
  absl::MutexLock lock(&metrics_link_->mu);
  metrics_link_->store = this;
}

std::shared_ptr<prometheus::Collectable> RocksDbStore::MetricsCollectable() {
  return MakeStoreCollectable(metrics_link_);
}

RocksDbStore::~RocksDbStore() {
  {
    absl::MutexLock lock(&metrics_link_->mu);  // waits for a scrape
    metrics_link_->store = nullptr;
  }
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
  return absl::UnavailableError(
      absl::StrCat("store: cannot write: the database in ", path_,
                   " is closed after a failed reopen; the server retries about "
                   "once a second"));
}

absl::Status RocksDbStore::Broken() const {
  return absl::UnavailableError(
      absl::StrCat("store: cannot write: the data dir ", path_,
                   " holds a commit that was "
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
    wb.Put(h_->meta(), ToSlice(kLastRevisionKey), std::to_string(last_revision))
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
  if (last_revision != 0) {
    written_revision_.store(last_revision);
    if (witness_ != nullptr) {
      // Not fdatasync'ed per group (that doubled the cost of a commit):
      // the page cache survives a process crash, and the witness is synced
      // at most once a second, so only a power cut within that second can
      // hide a damaged WAL from it. It is never ahead of the WAL.
      const absl::Time now = clock_.Now();
      const bool sync = durability_ == Durability::kFsync &&
                        now - witness_synced_ >= absl::Seconds(1);
      absl::Status w = witness_->Write(last_revision, sync);
      if (sync && w.ok()) witness_synced_ = now;
      if (!w.ok()) {
        // The group is in RocksDB but cannot be acknowledged: as after a
        // failed fsync, stop taking writes until a restart loads it.
        ++write_failures_;
        broken_.store(true);
        return w;
      }
    }
  }
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
      return absl::DataLossError(absl::StrCat("store: cannot read records in ",
                                              path_, ": ",
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

absl::Status RocksDbStore::AdoptTagKey(const std::vector<std::string>& held,
                                       const std::string& signing) {
  absl::ReaderMutexLock lock(&db_mu_);
  if (h_ == nullptr) return Closed();
  std::string remembered;
  rocksdb::Status s = h_->db->Get(rocksdb::ReadOptions(), h_->meta(),
                                  ToSlice(kTagKeyKey), &remembered);
  if (!s.ok() && !s.IsNotFound()) {
    return absl::UnavailableError(absl::StrCat(
        "data dir ", path_,
        ": cannot read the tag key fingerprint: ", RocksMessage(s)));
  }
  if (s.ok() && std::find(held.begin(), held.end(), remembered) == held.end()) {
    return WithLimit(
        absl::FailedPreconditionError(absl::StrCat(
            "data dir ", path_, " holds IDs signed with the tag key ",
            LogSafe(remembered), ", which this server does not hold (it holds ",
            absl::StrJoin(held, ", "),
            "): every ID issued before would be answered FORGED. Start with "
            "the key file of that key; to change keys, rotate (keep the old "
            "key listed in the file until its IDs are gone)")),
        Limit::kTagKey);
  }
  if (s.ok() && remembered == signing) return absl::OkStatus();
  rocksdb::WriteOptions w;
  w.sync = true;  // whatever the durability, like the data dir's identity
  s = h_->db->Put(w, h_->meta(), ToSlice(kTagKeyKey), signing);
  if (!s.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "data dir ", path_,
        ": cannot record the tag key fingerprint: ", RocksMessage(s)));
  }
  return absl::OkStatus();
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
      committer_.last_revision(), oldest_revision_.load(), c.batches, c.writes,
      reopens_.load(), u.dir_bytes, u.live_sst_bytes, u.records_sst_bytes,
      u.events_sst_bytes, u.wal_bytes, u.memtable_bytes);
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

}  // namespace registrar
