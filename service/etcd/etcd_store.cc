// EtcdStore: creation, loading, the event log and health. The commit path
// is in etcd_commit.cc.

#include "service/etcd/etcd_store.h"

#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "service/common/absl_compat.h"
#include "service/common/status_macros.h"
#include "service/common/text.h"
#include "service/etcd/sync_call.h"
#include "service/store/record_codec.h"

namespace registrar::etcd {
namespace {

absl::Status BadOption(std::string_view name, std::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat(AsAbsl(name), ": ", AsAbsl(why)));
}

std::string NewWriterId() {
  absl::BitGen gen;
  return absl::StrFormat("%d-%016x", getpid(), absl::Uniform<uint64_t>(gen));
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdStore>> EtcdStore::Create(
    std::shared_ptr<Connection> conn, EtcdStoreOptions options) {
  if (conn == nullptr) return BadOption("connection", "is null");
  if (!options.prefix.empty() && options.prefix.back() == '/') {
    return BadOption("etcd prefix", "must not end with '/'");
  }
  if (options.max_txn_ops < 4) {
    return BadOption("etcd max_txn_ops", "must be at least 4");
  }
  if (options.max_request_bytes < 4096) {
    return BadOption("etcd max_request_bytes", "must be at least 4096");
  }
  if (options.commit_timeout <= absl::ZeroDuration()) {
    return BadOption("etcd commit_timeout", "must be positive");
  }
  if (options.txn_attempt_timeout < absl::Milliseconds(100) ||
      options.txn_attempt_timeout > options.commit_timeout) {
    return BadOption("etcd txn_attempt_timeout",
                     "must be within 100ms and commit_timeout");
  }
  if (options.load_page_size <= 0) {
    return BadOption("etcd load_page_size", "must be positive");
  }
  if (options.commit_linger < absl::ZeroDuration() ||
      options.commit_linger > absl::Seconds(1)) {
    return BadOption("etcd commit_linger", "must be within 0 and 1s");
  }
  return std::unique_ptr<EtcdStore>(
      new EtcdStore(std::move(conn), std::move(options)));
}

EtcdStore::EtcdStore(std::shared_ptr<Connection> conn, EtcdStoreOptions options)
    : conn_(std::move(conn)),
      options_(std::move(options)),
      layout_(options_.prefix),
      kv_(conn_),
      blocking_kv_(conn_),
      writer_id_(NewWriterId()) {}

EtcdStore::~EtcdStore() { Stop(); }

void EtcdStore::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (writer_.joinable()) writer_.join();
  if (completer_.joinable()) completer_.join();
}

int64_t EtcdStore::loaded_at() const {
  absl::MutexLock lock(&mu_);
  return loaded_at_;
}

void EtcdStore::NoteCommitted(const std::vector<Event>& events,
                              uint64_t revision) {
  if (!events.empty()) revision = std::max(revision, events.back().revision);
  {
    absl::MutexLock lock(&mu_);
    if (revision <= last_revision_) return;  // held already (a replay)
    for (const Event& e : events) {
      if (e.revision <= last_revision_) continue;
      // The tail is served by index: it must stay gap-free.
      if (!tail_.empty() && e.revision != tail_.back().revision + 1) {
        tail_.clear();
      }
      tail_.push_back(e);
    }
    last_revision_ = revision;
    while (tail_.size() > options_.tail_events ||
           (!tail_.empty() && tail_.front().revision < oldest_)) {
      tail_.pop_front();
    }
  }
  absl::MutexLock lock(&listener_mu_);
  if (listener_ && !events.empty()) listener_(events);
}

absl::StatusOr<EtcdStore::MetaKeys> EtcdStore::ReadMeta() {
  pb::RangeRequest req;
  req.set_key(layout_.MetaPrefix());
  req.set_range_end(PrefixEnd(layout_.MetaPrefix()));
  absl::StatusOr<pb::RangeResponse> meta_keys = blocking_kv_.Range(req);
  if (!meta_keys.ok()) return meta_keys.status();
  MetaKeys m;
  m.at = meta_keys->header().revision();
  for (const mvccpb::KeyValue& kv : meta_keys->kvs()) {
    if (kv.key() == layout_.RevisionKey()) {
      RevisionValue v;
      RETURN_IF_ERROR(DecodeRevisionValue(kv.value(), &v));
      m.revision = v.revision;
      m.mod = kv.mod_revision();
    } else if (kv.key() == layout_.ClockKey()) {
      RETURN_IF_ERROR(DecodeNumber(kv.key(), kv.value(), &m.clock_high_water));
    } else if (kv.key() == layout_.OldestKey()) {
      RETURN_IF_ERROR(DecodeNumber(kv.key(), kv.value(), &m.oldest));
    }
  }
  return m;
}

absl::StatusOr<StoreMeta> EtcdStore::Load(
    const std::function<void(RecordView&&)>& on_record) {
  // The meta keys fix the etcd revision every other key is read at.
  ASSIGN_OR_RETURN(const MetaKeys m, ReadMeta());
  const int64_t at = m.at;
  StoreMeta meta;
  meta.revision = m.revision;
  meta.clock_high_water_ms = m.clock_high_water;

  // Records and leases, in pages, at that revision. Pages arrive one after
  // another (each starts the next), so the decoder is used by one thread at
  // a time.
  RecordDecoder decoder;
  absl::Status bad;
  auto scan =
      [&](const std::string& prefix,
          const std::function<absl::Status(Id128, std::string_view)>& each)
      -> absl::Status {
    Kv::RangeAllOptions o;
    o.key = prefix;
    o.range_end = PrefixEnd(prefix);
    o.revision = at;
    o.page_size = options_.load_page_size;
    absl::StatusOr<int64_t> done = SyncCall<int64_t>([&](auto cb) {
      kv_.RangeAll(
          o,
          [&](std::vector<mvccpb::KeyValue> kvs, int64_t) {
            for (const mvccpb::KeyValue& kv : kvs) {
              if (!bad.ok()) return;
              Id128 id;
              if (!EtcdLayout::IdOfKey(kv.key(), &id)) {
                bad = absl::DataLossError(
                    absl::StrCat("etcd key ", LogSafe(kv.key()),
                                 " is not <prefix>/<32 hex>"));
                return;
              }
              bad = each(id, kv.value());
            }
          },
          std::move(cb));
    });
    if (!done.ok()) return done.status();
    return bad;
  };
  if (absl::Status s = scan(layout_.RecordPrefix(),
                            [&](Id128 id, std::string_view value) {
                              RecordView r;
                              absl::Status d =
                                  decoder.DecodeRecord(id, value, &r);
                              if (d.ok()) on_record(std::move(r));
                              return d;
                            });
      !s.ok()) {
    return s;
  }
  if (absl::Status s = scan(layout_.LeasePrefix(),
                            [&](Id128 id, std::string_view value) {
                              LeaseView l;
                              absl::Status d =
                                  decoder.DecodeLease(id, value, &l);
                              if (d.ok()) meta.leases.push_back(std::move(l));
                              return d;
                            });
      !s.ok()) {
    return s;
  }

  last_mod_ = m.mod;
  absl::MutexLock lock(&mu_);
  last_revision_ = meta.revision;
  clock_high_water_ = meta.clock_high_water_ms;
  loaded_at_ = at;
  oldest_ = std::min(std::max<uint64_t>(m.oldest, 1), meta.revision + 1);
  tail_.clear();
  return meta;
}

absl::StatusOr<uint64_t> EtcdStore::TakeOver(WriteFence fence) {
  ASSIGN_OR_RETURN(const MetaKeys m, ReadMeta());
  absl::MutexLock lock(&mu_);
  if (writer_started_ || !fenced_.ok()) {
    return absl::FailedPreconditionError(
        "this follower's store was asked to write before; it must reload");
  }
  if (m.revision != last_revision_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "this follower noted revision ", last_revision_, " but etcd holds ",
        m.revision, "; it must catch up or reload"));
  }
  // The writer thread starts with the first batch, after this: it reads
  // these without the lock.
  last_mod_ = m.mod;
  clock_high_water_ = m.clock_high_water;
  oldest_ = std::max(oldest_, std::min<uint64_t>(m.oldest, m.revision + 1));
  write_fence_ = std::make_shared<const WriteFence>(std::move(fence));
  return m.clock_high_water;
}

