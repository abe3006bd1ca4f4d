// The RocksDB store's metrics collectable, on a real store.

#include "service/store/store_metrics.h"

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "prometheus/metric_family.h"
#include "service/store/rocksdb_store.h"
#include "tests/unit/store/store_test_util.h"

namespace registrar {
namespace {

using ::registrar::testing_util::Issued;
using ::registrar::testing_util::MakeRecord;
using ::registrar::testing_util::TempDir;

std::map<std::string, double> Values(const prometheus::Collectable& c) {
  std::map<std::string, double> out;
  for (const prometheus::MetricFamily& f : c.Collect()) {
    EXPECT_EQ(f.metric.size(), 1u) << f.name;
    if (f.metric.empty()) continue;
    out[f.name] = f.type == prometheus::MetricType::Counter
                      ? f.metric[0].counter.value
                      : f.metric[0].gauge.value;
  }
  return out;
}

TEST(StoreMetricsTest, ReportsRocksDbFiguresAndNothingAfterTheStoreCloses) {
  TempDir dir;
  RocksDbStoreOptions o;
  o.path = dir.Sub("data");
  auto opened = RocksDbStore::Open(o);
  ASSERT_TRUE(opened.ok()) << opened.status();
  std::unique_ptr<RocksDbStore> store = *std::move(opened);
  ASSERT_TRUE(store->Load([](RecordView&&) {}).ok());
  std::shared_ptr<prometheus::Collectable> metrics =
      store->MetricsCollectable();

  for (uint64_t n = 1; n <= 100; ++n) {
    WriteBatch b;
    b.events.push_back(Issued(MakeRecord(n)));
    ASSERT_TRUE(store->Commit(&b).ok());
  }
  std::map<std::string, double> v = Values(*metrics);
  ASSERT_EQ(v.size(), 7u);
  EXPECT_EQ(v.count("registrar_store_write_stall_seconds_total"), 1u);
  EXPECT_EQ(v["registrar_store_write_stopped"], 0);
  EXPECT_EQ(v.count("registrar_store_pending_compaction_bytes"), 1u);
  EXPECT_GT(v["registrar_store_wal_bytes"], 100 * 20);
  EXPECT_EQ(v["registrar_store_sst_bytes"], 0);  // nothing flushed yet
  EXPECT_GT(v["registrar_store_memtable_bytes"], 0);
  EXPECT_EQ(v["registrar_store_recovery_attempts_total"], 0);  // none needed

  ASSERT_TRUE(store->Flush().ok());
  v = Values(*metrics);
  EXPECT_GT(v["registrar_store_sst_bytes"], 0);

  store.reset();
  EXPECT_TRUE(metrics->Collect().empty());
}

}  // namespace
}  // namespace registrar
