// EtcdStore's commit path: the writer thread, group building within etcd's
// limits, the fenced Txn, and resolving a Txn whose outcome is unknown.

#include <algorithm>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "service/common/field_error.h"
#include "service/etcd/etcd_store.h"
#include "service/etcd/sync_call.h"
#include "service/store/record_codec.h"

namespace registrar::etcd {
namespace {

// Operations every Txn may add besides the batches' own: the events entry,
// the clock mark and <prefix>/m/rev.
constexpr int64_t kReservedOps = 3;

// A Txn of at least this many batches means callers are queueing: the
// writer lingers before the next (EtcdStoreOptions::commit_linger).
constexpr size_t kBusyGroup = 4;
// While lingering, the writer looks this often whether batches still come.
constexpr absl::Duration kLingerStep = absl::Milliseconds(1);

// A batch's size in a Txn, before keys are merged: one operation per
// record, lease and drop; bytes estimated (the built Txn is checked
// exactly).
struct Cost {
  int64_t ops = 0;
  int64_t bytes = 0;
};

int64_t EstimateRecordBytes(const RecordView& r) {
  int64_t n =
      96 + r.owner.tenant.size() + r.owner.user_id.size() + r.end_reason.size();
  for (const auto& [k, v] : *r.labels) n += k.size() + v.size() + 4;
  return n;
}

Cost CostOf(const WriteBatch& b, size_t key_bytes) {
  Cost c;
  c.ops = static_cast<int64_t>(b.events.size() + b.put_leases.size() +
                               b.delete_leases.size() + b.drop_records.size());
  // A record is written twice: its key and the events entry.
  for (const Event& e : b.events) {
    c.bytes += key_bytes + 2 * EstimateRecordBytes(e.record);
  }
  for (const LeaseView& l : b.put_leases) {
    c.bytes += key_bytes + 64 + l.holder.size() + l.grantor.size();
  }
  c.bytes += (b.delete_leases.size() + b.drop_records.size()) * key_bytes;
  return c;
}

// etcd refused the Txn before applying it: sending it again changes
// nothing. Anything else may have been applied.
bool NotApplied(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return true;
    default:
      return false;
  }
}

// A batch over etcd's --max-txn-ops (which Registrar is told with a limit
// of its own); a batch is never split, so it fails whole.
absl::Status TooManyOps(int64_t ops, int64_t max_txn_ops) {
  return WithLimit(
      absl::ResourceExhaustedError(absl::StrCat(
          "a batch of ", ops, " changes does not fit one etcd Txn: etcd's ",
          "--max-txn-ops is assumed to be ", max_txn_ops,
          ", and a batch is never split")),
      Limit::kEtcdMaxTxnOps);
}

absl::Status TooManyBytes(int64_t bytes, int64_t max_request_bytes) {
  return WithLimit(absl::ResourceExhaustedError(absl::StrCat(
                       "a batch of about ", bytes,
                       " bytes does not fit one etcd Txn: etcd's ",
                       "--max-request-bytes is assumed to be ",
                       max_request_bytes, ", and a batch is never split")),
                   Limit::kEtcdMaxRequestBytes);
}

// <prefix>/m/rev as a Range answered it: its mod_revision and value (0 and
// "" when absent), what FateOf reads.
struct RevisionKeyRead {
  int64_t mod = 0;
  std::string_view value;
};
RevisionKeyRead RevisionKeyIn(const pb::RangeResponse& r) {
  if (r.kvs_size() == 0) return {};
  return {r.kvs(0).mod_revision(), r.kvs(0).value()};
}

}  // namespace

struct EtcdStore::Group {
  std::vector<Pending> batches;
  std::vector<Event> events;  // committed events, in revision order
  pb::TxnRequest txn;
  std::string token;
  int64_t expected_mod = 0;
  uint64_t last_revision = 0;
  uint64_t clock_high_water = 0;
};

void EtcdStore::Submit(WriteBatch* batch, CommitDone done) {
  Enqueue(Pending{batch, std::move(done)});
}

absl::Status EtcdStore::Commit(WriteBatch* batch) {
  absl::StatusOr<bool> r = SyncCall<bool>([&](auto cb) {
    Pending p{batch, [cb = std::move(cb)](absl::Status s) mutable {
                if (s.ok()) {
                  cb(true);
                } else {
                  cb(std::move(s));
                }
              }};
    p.direct = true;
    Enqueue(std::move(p));
  });
  return r.status();
}