uint64_t EtcdStore::ApproximateRecordCount() {
  pb::RangeRequest req;
  req.set_key(layout_.RecordPrefix());
  req.set_range_end(PrefixEnd(layout_.RecordPrefix()));
  req.set_count_only(true);
  req.set_serializable(true);
  absl::StatusOr<pb::RangeResponse> r = blocking_kv_.Range(req);
  return r.ok() ? static_cast<uint64_t>(r->count()) : 0;
}

absl::Status EtcdStore::ReadEvents(uint64_t from, size_t limit,
                                   std::vector<Event>* out) {
  uint64_t last;
  {
    absl::MutexLock lock(&mu_);
    if (from < oldest_) {
      return absl::OutOfRangeError(absl::StrCat(
          "revision ", from, " is compacted; oldest available revision is ",
          oldest_));
    }
    last = last_revision_;
    if (from > last || limit == 0) return absl::OkStatus();
    if (!tail_.empty() && from >= tail_.front().revision) {
      for (size_t i = from - tail_.front().revision;
           i < tail_.size() && limit > 0; ++i, --limit) {
        out->push_back(tail_[i]);
      }
      return absl::OkStatus();
    }
  }
  return ReadEventsFromEtcd(from, limit, last, out);
}

absl::Status EtcdStore::ReadEventsFromEtcd(uint64_t from, size_t limit,
                                           uint64_t last,
                                           std::vector<Event>* out) {
  // The entry holding `from` is the first whose key (its last revision) is
  // >= from; every entry holds at least one event.
  pb::RangeRequest req;
  req.set_key(layout_.EventKey(from));
  req.set_range_end(layout_.EventKey(last + 1));
  req.set_limit(static_cast<int64_t>(std::min<size_t>(limit, 1000)));
  absl::StatusOr<pb::RangeResponse> r = blocking_kv_.Range(req);
  if (!r.ok()) return r.status();
  RecordDecoder decoder;
  std::vector<Event> events;
  uint64_t expect = from;
  for (const mvccpb::KeyValue& kv : r->kvs()) {
    uint64_t first = 0;
    events.clear();
    if (absl::Status s = EventsEntryFirstRevision(kv.value(), &first);
        !s.ok()) {
      return s;
    }
    if (absl::Status s =
            decoder.DecodeEvents(first, EventsEntryBatch(kv.value()), &events);
        !s.ok()) {
      return s;
    }
    for (Event& e : events) {
      if (e.revision < expect) continue;
      if (e.revision != expect) {
        return absl::DataLossError(absl::StrCat(
            "etcd event log skips from revision ", expect, " to ", e.revision));
      }
      out->push_back(std::move(e));
      ++expect;
      if (--limit == 0 || expect > last) return absl::OkStatus();
    }
  }
  if (expect == from) {
    // Compacted between the check and the read.
    absl::MutexLock lock(&mu_);
    if (from < oldest_) {
      return absl::OutOfRangeError(absl::StrCat(
          "revision ", from, " is compacted; oldest available revision is ",
          oldest_));
    }
    return absl::DataLossError(
        absl::StrCat("etcd event log has no entry for revision ", from));
  }
  return absl::OkStatus();
}

