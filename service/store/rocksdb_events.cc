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

// The event log (the events family): reading it for Watch, compacting it.

namespace registrar {
namespace fs = std::filesystem;

using rocksdb_internal::RocksMessage;
using rocksdb_internal::ToView;

namespace {
absl::Status TooOld(uint64_t from, uint64_t oldest) {
  return absl::OutOfRangeError(
      absl::StrCat("start_revision ", from,
                   " is older than the retained history; the "
                   "oldest available revision is ",
                   oldest));
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
    return absl::UnavailableError(absl::StrCat("store: cannot read events: ",
                                               RocksMessage(it->status())));
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
      return absl::UnavailableError(absl::StrCat("store: cannot read events: ",
                                                 RocksMessage(it->status())));
    }
    uint64_t first = 0;
    if (it->Valid() && DecodeRevisionKey(ToView(it->key()), &first) &&
        first < below) {
      RecordDecoder decoder;
      std::vector<Event> events;
      RETURN_IF_ERROR(
          decoder.DecodeEvents(first, ToView(it->value()), &events));
      std::erase_if(events,
                    [below](const Event& e) { return e.revision < below; });
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
  rocksdb::experimental::SuggestCompactRange(h_->db.get(), h_->events(), &b, &e)
      .PermitUncheckedError();
  return absl::OkStatus();
}

void RocksDbStore::SetEventListener(EventListener listener) {
  committer_.SetListener(std::move(listener));
}

}  // namespace registrar
