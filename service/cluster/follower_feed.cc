#include "service/cluster/follower_feed.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "service/etcd/kv.h"
#include "spdlog/spdlog.h"

namespace registrar::cluster {

// Waiting callers of OnApplied, by revision. Thread-safe; callbacks run
// with no lock held.
class FollowerFeed::Waiters
    : public std::enable_shared_from_this<FollowerFeed::Waiters> {
 public:
  Waiters(std::shared_ptr<etcd::Connection> conn, uint64_t applied)
      : conn_(std::move(conn)), applied_(applied) {}

  void Add(uint64_t revision, absl::Time deadline, AppliedCallback done) {
    absl::Status now;
    {
      absl::MutexLock lock(&mu_);
      if (applied_ < revision && ended_.ok()) {
        list_.push_back({revision, deadline, std::move(done)});
        if (!sweeping_) {
          sweeping_ = true;
          ScheduleSweep();
        }
        return;
      }
      now = applied_ >= revision ? absl::OkStatus() : ended_;
    }
    done(now);
  }

  void Advance(uint64_t applied) {
    std::vector<Waiter> ready;
    {
      absl::MutexLock lock(&mu_);
      if (applied > applied_) applied_ = applied;
      const uint64_t now_applied = applied_;
      Take([now_applied](const Waiter& w) { return w.revision <= now_applied; },
           &ready);
    }
    for (Waiter& w : ready) w.done(absl::OkStatus());
  }

  void End(const absl::Status& status) {
    std::vector<Waiter> ready;
    {
      absl::MutexLock lock(&mu_);
      ended_ = status;
      ready.swap(list_);
    }
    for (Waiter& w : ready) w.done(status);
  }

 private:
  struct Waiter {
    uint64_t revision;
    absl::Time deadline;
    AppliedCallback done;
  };

  template <typename Pred>
  void Take(Pred pred, std::vector<Waiter>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    for (auto it = list_.begin(); it != list_.end();) {
      if (pred(*it)) {
        out->push_back(std::move(*it));
        it = list_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void ScheduleSweep() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    conn_->timer().After(absl::Milliseconds(50),
                         [self = shared_from_this()] { self->Sweep(); });
  }

  void Sweep() {
    std::vector<Waiter> late;
    uint64_t applied;
    {
      absl::MutexLock lock(&mu_);
      const absl::Time now = absl::Now();
      Take([now](const Waiter& w) { return w.deadline <= now; }, &late);
      applied = applied_;
      if (list_.empty()) {
        sweeping_ = false;
      } else {
        ScheduleSweep();
      }
    }
    for (Waiter& w : late) {
      w.done(absl::DeadlineExceededError(
          absl::StrCat("this follower has applied revision ", applied,
                       ", the cluster is at ", w.revision)));
    }
  }

  const std::shared_ptr<etcd::Connection> conn_;
  absl::Mutex mu_;
  uint64_t applied_ ABSL_GUARDED_BY(mu_);
  absl::Status ended_ ABSL_GUARDED_BY(mu_);
  std::vector<Waiter> list_ ABSL_GUARDED_BY(mu_);
  bool sweeping_ ABSL_GUARDED_BY(mu_) = false;
};

FollowerFeed::FollowerFeed(std::shared_ptr<etcd::Connection> conn,
                           etcd::EtcdLayout layout, int64_t loaded_at,
                           uint64_t loaded_revision, Registry& registry,
                           AppliedFn on_applied)
    : registry_(registry),
      on_applied_(std::move(on_applied)),
      waiters_(std::make_shared<Waiters>(conn, loaded_revision)),
      decoder_(layout),
      applied_(loaded_revision) {
  etcd::WatchOptions o;
  // "<prefix>/": the store's keys only, not a sibling prefix's.
  o.key = layout.prefix() + "/";
  o.range_end = etcd::PrefixEnd(o.key);
  o.start_revision = loaded_at + 1;
  etcd::WatchHandlers h;
  h.on_events = [this](std::vector<mvccpb::Event> events, int64_t) {
    OnEvents(events);
  };
  h.on_end = [this](const etcd::WatchEnd& end) { OnEnd(end); };
  std::shared_ptr<etcd::Watch> watch =
      etcd::Watch::Start(std::move(conn), std::move(o), std::move(h));
  absl::MutexLock lock(&mu_);
  watch_ = std::move(watch);
}

FollowerFeed::~FollowerFeed() {
  Stop(absl::CancelledError("follower feed stopped"));
}

void FollowerFeed::Stop(absl::Status why) {
  std::shared_ptr<etcd::Watch> watch;
  {
    absl::MutexLock lock(&mu_);
    if (status_.ok()) status_ = std::move(why);
    watch = watch_;
  }
  watch->Cancel();
  absl::Status ended;
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(&ended_));
    ended = status_;
  }
  waiters_->End(ended);
}

void FollowerFeed::OnEvents(const std::vector<mvccpb::Event>& events) {
  {
    absl::MutexLock lock(&mu_);
    if (!status_.ok()) return;  // failed: waiting for the end of the watch
  }
  absl::StatusOr<std::vector<CommittedTxn>> txns = decoder_.Decode(events);
  if (!txns.ok()) {
    spdlog::error("follower feed: {}; the registry must be reloaded",
                  std::string(txns.status().message()));
    std::shared_ptr<etcd::Watch> watch;
    {
      absl::MutexLock lock(&mu_);
      status_ = txns.status();
      watch = watch_;  // null while the constructor is still starting it
    }
    // No lock of ours held: on_end takes it.
    if (watch != nullptr) watch->Cancel();
    return;
  }
  for (const CommittedTxn& txn : *txns) {
    registry_.ApplyCommitted(txn.batch);
    if (on_applied_) on_applied_(txn);
    if (txn.revision == 0) continue;
    {
      absl::MutexLock lock(&mu_);
      if (txn.revision > applied_) applied_ = txn.revision;
    }
    waiters_->Advance(txn.revision);
  }
}

void FollowerFeed::OnEnd(const etcd::WatchEnd& end) {
  // Copied first: once ended_ is set the destructor may run.
  const std::shared_ptr<Waiters> waiters = waiters_;
  absl::Status ended;
  {
    absl::MutexLock lock(&mu_);
    ended = EndLocked(end);
  }
  waiters->End(ended);
}

absl::Status FollowerFeed::EndLocked(const etcd::WatchEnd& end) {
  if (status_.ok()) {
    status_ = end.status.ok() ? absl::CancelledError("follower feed stopped")
                              : end.status;
    if (end.compact_revision > 0) {
      status_ = absl::OutOfRangeError(absl::StrCat(
          "etcd compacted its history to revision ", end.compact_revision,
          " past what this follower applied; it must reload"));
    }
  }
  ended_ = true;
  return status_;
}

void FollowerFeed::OnApplied(uint64_t revision, absl::Time deadline,
                             AppliedCallback done) {
  waiters_->Add(revision, deadline, std::move(done));
}

uint64_t FollowerFeed::applied() const {
  absl::MutexLock lock(&mu_);
  return applied_;
}

absl::Status FollowerFeed::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

absl::Status FollowerFeed::WaitApplied(uint64_t revision, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  auto ready = [this, revision]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return applied_ >= revision || !status_.ok();
  };
  mu_.AwaitWithDeadline(absl::Condition(&ready), deadline);
  if (applied_ >= revision) return absl::OkStatus();
  if (!status_.ok()) return status_;
  return absl::DeadlineExceededError(
      absl::StrCat("this follower has applied revision ", applied_,
                   ", the cluster is at ", revision));
}

}  // namespace registrar::cluster