uint64_t EtcdStore::OldestRevision() {
  absl::MutexLock lock(&mu_);
  return oldest_;
}

uint64_t EtcdStore::LastRevision() {
  absl::MutexLock lock(&mu_);
  return last_revision_;
}

absl::Status EtcdStore::CompactEvents(uint64_t below) {
  absl::MutexLock compacting(&compact_mu_);
  {
    absl::MutexLock lock(&mu_);
    below = std::min(below, last_revision_ + 1);
    if (below <= oldest_) return absl::OkStatus();
  }
  // Entries whose last revision is below `below`; one that straddles it
  // stays (ReadEvents skips its older events).
  pb::TxnRequest txn;
  *txn.add_success() = DeleteOp(layout_.EventKey(0), layout_.EventKey(below));
  *txn.add_success() = PutOp(layout_.OldestKey(), absl::StrCat(below));
  absl::StatusOr<pb::TxnResponse> r = blocking_kv_.Txn(txn);
  if (!r.ok()) return r.status();
  absl::MutexLock lock(&mu_);
  oldest_ = std::max(oldest_, below);
  while (!tail_.empty() && tail_.front().revision < oldest_) tail_.pop_front();
  return absl::OkStatus();
}

void EtcdStore::SetEventListener(EventListener listener) {
  absl::MutexLock lock(&listener_mu_);
  listener_ = std::move(listener);
}

void EtcdStore::SetEventListenerAndAnnounce(EventListener listener) {
  absl::MutexLock lock(&listener_mu_);
  listener_ = std::move(listener);
  // A commit or NoteCommitted raises last_revision_ before it calls the
  // listener (under this lock): one that raised it past what we read calls
  // the listener after us.
  std::vector<Event> newest(1);
  newest[0].revision = LastRevision();
  if (listener_ && newest[0].revision > 0) listener_(newest);
}

absl::Status EtcdStore::CheckWritable() {
  if (const std::shared_ptr<const WriteFence> fence = write_fence();
      fence->check) {
    if (absl::Status s = fence->check(); !s.ok()) {
      return Fence(std::string(s.message()), s.code());
    }
  }
  {
    absl::MutexLock lock(&mu_);
    if (!fenced_.ok()) return fenced_;
    if (absl::Now() - writable_at_ < options_.probe_interval) {
      return writable_;
    }
  }
  // A linearizable read needs the leader and a quorum, as a Txn does.
  pb::RangeRequest req;
  req.set_key(layout_.RevisionKey());
  req.set_count_only(true);
  absl::StatusOr<pb::RangeResponse> r = blocking_kv_.Range(req);
  absl::MutexLock lock(&mu_);
  writable_ = r.ok() ? absl::OkStatus()
                     : absl::UnavailableError(absl::StrCat(
                           "etcd cannot take writes: ", r.status().message()));
  writable_at_ = absl::Now();
  return writable_;
}

CommitStats EtcdStore::commit_stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace registrar::etcd
