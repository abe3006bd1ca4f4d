#include "service/watch/watch_hub.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "service/common/field_error.h"
#include "service/common/text.h"

namespace registrar {

class WatchHub::Watcher {
 public:
  enum class State {
    kIdle,      // nothing outstanding, nothing pending: the pump's to serve
    kWriting,   // one Send outstanding; more may be pending
    kFinished,  // Finish called (or Stop): nothing more, ever
  };

  Watcher(WatchSink* sink, std::string tenant, std::string caller,
          uint64_t start)
      : tenant(std::move(tenant)),
        caller(std::move(caller)),
        sink_(sink),
        cursor_(start) {}

  // The first revision not yet handed to the sink: where a client resumes.
  uint64_t NextToSend() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return pos_ < pending_.size() ? pending_[pos_].revision : cursor_;
  }

  // Hands the next pending event (there must be one) to the sink.
  void SendNext() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    state_ = State::kWriting;
    sink_->Send(pending_[pos_++]);
  }

  // Finishes the stream with `status`, once; frees what is pending.
  void Finish(const absl::Status& status) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (state_ == State::kFinished) return;
    state_ = State::kFinished;
    DropPending();
    if (sink_ != nullptr) sink_->Finish(status);
  }

  void DropPending() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::vector<Event>().swap(pending_);
    pos_ = 0;
  }

  const std::string tenant;  // empty: every tenant
  const std::string caller;
  absl::Mutex mu;

 private:
  friend class WatchHub;

  WatchSink* sink_ ABSL_GUARDED_BY(mu);  // null after Stop
  State state_ ABSL_GUARDED_BY(mu) = State::kIdle;
  // Next revision to read from the store.
  uint64_t cursor_ ABSL_GUARDED_BY(mu);
  // Read, filtered and not yet sent: pending_[pos_..]; at most batch events.
  std::vector<Event> pending_ ABSL_GUARDED_BY(mu);
  size_t pos_ ABSL_GUARDED_BY(mu) = 0;
  // The fewest revisions behind the newest this watcher has been: 0 once
  // it has caught up; more while one that started far back catches up.
  uint64_t least_behind_ ABSL_GUARDED_BY(mu) = UINT64_MAX;
};

namespace {

// While every watcher is writing (e.g. stalled readers), the pump still
// wakes once per this many revisions, to notice watchers whose cursor fell
// below the retained history (compaction does not signal).
constexpr uint64_t kRecheckRevisions = 1024;

WatchLimits Sanitized(WatchLimits limits) {
  limits.batch = std::max<size_t>(limits.batch, 1);
  return limits;
}

size_t CountOf(const absl::flat_hash_map<std::string, size_t>& counts,
               const std::string& key) {
  auto it = counts.find(key);
  return it == counts.end() ? 0 : it->second;
}

// One watcher fewer under `key`; a key with none is forgotten.
void Release(absl::flat_hash_map<std::string, size_t>& counts,
             const std::string& key) {
  auto it = counts.find(key);
  if (it != counts.end() && --it->second == 0) counts.erase(it);
}

absl::Status FellBehindHistory(uint64_t oldest) {
  return absl::OutOfRangeError(absl::StrCat(
      "watch fell behind the retained history; oldest available revision is ",
      oldest));
}

}  // namespace

WatchHub::WatchHub(Store& store, WatchLimits limits)
    : store_(store), limits_(Sanitized(limits)) {
  store_.SetEventListener(
      [this](const std::vector<Event>& events) { OnCommitted(events); });
  // Commits before the listener was set are covered by LastRevision.
  const uint64_t last = store_.LastRevision();
  uint64_t seen = latest_.load(std::memory_order_acquire);
  while (seen < last && !latest_.compare_exchange_weak(
                            seen, last, std::memory_order_acq_rel)) {
  }
  pump_ = std::thread([this] { RunPump(); });
}

WatchHub::~WatchHub() { Shutdown(); }

void WatchHub::OnCommitted(const std::vector<Event>& events) {
  if (events.empty()) return;
  // Called in revision order, one commit at a time (under the committer's
  // lock), so a plain store keeps latest_ increasing. Sequentially
  // consistent, paired with the pump's store of wake_at_ and load of
  // latest_: either the pump sees this revision or this sees its wake_at_.
  const uint64_t revision = events.back().revision;
  latest_.store(revision);
  if (revision >= wake_at_.load()) Wake();
}

void WatchHub::Wake() {
  wake_seq_.fetch_add(1, std::memory_order_acq_rel);
  wake_seq_.notify_one();
}

