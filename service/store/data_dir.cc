#include <algorithm>
#include <charconv>
#include <filesystem>
#include <optional>
#include <system_error>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"
#include "service/common/absl_compat.h"
#include "service/common/field_error.h"
#include "service/common/status_macros.h"
#include "service/store/record_codec.h"
#include "service/store/rocksdb_internal.h"
#include "service/store/rocksdb_store.h"

// The data dir: what counts as one, its meta keys, and reading one without
// changing it (Inspect). See rocksdb_store.h for the layout.

namespace registrar {
namespace rocksdb_internal {
namespace fs = std::filesystem;
namespace {

bool ParseU64(std::string_view text, uint64_t* out) {
  if (text.empty()) return false;
  auto [end, ec] =
      std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size();
}

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

}  // namespace

absl::Status NotOurs(const std::string& path, std::string_view why) {
  return absl::FailedPreconditionError(
      absl::StrCat(path,
                   " is not a Registrar data directory; refusing to "
                   "use it (",
                   AsAbsl(why), "; nothing was changed)"));
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
      return absl::NotFoundError(
          absl::StrCat("data dir ", path, " does not exist"));
    }
    fs::create_directories(path, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot create data dir ", path, ": ", ec.message()));
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
          "data dir ", path, ": meta key ", AsAbsl(key), " holds \"",
          absl::CHexEscape(value), "\", not a number"));
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
    return WithLimit(absl::FailedPreconditionError(absl::StrCat(
                         "data dir ", path, " belongs to node_id ", m.node_id,
                         ", this server is node_id ", *node_id,
                         "; each node needs its own data dir")),
                     Limit::kNodeId);
  }
  return absl::OkStatus();
}

// First (or, with `last`, newest) event revision kept; 0 when none.
absl::StatusOr<uint64_t> EdgeEvent(const std::string& path,
                                   const RocksDbHandles& h, bool last) {
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

// Writes the meta keys of a new data dir.
absl::Status Initialize(const std::string& path, uint32_t node_id,
                        absl::Time now, const RocksDbHandles& h) {
  rocksdb::WriteBatch wb;
  auto put = [&](std::string_view key, uint64_t value) {
    wb.Put(h.meta(), ToSlice(key), std::to_string(value))
        .PermitUncheckedError();
  };
  put(kFormatVersionKey, kStoreFormatVersion);
  put(kNodeIdKey, node_id);
  put(kCreatedMsKey, static_cast<uint64_t>(absl::ToUnixMillis(now)));
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

}  // namespace rocksdb_internal

using rocksdb_internal::CfProperty;
using rocksdb_internal::CheckMeta;
using rocksdb_internal::ClassifyDir;
using rocksdb_internal::DirBytes;
using rocksdb_internal::DirState;
using rocksdb_internal::EdgeEvent;
using rocksdb_internal::Meta;
using rocksdb_internal::NotOurs;
using rocksdb_internal::OpenDb;
using rocksdb_internal::OpenError;
using rocksdb_internal::ReadMeta;
using rocksdb_internal::ToView;

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
    return NotOurs(path,
                   "it is a RocksDB database without Registrar's "
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
      info.sst_bytes +=
          CfProperty(h->db.get(), c, "rocksdb.live-sst-files-size");
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
      absl::FormatTime(
          absl::FromUnixMillis(static_cast<int64_t>(clock_high_water_ms)),
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