void EtcdStore::Enqueue(Pending p) {
  {
    absl::MutexLock lock(&mu_);
    if (!stopping_) {
      queue_.push_back(std::move(p));
      if (!writer_started_) {
        writer_started_ = true;
        writer_ = std::thread([this] { WriterLoop(); });
        completer_ = std::thread([this] { CompletionLoop(); });
      }
      return;
    }
  }
  std::move(p.done)(absl::UnavailableError("etcd store is shutting down"));
}

void EtcdStore::Complete(Pending& p, const absl::Status& status) {
  if (p.direct) {
    std::move(p.done)(status);
    return;
  }
  absl::MutexLock lock(&mu_);
  completions_.emplace_back(std::move(p.done), status);
}

void EtcdStore::CompletionLoop() {
  while (true) {
    std::deque<std::pair<CommitDone, absl::Status>> ready;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](EtcdStore* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
            return s->writer_done_ || !s->completions_.empty();
          },
          this));
      if (completions_.empty()) return;  // the writer is done: so are we
      ready.swap(completions_);
    }
    for (auto& [done, status] : ready) std::move(done)(status);
  }
}

void EtcdStore::WriterLoop() {
  std::deque<Pending> pending;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (pending.empty()) {
        mu_.Await(absl::Condition(
            +[](EtcdStore* s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu_) {
              return s->stopping_ || !s->queue_.empty();
            },
            this));
        Linger();
      }
      while (!queue_.empty()) {
        pending.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      if (pending.empty() && stopping_) {
        writer_done_ = true;
        return;
      }
    }
    absl::Status blocked;
    {
      absl::MutexLock lock(&mu_);
      blocked = fenced_;
    }
    const std::shared_ptr<const WriteFence> fence = write_fence();
    if (blocked.ok() && fence->check) {
      if (absl::Status s = fence->check(); !s.ok()) {
        blocked = Fence(std::string(s.message()), s.code());
      }
    }
    if (blocked.ok()) blocked = SettleUncertain();
    if (!blocked.ok()) {
      for (Pending& p : pending) Complete(p, blocked);
      pending.clear();
      continue;
    }
    std::optional<Group> group = TakeGroup(&pending);
    if (!group.has_value()) continue;
    last_group_batches_ = group->batches.size();
    const TxnResult result = SendTxn(*group);
    Finish(*group, result);
  }
}

void EtcdStore::Linger() {
  if (options_.commit_linger <= absl::ZeroDuration() ||
      last_group_batches_ < kBusyGroup) {
    return;
  }
  const size_t enough = 2 * last_group_batches_;
  const absl::Time until = absl::Now() + options_.commit_linger;
  struct Args {
    EtcdStore* store;
    size_t enough;
  } args{this, enough};
  const absl::Condition full(
      +[](Args* a) ABSL_EXCLUSIVE_LOCKS_REQUIRED(a->store->mu_) {
        return a->store->stopping_ || a->store->queue_.size() >= a->enough;
      },
      &args);
  size_t seen = queue_.size();
  while (!full.Eval()) {
    const absl::Duration left = until - absl::Now();
    if (left <= absl::ZeroDuration()) return;
    if (mu_.AwaitWithTimeout(full, std::min(left, kLingerStep))) return;
    if (queue_.size() == seen) return;  // a quiet step: nobody else is coming
    seen = queue_.size();
  }
}