absl::StatusOr<std::shared_ptr<WatchHub::Watcher>> WatchHub::Start(
    const WatchSpec& spec, WatchSink* sink) {
  std::shared_ptr<Watcher> w;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return absl::UnavailableError("server is shutting down");
    if (watchers_.size() >= limits_.max_watchers) {
      return WithLimit(absl::ResourceExhaustedError(absl::StrCat(
                           "too many watchers (limit ", limits_.max_watchers,
                           "); retry later or watch from fewer clients")),
                       Limit::kMaxWatchers);
    }
    if (limits_.max_watchers_per_tenant > 0 &&
        CountOf(per_tenant_, spec.tenant) >= limits_.max_watchers_per_tenant) {
      return WithLimit(
          absl::ResourceExhaustedError(absl::StrCat(
              "too many watchers of ",
              spec.tenant.empty()
                  ? std::string("all tenants")
                  : absl::StrCat("tenant \"", LogSafe(spec.tenant), "\""),
              " (limit ", limits_.max_watchers_per_tenant,
              "); retry later or close some")),
          Limit::kMaxWatchersPerTenant);
    }
    if (limits_.max_watchers_per_caller > 0 &&
        CountOf(per_caller_, spec.caller) >= limits_.max_watchers_per_caller) {
      return WithLimit(
          absl::ResourceExhaustedError(absl::StrCat(
              "too many watchers of caller ", LogSafe(spec.caller), " (limit ",
              limits_.max_watchers_per_caller, "); retry later or close some")),
          Limit::kMaxWatchersPerCaller);
    }
    uint64_t start = spec.start_revision;
    if (start == 0) {
      start = store_.LastRevision() + 1;
    } else if (const uint64_t oldest = store_.OldestRevision();
               start < oldest) {
      return FieldError(absl::StatusCode::kOutOfRange, "start_revision",
                        absl::StrCat(start,
                                     " is older than the retained history; the "
                                     "oldest available revision is ",
                                     oldest));
    } else if (const uint64_t newest = store_.LastRevision();
               start > newest + 1) {
      // Waiting for a revision far ahead would hang the client without
      // saying why; the next one to be committed may be waited for.
      return FieldError(
          absl::StatusCode::kOutOfRange, "start_revision",
          absl::StrCat(start, " is beyond the newest revision ", newest,
                       "; watch from at most ", newest + 1,
                       " (the next one), or 0 for from now"));
    }
    w = std::make_shared<Watcher>(sink, spec.tenant, spec.caller, start);
    watchers_.push_back(w);
    ++per_tenant_[spec.tenant];
    ++per_caller_[spec.caller];
    ++watchers_version_;
  }
  Wake();
  return w;
}

void WatchHub::WriteDone(Watcher& w, bool ok) {
  {
    absl::MutexLock lock(&w.mu);
    if (w.state_ != Watcher::State::kWriting) return;  // finished meanwhile
    if (!ok) {
      w.Finish(absl::CancelledError("watch stream broken"));
      return;
    }
    if (w.pos_ < w.pending_.size()) {
      w.SendNext();
      return;
    }
    w.state_ = Watcher::State::kIdle;
    w.pending_.clear();
    w.pos_ = 0;
  }
  Wake();  // the pump reads more for it
}

void WatchHub::Cancel(Watcher& w) {
  absl::MutexLock lock(&w.mu);
  w.Finish(absl::CancelledError("watch cancelled by the client"));
}

void WatchHub::Stop(Watcher& w) {
  {
    absl::MutexLock lock(&w.mu);
    w.sink_ = nullptr;
    w.state_ = Watcher::State::kFinished;
    w.DropPending();
  }
  absl::MutexLock lock(&mu_);
  auto it = std::find_if(watchers_.begin(), watchers_.end(),
                         [&w](const auto& p) { return p.get() == &w; });
  if (it != watchers_.end()) {
    Release(per_tenant_, w.tenant);
    Release(per_caller_, w.caller);
    std::swap(*it, watchers_.back());
    watchers_.pop_back();
    ++watchers_version_;
  }
}

size_t WatchHub::watcher_count() const {
  absl::MutexLock lock(&mu_);
  return watchers_.size();
}

bool WatchHub::AwaitWatcherCount(size_t n, absl::Duration bound) const {
  absl::MutexLock lock(&mu_);
  auto reached = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return watchers_.size() == n;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&reached), bound);
}

size_t WatchHub::pending_events(Watcher& w) const {
  absl::MutexLock lock(&w.mu);
  return w.pending_.size() - w.pos_;
}

bool WatchHub::AwaitPumpIdle(absl::Duration bound) {
  const uint32_t target = wake_seq_.fetch_add(1, std::memory_order_acq_rel) + 1;
  wake_seq_.notify_one();
  absl::MutexLock lock(&idle_mu_);
  // A round that loaded wake_seq_ >= target began after the bump above
  // (serial arithmetic: the counter may wrap).
  auto idle_after = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(idle_mu_) {
    return idle_seen_ && static_cast<int32_t>(idle_seq_ - target) >= 0;
  };
  return idle_mu_.AwaitWithTimeout(absl::Condition(&idle_after), bound);
}

