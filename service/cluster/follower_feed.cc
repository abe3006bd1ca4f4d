#include "service/cluster/follower_feed.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "service/etcd/kv.h"
#include "spdlog/spdlog.h"

namespace registrar::cluster {

FollowerFeed::FollowerFeed(std::shared_ptr<etcd::Connection> conn,
                           etcd::EtcdLayout layout, int64_t loaded_at,
                           uint64_t loaded_revision, Registry& registry)
    : registry_(registry), decoder_(layout), applied_(loaded_revision) {
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
  std::shared_ptr<etcd::Watch> watch;
  {
    absl::MutexLock lock(&mu_);
    watch = watch_;
  }
  watch->Cancel();
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&ended_));
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
    if (txn.revision == 0) continue;
    absl::MutexLock lock(&mu_);
    if (txn.revision > applied_) applied_ = txn.revision;
  }
}

void FollowerFeed::OnEnd(const etcd::WatchEnd& end) {
  absl::MutexLock lock(&mu_);
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
