#ifndef REGISTRAR_SERVICE_STORE_STORE_METRICS_H_
#define REGISTRAR_SERVICE_STORE_STORE_METRICS_H_

// The RocksDB store's own metrics, read from RocksDB at every scrape: what an
// operator needs to see a store that stalls or falls behind on compaction.
//   registrar_store_write_stall_seconds_total  counter  time writes waited in
//                                                      RocksDB's write stalls
//   registrar_store_write_stopped              gauge    1 while RocksDB stops
//                                                      writes
//   registrar_store_pending_compaction_bytes   gauge    bytes compaction is
//                                                      behind (all families)
//   registrar_store_wal_bytes                  gauge    WAL files on disk
//   registrar_store_sst_bytes                  gauge    live table files
//   registrar_store_memtable_bytes             gauge    memtables (memory)
//   registrar_store_recovery_attempts_total    counter  reopens tried while
//                                                      the store could not
//                                                      write (throttled)
// The server adds it with Metrics::AddCollectable. It may outlive the store:
// once the store is destroyed a scrape returns none of these families.

#include <memory>

#include "prometheus/collectable.h"

namespace registrar {

class RocksDbStore;

// What a scrape reads from the store (RocksDbStore::operator_stats).
struct StoreOperatorStats {
  double write_stall_seconds = 0;
  bool write_stopped = false;
  uint64_t pending_compaction_bytes = 0;
  uint64_t wal_bytes = 0;
  uint64_t sst_bytes = 0;
  uint64_t memtable_bytes = 0;
  uint64_t recovery_attempts = 0;
};

// Held by the store (RocksDbStore::metrics) and by the collectable; the
// store clears it when it closes.
struct StoreMetricsLink;

std::shared_ptr<prometheus::Collectable> MakeStoreCollectable(
    std::shared_ptr<StoreMetricsLink> link);

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_STORE_STORE_METRICS_H_