void WatchHub::Shutdown() {
  absl::MutexLock serial(&shutdown_mu_);
  std::vector<std::shared_ptr<Watcher>> all;
  {
    absl::MutexLock lock(&mu_);
    if (shut_down_) return;
    shut_down_ = true;
    all = watchers_;
  }
  stopping_.store(true, std::memory_order_release);
  Wake();
  if (pump_.joinable()) pump_.join();
  store_.SetEventListener(nullptr);
  const absl::Status status = absl::UnavailableError("server is shutting down");
  for (const std::shared_ptr<Watcher>& w : all) {
    absl::MutexLock lock(&w->mu);
    w->Finish(status);
  }
}

void WatchHub::RunPump() {
  std::vector<std::shared_ptr<Watcher>> snapshot;
  uint64_t version = ~uint64_t{0};
  ReadCache cache;
  for (;;) {
    const uint32_t seq = wake_seq_.load(std::memory_order_acquire);
    if (stopping_.load(std::memory_order_acquire)) return;
    {
      absl::MutexLock lock(&mu_);
      if (watchers_version_ != version) {
        snapshot = watchers_;
        version = watchers_version_;
      }
    }
    bool progress = false;
    uint64_t wake_at = UINT64_MAX;
    cache.valid = false;  // a read is shared within one round only
    if (!snapshot.empty()) {
      const uint64_t last = latest_.load(std::memory_order_acquire);
      const uint64_t oldest = store_.OldestRevision();
      wake_at = last + kRecheckRevisions;
      for (const std::shared_ptr<Watcher>& w : snapshot) {
        if (stopping_.load(std::memory_order_acquire)) return;
        progress |= Serve(*w, last, oldest, &wake_at, &cache);
      }
    }
    if (progress) continue;
    // Sleep until a watcher needs the pump: a WriteDone, a new watcher, or
    // a commit reaching wake_at (see OnCommitted for the ordering).
    wake_at_.store(wake_at);
    if (latest_.load() >= wake_at) continue;
    {
      absl::MutexLock lock(&idle_mu_);
      idle_seq_ = seq;
      idle_seen_ = true;
    }
    wake_seq_.wait(seq, std::memory_order_acquire);
  }
}

bool WatchHub::Serve(Watcher& w, uint64_t last, uint64_t oldest,
                     uint64_t* wake_at, ReadCache* cache) {
  uint64_t from;
  {
    absl::MutexLock lock(&w.mu);
    if (w.state_ == Watcher::State::kFinished) return false;
    if (w.cursor_ < oldest) {
      w.Finish(FellBehindHistory(oldest));
      return false;
    }
    const uint64_t next = w.NextToSend();
    const uint64_t behind = last >= next ? last - next + 1 : 0;
    w.least_behind_ = std::min(w.least_behind_, behind);
    if (behind - w.least_behind_ > limits_.max_lag) {
      w.Finish(absl::ResourceExhaustedError(absl::StrCat(
          "watcher too slow: ", behind, " revisions behind (limit ",
          limits_.max_lag, "); resume with start_revision=", next)));
      return false;
    }
    if (w.state_ == Watcher::State::kWriting) {
      // WriteDone goes on; the pump is needed again only to cut it off, at
      // the first revision where behind - least_behind_ > max_lag.
      const uint64_t cut = next + w.least_behind_ + limits_.max_lag;
      *wake_at = std::min(*wake_at, cut < next ? UINT64_MAX : cut);
      return false;
    }
    if (w.cursor_ > last) {  // caught up: wake for its next revision
      *wake_at = std::min(*wake_at, w.cursor_);
      return false;
    }
    from = w.cursor_;
  }

  // Read without the watcher's lock: while idle, only the pump moves its
  // cursor; Cancel/Shutdown may finish it meanwhile (checked below).
  // Watchers at the same cursor (typically all that are caught up) share
  // one store read per round.
  if (!cache->valid || cache->from != from) {
    cache->valid = true;
    cache->from = from;
    cache->events.clear();
    cache->status = store_.ReadEvents(from, limits_.batch, &cache->events);
  }
  const absl::Status& read = cache->status;
  const std::vector<Event>& events = cache->events;

  absl::MutexLock lock(&w.mu);
  if (w.state_ != Watcher::State::kIdle) return false;
  if (!read.ok()) {
    if (read.code() == absl::StatusCode::kOutOfRange) {
      w.Finish(FellBehindHistory(store_.OldestRevision()));
    } else {
      w.Finish(absl::UnavailableError(
          absl::StrCat("watch cannot read events: ", read.message(),
                       "; resume with start_revision=", from)));
    }
    return false;
  }
  if (events.empty()) {  // not readable yet: try again at the next commit
    *wake_at = std::min(*wake_at, last + 1);
    return false;
  }
  w.cursor_ = events.back().revision + 1;
  w.pending_.clear();
  w.pos_ = 0;
  for (const Event& e : events) {
    if (w.tenant.empty() || e.record.owner.tenant == w.tenant) {
      w.pending_.push_back(e);
    }
  }
  if (!w.pending_.empty()) w.SendNext();
  return true;
}

}  // namespace registrar