std::optional<EtcdStore::Group> EtcdStore::TakeGroup(
    std::deque<Pending>* pending) {
  Group g;
  uint64_t next_revision;
  {
    absl::MutexLock lock(&mu_);
    next_revision = last_revision_ + 1;
    g.clock_high_water = clock_high_water_;
  }
  const uint64_t stored_clock = g.clock_high_water;
  const size_t key_bytes = layout_.RecordKey(Id128{}).size() + 16;
  const absl::Time now = absl::Now();
  Cost total;
  while (!pending->empty()) {
    Pending& p = pending->front();
    const Cost c = CostOf(*p.batch, key_bytes);
    absl::Status refuse;
    if (p.batch->deadline < now) {
      refuse = absl::DeadlineExceededError(
          "the batch's deadline passed while it waited for etcd");
    } else if (c.ops + kReservedOps > options_.max_txn_ops) {
      refuse = TooManyOps(c.ops, options_.max_txn_ops);
    } else if (c.bytes > options_.max_request_bytes) {
      refuse = TooManyBytes(c.bytes, options_.max_request_bytes);
    }
    if (!refuse.ok()) {
      Pending refused = std::move(p);
      pending->pop_front();
      Complete(refused, refuse);
      continue;
    }
    if (!g.batches.empty() &&
        (total.ops + c.ops + kReservedOps > options_.max_txn_ops ||
         total.bytes + c.bytes > options_.max_request_bytes)) {
      break;
    }
    total.ops += c.ops;
    total.bytes += c.bytes;
    g.batches.push_back(std::move(p));
    pending->pop_front();
  }
  if (g.batches.empty()) return std::nullopt;

  // Build; if the exact size is over the limit, give back the last batch
  // (a single batch over it fails).
  while (true) {
    g.events.clear();
    g.txn.Clear();
    g.clock_high_water = stored_clock;
    uint64_t revision = next_revision;
    // One operation per key, the latest change winning: etcd refuses a Txn
    // that names a key twice.
    std::map<std::string, pb::RequestOp> ops;
    std::string value;
    for (Pending& p : g.batches) {
      WriteBatch& b = *p.batch;
      for (Event& e : b.events) {
        e.revision = revision;
        e.record.revision = revision;
        ++revision;
        const std::string key = layout_.RecordKey(e.record.id);
        EncodeRecordValue(e.record, &value);
        ops[key] = PutOp(key, value);
        g.events.push_back(e);
      }
      for (const LeaseView& l : b.put_leases) {
        const std::string key = layout_.LeaseKey(l.id);
        EncodeLeaseValue(l, &value);
        ops[key] = PutOp(key, value);
      }
      for (Id128 id : b.delete_leases) {
        const std::string key = layout_.LeaseKey(id);
        ops[key] = DeleteOp(key);
      }
      for (Id128 id : b.drop_records) {
        const std::string key = layout_.RecordKey(id);
        ops[key] = DeleteOp(key);
      }
      g.clock_high_water = std::max(g.clock_high_water, b.clock_high_water_ms);
    }
    g.last_revision = revision - 1;
    if (!g.events.empty()) {
      const std::string key = layout_.EventKey(g.last_revision);
      EncodeEventsEntry(g.events, &value);
      ops[key] = PutOp(key, value);
    }
    if (g.clock_high_water > stored_clock) {
      ops[layout_.ClockKey()] =
          PutOp(layout_.ClockKey(), absl::StrCat(g.clock_high_water));
    }
    g.token = absl::StrCat(writer_id_, ":", ++txn_seq_);
    g.expected_mod = last_mod_;
    ops[layout_.RevisionKey()] = PutOp(
        layout_.RevisionKey(),
        EncodeRevisionValue({.revision = g.last_revision, .token = g.token}));
    *g.txn.add_compare() = CompareModRevision(
        layout_.RevisionKey(), pb::Compare::EQUAL, g.expected_mod);
    for (const pb::Compare& c : write_fence()->compares) {
      *g.txn.add_compare() = c;
    }
    for (auto& [key, op] : ops) *g.txn.add_success() = std::move(op);
    // On a failed compare, tell who wrote the key.
    *g.txn.add_failure() = RangeOp(layout_.RevisionKey());

    const int64_t bytes = static_cast<int64_t>(g.txn.ByteSizeLong());
    if (bytes <= options_.max_request_bytes) return g;
    Pending last = std::move(g.batches.back());
    g.batches.pop_back();
    if (g.batches.empty()) {
      Complete(last, TooManyBytes(bytes, options_.max_request_bytes));
      return std::nullopt;
    }
    pending->push_front(std::move(last));
  }
}

EtcdStore::TxnResult EtcdStore::SendTxn(Group& g) {
  const absl::Time deadline = absl::Now() + options_.commit_timeout;
  // Each sending may wait longer than the last: a Txn that is only slow
  // (a large one on a busy etcd) is not sent over and over.
  absl::Duration attempt = options_.txn_attempt_timeout;
  absl::Status cause;
  while (true) {
    absl::StatusOr<pb::TxnResponse> r = blocking_kv_.Txn(g.txn, attempt);
    attempt *= 2;
    if (r.ok()) {
      if (r->succeeded()) return r->header().revision();
      const RevisionKeyRead key =
          r->responses_size() > 0
              ? RevisionKeyIn(r->responses(0).response_range())
              : RevisionKeyRead{};
      return Refused(g, key.mod, key.value);
    }
    if (NotApplied(r.status())) return r.status();
    cause = r.status();
    // Unknown outcome: learn it before anything else is sent.
    while (true) {
      TxnResult seen = Resolve(g.token, g.expected_mod);
      if (seen.ok() || seen.status().code() == absl::StatusCode::kAborted) {
        return seen;
      }
      if (seen.status().code() == absl::StatusCode::kNotFound) break;
      if (absl::Now() >= deadline || Stopping()) {
        uncertain_ = Uncertain{g.token, g.expected_mod};
        return absl::UnavailableError(
            absl::StrCat("etcd commit outcome unknown (", cause.message(),
                         "; then ", seen.status().message(), ")"));
      }
      Backoff(absl::Milliseconds(200));
    }
    // Not applied (yet): send it again while time is left. If the first
    // sending still applies, this one's compare fails and Refused finds
    // our token: one of them applies, never both.
    if (absl::Now() >= deadline || Stopping()) {
      return absl::UnavailableError(
          absl::StrCat("etcd commit failed: ", cause.message()));
    }
    Backoff(absl::Milliseconds(100));
  }
}

