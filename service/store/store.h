#ifndef REGISTRAR_SERVICE_STORE_STORE_H_
#define REGISTRAR_SERVICE_STORE_STORE_H_

// What the registry needs from durable storage, and nothing more: commit a
// batch of changes atomically, load everything at start, read the event log
// for Watch, and compact. The registry owns all rules; a store only keeps
// what it is given. Implementations: MemoryStore (no disk) and RocksDbStore
// (the default). A distributed backend would implement the same interface.
//
// Revisions: every committed event gets the next store revision, assigned by
// the store at commit time, so revisions are strictly increasing and
// gap-free in commit order (a failed commit consumes none).

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "service/model/record.h"

namespace registrar {

// How far a commit has gone when Commit returns OK.
enum class Durability {
  kFsync,  // in the WAL and fsynced: survives a power cut
  kOs,     // in the WAL, not fsynced: survives a process crash
  kNone,   // in memory/OS buffers only: may lose recent commits on a crash
};
absl::StatusOr<Durability> ParseDurability(std::string_view text);
std::string_view DurabilityName(Durability d);

// Watch event types; values equal registrar.v1.EventType.
enum class EventType : uint8_t { kIssued = 1, kReleased = 2, kExpired = 3 };

// One change to one record: its state after the change.
struct Event {
  uint64_t revision = 0;  // assigned by Store::Commit
  EventType type = EventType::kIssued;
  RecordView record;  // record.revision == revision after commit
};

// One atomic unit of change.
struct WriteBatch {
  std::vector<Event> events;          // records written, in order
  std::vector<LeaseView> put_leases;  // granted leases
  std::vector<Id128> delete_leases;   // revoked or expired leases
  std::vector<Id128> drop_records;    // tombstones past retention
  uint64_t clock_high_water_ms = 0;   // 0: unchanged
  // A batch still queued at this time is not written: its commit fails with
  // DEADLINE_EXCEEDED and changes nothing (the caller gave up waiting).
  absl::Time deadline = absl::InfiniteFuture();

  bool empty() const {
    return events.empty() && put_leases.empty() && delete_leases.empty() &&
           drop_records.empty() && clock_high_water_ms == 0;
  }
};

// Called with every committed event, in revision order, once per event,
// after it is durable (per the store's durability). Must not block and must
// not call back into the store.
using EventListener = std::function<void(const std::vector<Event>&)>;

// Group-commit counters: batches committed and backend writes they took
// (fsyncs in fsync mode); batches / writes is the calls per fsync.
struct CommitStats {
  uint64_t batches = 0;
  uint64_t writes = 0;
};

// What a store held at start, besides records.
struct StoreMeta {
  uint64_t revision = 0;             // last committed revision
  uint64_t clock_high_water_ms = 0;  // IDs may have used ms below this
  std::vector<LeaseView> leases;
};

class Store {
 public:
  virtual ~Store() = default;

  // Applies `batch` atomically and, per the store's durability, durably;
  // assigns revisions to batch->events (event and record). Thread-safe;
  // concurrent commits share fsyncs (group commit). Unavailable (with the
  // cause) when the store cannot write, DeadlineExceeded when
  // batch->deadline passed before it was written: then nothing of the
  // batch is applied and no revision is used.
  virtual absl::Status Commit(WriteBatch* batch) = 0;

  // Commit without waiting for it: queues `batch` and may return before it
  // is written; `done` gets what Commit would have returned, once, possibly
  // on a store thread, with no lock of the caller's held. Batches are
  // written in the order they were queued by Commit or Submit, so a caller
  // that queues under its own lock keeps its changes in order. `batch`
  // must stay valid until `done` runs. The default commits at once, on the
  // caller's thread, before returning.
  using CommitDone = absl::AnyInvocable<void(absl::Status) &&>;
  virtual void Submit(WriteBatch* batch, CommitDone done) {
    std::move(done)(Commit(batch));
  }
  // True when Submit returns before the batch is written (commits wait for
  // a disk flush): callers that can answer later should then use Submit.
  virtual bool defers_commits() const { return false; }

  // Streams every stored record to `on_record` and returns the rest. Called
  // once, before any Commit.
  virtual absl::StatusOr<StoreMeta> Load(
      const std::function<void(RecordView&&)>& on_record) = 0;

  // About how many records Load will stream (0 when unknown); lets the
  // caller size its tables once instead of growing them.
  virtual uint64_t ApproximateRecordCount() { return 0; }

  // Appends to *out the events with revision >= from, in order, at most
  // `limit`. OutOfRange (naming the oldest available revision) when `from`
  // is older than the retained history.
  virtual absl::Status ReadEvents(uint64_t from, size_t limit,
                                  std::vector<Event>* out) = 0;

  // Oldest revision still readable by ReadEvents (last + 1 when none).
  virtual uint64_t OldestRevision() = 0;
  // Last committed revision.
  virtual uint64_t LastRevision() = 0;

  // Forgets events with revision < `below`.
  virtual absl::Status CompactEvents(uint64_t below) = 0;

  // Registers the listener told about every commit from now on.
  virtual void SetEventListener(EventListener listener) = 0;

  // OK when the store can take writes; when it cannot, tries to recover
  // (e.g. after the disk has space again) and says why it still cannot.
  // Cheap to call often (a health check calls it every tick): a store
  // limits how often it probes and recovers.
  virtual absl::Status CheckWritable() = 0;

  virtual CommitStats commit_stats() const = 0;

  virtual Durability durability() const = 0;
  // "memory" or "rocksdb".
  virtual std::string_view name() const = 0;
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_STORE_STORE_H_
