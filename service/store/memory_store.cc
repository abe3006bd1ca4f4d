#include "service/store/memory_store.h"

#include "absl/strings/str_cat.h"

namespace registrar {

absl::StatusOr<Durability> ParseDurability(std::string_view text) {
  if (text == "fsync") return Durability::kFsync;
  if (text == "os") return Durability::kOs;
  if (text == "none") return Durability::kNone;
  return absl::InvalidArgumentError(
      absl::StrCat("durability must be fsync, os or none, got \"",
                   absl::string_view(text.data(), text.size()), "\""));
}

std::string_view DurabilityName(Durability d) {
  switch (d) {
    case Durability::kFsync:
      return "fsync";
    case Durability::kOs:
      return "os";
    case Durability::kNone:
      return "none";
  }
  return "unknown";
}

MemoryStore::MemoryStore(size_t event_history)
    : event_history_(event_history),
      committer_(0, [this](const std::vector<WriteBatch*>& group) {
        return Write(group);
      }) {}

absl::Status MemoryStore::Commit(WriteBatch* batch) {
  return committer_.Commit(batch);
}

absl::Status MemoryStore::Write(const std::vector<WriteBatch*>& group) {
  absl::MutexLock lock(&mu_);
  for (const WriteBatch* b : group) {
    for (const Event& e : b->events) events_.push_back(e);
  }
  while (events_.size() > event_history_) {
    events_.pop_front();
  }
  if (!events_.empty()) oldest_ = events_.front().revision;
  return absl::OkStatus();
}

absl::StatusOr<StoreMeta> MemoryStore::Load(
    const std::function<void(RecordView&&)>&) {
  return StoreMeta{};
}

absl::Status MemoryStore::ReadEvents(uint64_t from, size_t limit,
                                     std::vector<Event>* out) {
  absl::MutexLock lock(&mu_);
  if (from < oldest_) {
    return absl::OutOfRangeError(absl::StrCat(
        "start_revision ", from, " is older than the retained history; the "
        "oldest available revision is ", oldest_));
  }
  if (events_.empty()) return absl::OkStatus();
  const uint64_t first = events_.front().revision;
  if (from < first) from = first;
  for (size_t i = from - first; i < events_.size() && limit > 0; ++i, --limit) {
    out->push_back(events_[i]);
  }
  return absl::OkStatus();
}

uint64_t MemoryStore::OldestRevision() {
  absl::MutexLock lock(&mu_);
  return oldest_;
}

uint64_t MemoryStore::LastRevision() { return committer_.last_revision(); }

absl::Status MemoryStore::CompactEvents(uint64_t below) {
  absl::MutexLock lock(&mu_);
  while (!events_.empty() && events_.front().revision < below) {
    events_.pop_front();
  }
  if (below > oldest_) oldest_ = below;
  return absl::OkStatus();
}

void MemoryStore::SetEventListener(EventListener listener) {
  committer_.SetListener(std::move(listener));
}

}  // namespace registrar