EtcdStore::TxnResult EtcdStore::Refused(const Group& g, int64_t mod,
                                        std::string_view value) {
  switch (FateOf(mod, value, g.expected_mod, g.token)) {
    case TxnFate::kApplied:
      // An earlier sending of this Txn applied; its answer was lost.
      return mod;
    case TxnFate::kNotApplied:
      return Fence(
          "etcd refused the write fence (this replica's node id claim is "
          "gone)");
    case TxnFate::kOtherWriter:
      break;
  }
  return OtherWriter(mod, g.expected_mod);
}

EtcdStore::TxnResult EtcdStore::Resolve(const std::string& token,
                                        int64_t expected_mod) {
  pb::RangeRequest req;
  req.set_key(layout_.RevisionKey());
  absl::StatusOr<pb::RangeResponse> r =
      blocking_kv_.Range(req, options_.txn_attempt_timeout);
  if (!r.ok()) return r.status();
  const RevisionKeyRead key = RevisionKeyIn(*r);
  switch (FateOf(key.mod, key.value, expected_mod, token)) {
    case TxnFate::kNotApplied:
      return absl::NotFoundError("the Txn was not applied");
    case TxnFate::kApplied:
      return key.mod;
    case TxnFate::kOtherWriter:
      break;
  }
  return OtherWriter(key.mod, expected_mod);
}

absl::Status EtcdStore::OtherWriter(int64_t mod, int64_t expected_mod) {
  return Fence(absl::StrCat("another writer changed ", layout_.RevisionKey(),
                            " (etcd mod_revision ", mod,
                            ", this store expected ", expected_mod, ")"));
}

absl::Status EtcdStore::SettleUncertain() {
  if (!uncertain_.has_value()) return absl::OkStatus();
  TxnResult seen = Resolve(uncertain_->token, uncertain_->expected_mod);
  if (seen.status().code() == absl::StatusCode::kNotFound) {
    uncertain_.reset();  // it was never applied: nothing diverged
    return absl::OkStatus();
  }
  if (seen.ok()) {
    uncertain_.reset();
    return Fence(
        "a Txn reported failed was applied by etcd after all, so this "
        "replica's memory lacks it");
  }
  if (seen.status().code() == absl::StatusCode::kAborted) {
    uncertain_.reset();
    return seen.status();
  }
  return absl::UnavailableError(
      absl::StrCat("etcd unavailable: ", seen.status().message()));
}

void EtcdStore::Finish(Group& g, const TxnResult& result) {
  if (result.ok()) {
    last_mod_ = *result;
    {
      absl::MutexLock lock(&mu_);
      last_revision_ = g.last_revision;
      clock_high_water_ = g.clock_high_water;
      stats_.batches += g.batches.size();
      ++stats_.writes;
      writable_ = absl::OkStatus();
      writable_at_ = absl::Now();
      for (const Event& e : g.events) tail_.push_back(e);
      while (tail_.size() > options_.tail_events ||
             (!tail_.empty() && tail_.front().revision < oldest_)) {
        tail_.pop_front();
      }
    }
    absl::MutexLock lock(&listener_mu_);
    if (listener_ && !g.events.empty()) listener_(g.events);
  } else if (result.status().code() == absl::StatusCode::kUnavailable) {
    absl::MutexLock lock(&mu_);
    writable_ = result.status();
    writable_at_ = absl::Now();
  }
  const absl::Status status = result.status();
  for (Pending& p : g.batches) Complete(p, status);
}

absl::Status EtcdStore::Fence(std::string why, absl::StatusCode code) {
  absl::MutexLock lock(&mu_);
  if (fenced_.ok()) {
    fenced_ = absl::Status(
        code,
        absl::StrCat("etcd store fenced: ", why,
                     "; this replica no longer writes (restart it to reload)"));
  }
  return fenced_;
}

bool EtcdStore::Stopping() {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

void EtcdStore::Backoff(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  mu_.AwaitWithTimeout(absl::Condition(&stopping_), d);
}

}  // namespace registrar::etcd
