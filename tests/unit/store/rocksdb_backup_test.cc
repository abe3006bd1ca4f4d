// Online backup under concurrent commits, and restore into a fresh data dir,
// with the real RocksDB.

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/field_error.h"
#include "service/store/rocksdb_store.h"
#include "tests/unit/store/store_test_util.h"

namespace registrar {
namespace {

namespace fs = std::filesystem;
using ::registrar::testing_util::Issued;
using ::registrar::testing_util::MakeRecord;
using ::registrar::testing_util::TempDir;
using ::testing::HasSubstr;

RocksDbStoreOptions OptionsAt(const std::string& path, Durability d) {
  RocksDbStoreOptions o;
  o.path = path;
  o.durability = d;
  o.node_id = 3;
  o.memtable_bytes = 1 << 20;
  o.block_cache_bytes = 1 << 20;
  return o;
}

class BackupTest : public ::testing::TestWithParam<Durability> {};

// Writers commit all the time; a backup is taken in the middle. Restored
// into a fresh dir, the copy holds exactly the records of the revisions up
// to the backup's revision (everything acknowledged before the backup
// started among them), and commits continue from the next revision.
TEST_P(BackupTest, BackupUnderLoadRestoresEverythingUpToItsRevision) {
  TempDir dir;
  auto opened = RocksDbStore::Open(OptionsAt(dir.Sub("data"), GetParam()));
  ASSERT_TRUE(opened.ok()) << opened.status();
  RocksDbStore& store = **opened;
  ASSERT_TRUE(store.Load([](RecordView&&) {}).ok());

  std::mutex mu;
  std::map<uint64_t, Id128> acked;  // revision -> record
  std::atomic<uint64_t> next{1};
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  auto writer = [&] {
    while (!stop.load()) {
      const uint64_t n = next++;
      WriteBatch b;
      b.events.push_back(Issued(MakeRecord(n)));
      if (!store.Commit(&b).ok()) {
        ++failures;
        continue;
      }
      std::lock_guard<std::mutex> lock(mu);
      acked[b.events[0].revision] = b.events[0].record.id;
    }
  };
  std::vector<std::thread> writers;
  for (int i = 0; i < 4; ++i) writers.emplace_back(writer);
  auto acked_count = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return acked.size();
  };
  while (acked_count() < 300) std::this_thread::yield();
  const uint64_t acked_before = store.LastRevision();
  auto backup = store.Backup(dir.Sub("backup"));
  ASSERT_TRUE(backup.ok()) << backup.status();
  while (store.LastRevision() < backup->revision + 100) {
    std::this_thread::yield();  // commits go on after the backup
  }
  stop = true;
  for (std::thread& t : writers) t.join();
  ASSERT_EQ(failures.load(), 0);
  EXPECT_GE(backup->revision, acked_before);
  EXPECT_LT(backup->revision, store.LastRevision());

  // A second backup into the same directory is refused.
  EXPECT_EQ(store.Backup(dir.Sub("backup")).status().code(),
            absl::StatusCode::kAlreadyExists);

  auto restored =
      RocksDbStore::Restore(dir.Sub("backup"), dir.Sub("restored"), 3);
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ(restored->revision, backup->revision);
  auto reopened =
      RocksDbStore::Open(OptionsAt(dir.Sub("restored"), GetParam()));
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  std::map<uint64_t, Id128> loaded;
  auto meta =
      (*reopened)->Load([&](RecordView&& r) { loaded[r.revision] = r.id; });
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ(meta->revision, backup->revision);
  std::map<uint64_t, Id128> want;
  for (const auto& [revision, id] : acked) {
    if (revision <= backup->revision) want[revision] = id;
  }
  ASSERT_EQ(want.size(), backup->revision);  // revisions are gap-free
  EXPECT_EQ(loaded, want);
  EXPECT_EQ(backup->records, want.size());

  WriteBatch b;
  b.events.push_back(Issued(MakeRecord(1'000'000)));
  ASSERT_TRUE((*reopened)->Commit(&b).ok());
  EXPECT_EQ(b.events[0].revision, backup->revision + 1);
}

INSTANTIATE_TEST_SUITE_P(Durabilities, BackupTest,
                         ::testing::Values(Durability::kFsync,
                                           Durability::kNone),
                         [](const auto& info) {
                           return std::string(DurabilityName(info.param));
                         });

TEST(StoreRestoreTest, RefusesANonEmptyDataDirAndAnotherNodesBackup) {
  TempDir dir;
  {
    auto opened =
        RocksDbStore::Open(OptionsAt(dir.Sub("data"), Durability::kFsync));
    ASSERT_TRUE(opened.ok()) << opened.status();
    ASSERT_TRUE((*opened)->Load([](RecordView&&) {}).ok());
    WriteBatch b;
    b.events.push_back(Issued(MakeRecord(1)));
    ASSERT_TRUE((*opened)->Commit(&b).ok());
    ASSERT_TRUE((*opened)->Backup(dir.Sub("backup")).ok());
  }
  fs::create_directories(dir.Sub("busy"));
  std::ofstream(dir.Sub("busy") + "/keep.txt") << "keep";
  auto busy = RocksDbStore::Restore(dir.Sub("backup"), dir.Sub("busy"), 3);
  EXPECT_EQ(busy.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(busy.status().message()), HasSubstr("not empty"));
  EXPECT_EQ(testing_util::ListFiles(dir.Sub("busy")).size(), 1u);

  auto other = RocksDbStore::Restore(dir.Sub("backup"), dir.Sub("other"), 4);
  EXPECT_EQ(other.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(other.status().message()),
              HasSubstr("belongs to node_id 3"));
  EXPECT_EQ(LimitOf(other.status()), Limit::kNodeId);
  EXPECT_FALSE(fs::exists(dir.Sub("other")));

  auto missing = RocksDbStore::Restore(dir.Sub("nothing"), dir.Sub("x"), 3);
  EXPECT_FALSE(missing.ok());
  EXPECT_FALSE(fs::exists(dir.Sub("x")));
}

}  // namespace
}  // namespace registrar
