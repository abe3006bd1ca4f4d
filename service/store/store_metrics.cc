#include "service/store/store_metrics.h"

#include <string>
#include <utility>
#include <vector>

#include "prometheus/metric_family.h"
#include "service/metrics/families.h"
#include "service/store/rocksdb_internal.h"
#include "service/store/rocksdb_store.h"

namespace registrar {
namespace {

class StoreCollectable final : public prometheus::Collectable {
 public:
  explicit StoreCollectable(std::shared_ptr<StoreMetricsLink> link)
      : link_(std::move(link)) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    StoreOperatorStats s;
    {
      absl::MutexLock lock(&link_->mu);
      if (link_->store == nullptr) return {};
      s = link_->store->operator_stats();
    }
    constexpr auto kGauge = prometheus::MetricType::Gauge;
    std::vector<prometheus::MetricFamily> out;
    out.push_back(ScalarFamily("registrar_store_write_stall_seconds_total",
                               "Seconds writes waited in RocksDB write stalls "
                               "(slowdowns and stops) since the store opened.",
                               prometheus::MetricType::Counter,
                               s.write_stall_seconds));
    out.push_back(
        ScalarFamily("registrar_store_write_stopped",
                     "1 while RocksDB stops writes (too many memtables "
                     "or level-0 files, or too much pending compaction).",
                     kGauge, s.write_stopped ? 1 : 0));
    out.push_back(
        ScalarFamily("registrar_store_pending_compaction_bytes",
                     "Estimated bytes compaction must rewrite to bring "
                     "every level within its target size.",
                     kGauge, static_cast<double>(s.pending_compaction_bytes)));
    out.push_back(ScalarFamily("registrar_store_wal_bytes",
                               "Bytes of WAL files in the data directory.",
                               kGauge, static_cast<double>(s.wal_bytes)));
    out.push_back(ScalarFamily("registrar_store_sst_bytes",
                               "Bytes of live table (SST) files, all families.",
                               kGauge, static_cast<double>(s.sst_bytes)));
    out.push_back(ScalarFamily("registrar_store_memtable_bytes",
                               "Bytes of RocksDB memtables (memory, not disk).",
                               kGauge, static_cast<double>(s.memtable_bytes)));
    out.push_back(ScalarFamily(
        "registrar_store_recovery_attempts_total",
        "Times the store tried to recover (reopen the database) while it "
        "could not write; at most one per recovery interval.",
        prometheus::MetricType::Counter,
        static_cast<double>(s.recovery_attempts)));
    return out;
  }

 private:
  const std::shared_ptr<StoreMetricsLink> link_;
};

}  // namespace

std::shared_ptr<prometheus::Collectable> MakeStoreCollectable(
    std::shared_ptr<StoreMetricsLink> link) {
  return std::make_shared<StoreCollectable>(std::move(link));
}

StoreOperatorStats RocksDbStore::operator_stats() {
  using rocksdb_internal::AggregatedProperty;
  StoreOperatorStats s;
  uint64_t wal = 0;
  rocksdb_internal::DirBytes(path_, &wal);
  s.wal_bytes = wal;
  s.recovery_attempts = recovery_attempts_.load();
  absl::ReaderMutexLock lock(&db_mu_);
  if (h_ == nullptr) return s;
  rocksdb::DB* db = h_->db.get();
  std::map<std::string, std::string> db_stats;
  if (db->GetMapProperty(rocksdb::DB::Properties::kDBStats, &db_stats)) {
    auto it = db_stats.find("db.user_write_stall_micros");
    if (it != db_stats.end()) {
      s.write_stall_seconds = std::strtod(it->second.c_str(), nullptr) / 1e6;
    }
  }
  uint64_t stopped = 0;
  s.write_stopped =
      db->GetIntProperty(rocksdb::DB::Properties::kIsWriteStopped, &stopped) &&
      stopped != 0;
  s.pending_compaction_bytes =
      AggregatedProperty(db, "rocksdb.estimate-pending-compaction-bytes");
  s.sst_bytes = AggregatedProperty(db, "rocksdb.live-sst-files-size");
  s.memtable_bytes = AggregatedProperty(db, "rocksdb.cur-size-all-mem-tables");
  return s;
}

}  // namespace registrar
