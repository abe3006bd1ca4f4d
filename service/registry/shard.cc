#include "service/registry/shard.h"

#include <utility>

namespace registrar {
namespace registry_internal {

void Shard::StageInsert(std::vector<RecordView>& records,
                        std::vector<Ref>* refs, WriteBatch* batch) {
  // Applied now, as pending (revision 0: invisible to reads), so that what
  // is admitted after this (a cascade, an expiring lease) finds them.
  table.InsertAll(records, refs);
  batch->events.reserve(batch->events.size() + records.size());
  for (RecordView& r : records) {
    batch->events.push_back(Event{0, EventType::kIssued, std::move(r)});
  }
}

void Shard::ApplyInsert(const std::vector<Ref>& refs, const Event* events,
                        bool committed, uint64_t removed[kNumKinds]) {
  for (size_t i = 0; i < refs.size(); ++i) {
    const Event& e = events[i];
    const Ref r = table.Recheck(refs[i], e.record.id);
    if (r == RecordTable::kNone || !table.pending(r)) continue;
    if (committed) {
      table.set_revision(r, e.revision);
    } else {
      table.Remove(r);
      ++removed[static_cast<int>(e.record.kind)];
    }
  }
}

bool Shard::AnyEnding(const std::vector<Ref>& refs) const {
  for (const Ref r : refs) {
    if (table.ending(r)) return true;
  }
  return false;
}

void Shard::StageEnd(const std::vector<Ref>& refs, int64_t now_ms,
                     const Ended& ended, WriteBatch* batch) {
  const EventType type = ended.state == State::kExpired ? EventType::kExpired
                                                        : EventType::kReleased;
  batch->events.reserve(batch->events.size() + refs.size());
  for (const Ref r : refs) {
    table.set_ending(r, true);
    RecordView v = table.View(r);
    v.state = ended.state;
    v.ended_at = absl::FromUnixMillis(now_ms);
    v.end_reason = *ended.reason;
    batch->events.push_back(Event{0, type, std::move(v)});
  }
}

}  // namespace registry_internal
}  // namespace registrar
