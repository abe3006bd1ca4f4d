#include "service/registry/registry_metrics.h"

#include <string>
#include <utility>

#include "prometheus/client_metric.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "service/metrics/families.h"

namespace registrar {
namespace {

// Kinds that are records (and so label the per-kind families).
constexpr Kind kRecordKinds[] = {Kind::kThread, Kind::kRun, Kind::kRequest,
                                 Kind::kConnection};

bool ValidCause(EndCause cause) {
  return static_cast<int>(cause) < kNumEndCauses;
}
bool ValidKind(Kind kind) { return static_cast<int>(kind) < kNumKinds; }

}  // namespace

RegistryMetrics::RegistryMetrics(prometheus::Registry& registry) {
  auto& issued = prometheus::BuildCounter()
                     .Name("registrar_ids_issued_total")
                     .Help("IDs issued, by kind.")
                     .Register(registry);
  auto& released = prometheus::BuildCounter()
                       .Name("registrar_released_total")
                       .Help("Records ended, by kind and reason.")
                       .Register(registry);
  for (Kind kind : kRecordKinds) {
    const std::string kind_name(KindName(kind));
    const int k = static_cast<int>(kind);
    issued_[k] = &issued.Add({{"kind", kind_name}});
    for (int c = 0; c < kNumEndCauses; ++c) {
      released_[k][c] = &released.Add(
          {{"kind", kind_name},
           {"reason", std::string(EndCauseName(static_cast<EndCause>(c)))}});
    }
  }
  leases_granted_ = &prometheus::BuildCounter()
                         .Name("registrar_leases_granted_total")
                         .Help("Leases granted.")
                         .Register(registry)
                         .Add({});
  auto& leases_ended = prometheus::BuildCounter()
                           .Name("registrar_leases_ended_total")
                           .Help("Leases ended, by reason.")
                           .Register(registry);
  for (int c = 0; c < kNumEndCauses; ++c) {
    leases_ended_[c] = &leases_ended.Add(
        {{"reason", std::string(EndCauseName(static_cast<EndCause>(c)))}});
  }
  store_commit_ = &prometheus::BuildHistogram()
                       .Name("registrar_store_commit_seconds")
                       .Help(
                           "Latency of store commits made by the registry "
                           "(WAL write and, in fsync mode, fsync; shared "
                           "by concurrent calls through group commit).")
                       .Register(registry)
                       .Add({}, LatencyBuckets());
  store_commit_failures_ =
      &prometheus::BuildCounter()
           .Name("registrar_store_commit_failures_total")
           .Help("Store commits refused (disk full, I/O error, ...).")
           .Register(registry)
           .Add({});
}

void RegistryMetrics::OnIssued(Kind kind, uint64_t count) {
  if (!ValidKind(kind)) return;
  if (prometheus::Counter* c = issued_[static_cast<int>(kind)]) {
    c->Increment(static_cast<double>(count));
  }
}

void RegistryMetrics::OnEnded(Kind kind, EndCause cause, uint64_t count) {
  if (!ValidKind(kind) || !ValidCause(cause)) return;
  if (prometheus::Counter* c =
          released_[static_cast<int>(kind)][static_cast<int>(cause)]) {
    c->Increment(static_cast<double>(count));
  }
}

void RegistryMetrics::OnLeaseGranted() { leases_granted_->Increment(); }

void RegistryMetrics::OnLeaseEnded(EndCause cause) {
  if (!ValidCause(cause)) return;
  leases_ended_[static_cast<int>(cause)]->Increment();
}

void RegistryMetrics::OnStoreCommit(absl::Duration took, bool ok) {
  store_commit_->Observe(absl::ToDoubleSeconds(took));
  if (!ok) store_commit_failures_->Increment();
}

void RegistryStatsCollectable::SetSource(
    std::function<RegistryStats()> source) {
  std::shared_ptr<const std::function<RegistryStats()>> p;
  if (source) {
    p = std::make_shared<const std::function<RegistryStats()>>(
        std::move(source));
  }
  absl::MutexLock lock(&mu_);
  source_ = std::move(p);
}

std::vector<prometheus::MetricFamily> RegistryStatsCollectable::Collect()
    const {
  std::shared_ptr<const std::function<RegistryStats()>> source;
  {
    absl::MutexLock lock(&mu_);
    source = source_;
  }
  if (source == nullptr) return {};
  const RegistryStats stats = (*source)();

  std::vector<prometheus::MetricFamily> families;
  families.reserve(6);
  prometheus::MetricFamily live;
  live.name = "registrar_live_records";
  live.help = "Live records held by the registry, by kind.";
  live.type = prometheus::MetricType::Gauge;
  for (Kind kind : kRecordKinds) {
    prometheus::ClientMetric m;
    m.label.push_back({"kind", std::string(KindName(kind))});
    m.gauge.value =
        static_cast<double>(stats.live_records[static_cast<int>(kind)]);
    live.metric.push_back(std::move(m));
  }
  families.push_back(std::move(live));
  families.push_back(ScalarFamily("registrar_leases",
                                  "Leases held by the registry.",
                                  prometheus::MetricType::Gauge, stats.leases));
  families.push_back(
      ScalarFamily("registrar_tombstones",
                   "Tombstones (records of ended IDs) held by the registry.",
                   prometheus::MetricType::Gauge, stats.tombstones));
  families.push_back(ScalarFamily(
      "registrar_registry_memory_bytes",
      "Bytes the registry's record tables hold: nodes, ID and owner indexes, "
      "side table, tombstone queue (label and reason strings not counted).",
      prometheus::MetricType::Gauge, stats.memory_bytes));
  families.push_back(ScalarFamily(
      "registrar_tombstones_dropped_early_total",
      "Tombstones dropped before their retention ended because their owner "
      "held more than --owner_tombstones.",
      prometheus::MetricType::Counter, stats.tombstones_dropped_early));
  families.push_back(
      ScalarFamily("registrar_store_revision", "Last committed store revision.",
                   prometheus::MetricType::Gauge, stats.store_revision));
  families.push_back(ScalarFamily(
      "registrar_store_batches_total",
      "Batches committed to the store (about one per changing call).",
      prometheus::MetricType::Counter, stats.store_batches));
  families.push_back(ScalarFamily(
      "registrar_store_writes_total",
      "Store backend writes; fsyncs in fsync mode. batches / writes is "
      "the number of calls per fsync (group commit).",
      prometheus::MetricType::Counter, stats.store_writes));
  return families;
}

}  // namespace registrar
