#ifndef REGISTRAR_SERVICE_REGISTRY_LEASE_QUEUE_H_
#define REGISTRAR_SERVICE_REGISTRY_LEASE_QUEUE_H_

// Lease deadlines as plain data: a min-heap of (deadline, lease). No locks
// and no threads of its own; the Lessor drives it under its mutex. An entry
// may be earlier than its lease's deadline (the lease was renewed); the
// Lessor re-queues such an entry when it surfaces, so renewal costs nothing
// here, each lease has at most one entry, and nothing scans all leases.

#include <cstdint>
#include <queue>
#include <vector>

#include "absl/time/time.h"
#include "service/id/id.h"

namespace registrar {

class LeaseQueue {
 public:
  void Push(absl::Time deadline, Id128 lease) { heap_.push({deadline, lease}); }
  bool empty() const { return heap_.empty(); }
  // Earliest deadline queued (possibly stale). Precondition: !empty().
  absl::Time next_deadline() const { return heap_.top().deadline; }
  // Pops the earliest entry if its deadline is <= now.
  bool PopDue(absl::Time now, absl::Time* deadline, Id128* lease) {
    if (heap_.empty() || heap_.top().deadline > now) return false;
    *deadline = heap_.top().deadline;
    *lease = heap_.top().lease;
    heap_.pop();
    return true;
  }
  size_t size() const { return heap_.size(); }

 private:
  struct Entry {
    absl::Time deadline;
    Id128 lease;
    bool operator>(const Entry& o) const { return deadline > o.deadline; }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap_;
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_REGISTRY_LEASE_QUEUE_H_
