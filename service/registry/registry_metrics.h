#ifndef REGISTRAR_SERVICE_REGISTRY_REGISTRY_METRICS_H_
#define REGISTRAR_SERVICE_REGISTRY_REGISTRY_METRICS_H_

// The registry's metrics: a RegistryObserver counting its changes, and a
// collectable reading its sizes at scrape time. Both go on the server's
// Prometheus registry (service/metrics/ exposes it).
//
// Counted as the registry reports them (every label child created up
// front, so each series is exported with value 0 from the start):
//   registrar_ids_issued_total{kind}          kind: thread|run|request|
//                                                   connection
//   registrar_released_total{kind,reason}     reason: EndCauseName
//   registrar_leases_granted_total
//   registrar_leases_ended_total{reason}      reason: EndCauseName
//   registrar_store_commit_seconds            histogram, LatencyBuckets()
//   registrar_store_commit_failures_total
// Read at scrape time (RegistryStatsCollectable; absent without a source):
//   registrar_live_records{kind}, registrar_leases, registrar_tombstones,
//   registrar_store_revision, registrar_store_batches_total,
//   registrar_store_writes_total

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/collectable.h"
#include "service/registry/observer.h"

namespace prometheus {
class Counter;
class Histogram;
class Registry;
struct MetricFamily;
}  // namespace prometheus

namespace registrar {

class RegistryMetrics : public RegistryObserver {
 public:
  // Registers the families on `registry`, which must outlive this object.
  explicit RegistryMetrics(prometheus::Registry& registry);

  RegistryMetrics(const RegistryMetrics&) = delete;
  RegistryMetrics& operator=(const RegistryMetrics&) = delete;

  // Kinds other than thread, run, request and connection, and causes
  // outside EndCause, are ignored. No allocation, no lock of ours: an array
  // index and an atomic add.
  void OnIssued(Kind kind, uint64_t count) override;
  void OnEnded(Kind kind, EndCause cause, uint64_t count) override;
  void OnLeaseGranted() override;
  void OnLeaseEnded(EndCause cause) override;
  void OnStoreCommit(absl::Duration took, bool ok) override;

 private:
  std::array<prometheus::Counter*, kNumKinds> issued_{};
  std::array<std::array<prometheus::Counter*, kNumEndCauses>, kNumKinds>
      released_{};
  prometheus::Counter* leases_granted_ = nullptr;
  std::array<prometheus::Counter*, kNumEndCauses> leases_ended_{};
  prometheus::Histogram* store_commit_ = nullptr;
  prometheus::Counter* store_commit_failures_ = nullptr;
};

// The registry's sizes, read from a source function at every scrape. The
// source is set once the registry exists and cleared before it goes away
// (a scrape during shutdown then sees no families, not a freed registry).
class RegistryStatsCollectable : public prometheus::Collectable {
 public:
  // `source` (empty: none) is called on an HTTP server thread with no lock
  // of ours held, possibly concurrently with itself; it must be
  // thread-safe. Safe to call at any time.
  void SetSource(std::function<RegistryStats()> source)
      ABSL_LOCKS_EXCLUDED(mu_);

  std::vector<prometheus::MetricFamily> Collect() const override
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const std::function<RegistryStats()>> source_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_REGISTRY_REGISTRY_METRICS_H_
