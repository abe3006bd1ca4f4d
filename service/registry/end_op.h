#ifndef REGISTRAR_SERVICE_REGISTRY_END_OP_H_
#define REGISTRAR_SERVICE_REGISTRY_END_OP_H_

// Registry::EndOp: one change that ends records (Cleanup, a lease's end,
// recovery's orphans), as StartEnd/FinishEnd carry it through shard.h's
// sequence. Internal to service/registry.

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/time/time.h"
#include "service/registry/registry.h"
#include "service/registry/shard.h"

namespace registrar {

struct Registry::EndOp {
  using Ref = RecordTable::Ref;

  explicit EndOp(Ended e) : ended(std::move(e)) {}

  Ended ended;
  absl::Time deadline = absl::InfiniteFuture();
  // The shards to lock, ascending and distinct.
  std::vector<uint32_t> shards;
  // Under the locks of every shard in `shards`: appends to *out the live
  // records of `shard` to end. Called again when the change starts again.
  absl::AnyInvocable<void(uint32_t shard, RecordTable& table,
                          std::vector<Ref>* out)>
      collect;
  // Under the same locks, before collect, on every (re)start.
  absl::AnyInvocable<void()> reset;
  // Deleted in the same batch (a lease's end).
  std::vector<Id128> delete_leases;
  // After the batch is applied or rolled back, with no lock held.
  absl::AnyInvocable<void(absl::Status, EndOp&) &&> done;

  // Filled by StartEnd: what was staged, by shard, in batch order.
  std::vector<std::pair<uint32_t, std::vector<Ref>>> staged;
  int64_t now_ms = 0;
  int starts = 0;
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_REGISTRY_END_OP_H_
