#include "service/cluster/event_log.h"

#include <utility>

namespace registrar::cluster {

EventLog::~EventLog() {
  absl::MutexLock switching(&switch_mu_);
  std::shared_ptr<etcd::EtcdStore> store = current();
  if (store != nullptr && listener_) store->SetEventListener(nullptr);
}

void EventLog::Switch(std::shared_ptr<etcd::EtcdStore> store) {
  absl::MutexLock switching(&switch_mu_);
  std::shared_ptr<etcd::EtcdStore> old;
  {
    absl::MutexLock lock(&mu_);
    old = std::exchange(store_, store);
  }
  // A new writer that took over its follower store keeps it.
  if (!listener_ || old == store) return;
  // No lock of ours is held while a store's listener mutex is taken: a
  // store calls the listener from its writer or feed thread.
  if (old != nullptr) old->SetEventListener(nullptr);
  if (store == nullptr) return;
  // The new store may be ahead of what the listener heard from the old
  // one (it loaded later): it says so, in order with its own calls, so
  // that waiting watchers read on.
  store->SetEventListenerAndAnnounce(listener_);
}

std::shared_ptr<etcd::EtcdStore> EventLog::current() const {
  absl::MutexLock lock(&mu_);
  return store_;
}

absl::Status EventLog::Commit(WriteBatch* /*batch*/) {
  return absl::FailedPreconditionError(
      "the cluster's event log is read-only; changes go through the "
      "registry's own store");
}

absl::StatusOr<StoreMeta> EventLog::Load(
    const std::function<void(RecordView&&)>& /*on_record*/) {
  return absl::FailedPreconditionError("the cluster's event log loads nothing");
}

absl::Status EventLog::ReadEvents(uint64_t from, size_t limit,
                                  std::vector<Event>* out) {
  std::shared_ptr<etcd::EtcdStore> store = current();
  if (store == nullptr) return absl::UnavailableError("no store yet");
  return store->ReadEvents(from, limit, out);
}

uint64_t EventLog::OldestRevision() {
  std::shared_ptr<etcd::EtcdStore> store = current();
  return store == nullptr ? 1 : store->OldestRevision();
}

uint64_t EventLog::LastRevision() {
  std::shared_ptr<etcd::EtcdStore> store = current();
  return store == nullptr ? 0 : store->LastRevision();
}

absl::Status EventLog::CompactEvents(uint64_t below) {
  std::shared_ptr<etcd::EtcdStore> store = current();
  if (store == nullptr) return absl::OkStatus();
  return store->CompactEvents(below);
}

void EventLog::SetEventListener(EventListener listener) {
  absl::MutexLock switching(&switch_mu_);
  listener_ = std::move(listener);
  std::shared_ptr<etcd::EtcdStore> store = current();
  if (store != nullptr) store->SetEventListener(listener_);
}

absl::Status EventLog::CheckWritable() {
  std::shared_ptr<etcd::EtcdStore> store = current();
  if (store == nullptr) return absl::UnavailableError("no store yet");
  return store->CheckWritable();
}

CommitStats EventLog::commit_stats() const {
  std::shared_ptr<etcd::EtcdStore> store = current();
  return store == nullptr ? CommitStats{} : store->commit_stats();
}

}  // namespace registrar::cluster
