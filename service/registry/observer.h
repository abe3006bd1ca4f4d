#ifndef REGISTRAR_SERVICE_REGISTRY_OBSERVER_H_
#define REGISTRAR_SERVICE_REGISTRY_OBSERVER_H_

#include <cstdint>
#include <string_view>

#include "absl/time/time.h"
#include "service/model/end_cause.h"
#include "service/model/kind.h"

namespace registrar {

// Told about every state change the registry makes, after it is made.
// Called without registry locks held; must be thread-safe and cheap.
class RegistryObserver {
 public:
  virtual ~RegistryObserver() = default;
  virtual void OnIssued(Kind kind, uint64_t count) = 0;
  virtual void OnEnded(Kind kind, EndCause cause, uint64_t count) = 0;
  virtual void OnLeaseGranted() = 0;
  virtual void OnLeaseEnded(EndCause cause) = 0;
  // One store commit made by the registry, how long it took, and whether
  // the store took it.
  virtual void OnStoreCommit(absl::Duration took, bool ok) {}
};

// Snapshot of sizes, read at scrape time.
struct RegistryStats {
  uint64_t live_records[kNumKinds] = {};  // indexed by Kind
  uint64_t tombstones = 0;
  uint64_t tombstones_dropped_early = 0;
  // Bytes the record tables hold (RecordTable::MemoryUsage, summed).
  uint64_t memory_bytes = 0;
  uint64_t leases = 0;
  uint64_t store_revision = 0;  // last committed revision
  uint64_t store_batches = 0;   // commits (see CommitStats)
  uint64_t store_writes = 0;    // backend writes: fsyncs in fsync mode
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_REGISTRY_OBSERVER_H_
