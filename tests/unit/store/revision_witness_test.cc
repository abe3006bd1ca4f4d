// The revision witness, and RocksDbStore::Open's use of it, on real files.

#include "service/store/revision_witness.h"

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/store/rocksdb_store.h"
#include "tests/unit/store/store_test_util.h"

namespace registrar {
namespace {

namespace fs = std::filesystem;
using ::registrar::testing_util::Issued;
using ::registrar::testing_util::ListFiles;
using ::registrar::testing_util::MakeRecord;
using ::registrar::testing_util::TempDir;
using ::testing::HasSubstr;

TEST(RevisionWitnessTest, WritesReadsAndRefusesGarbage) {
  TempDir dir;
  auto none = RevisionWitness::Read(dir.path());
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_FALSE(none->has_value());

  auto w = RevisionWitness::Open(dir.path(), 7);
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(RevisionWitness::Read(dir.path())->value_or(0), 7u);
  ASSERT_TRUE((*w)->Write(123456789, /*sync=*/false).ok());
  EXPECT_EQ(RevisionWitness::Read(dir.path())->value_or(0), 123456789u);
  w->reset();

  std::ofstream(dir.path() + "/" + kRevisionWitnessFile) << "12x\n\x1b[2J";
  auto garbage = RevisionWitness::Read(dir.path());
  EXPECT_EQ(garbage.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(garbage.status().message()),
              HasSubstr("not a revision"));
  EXPECT_THAT(std::string(garbage.status().message()), HasSubstr("\\x1b"));
}

RocksDbStoreOptions Options(const std::string& path, bool accept = false) {
  RocksDbStoreOptions o;
  o.path = path;
  o.accept_data_loss = accept;
  return o;
}

// Commits `n` records and closes without flushing (as a kill -9 would leave
// it: everything is in the WAL). Returns the last revision.
uint64_t CommitAndDrop(const std::string& path, int n) {
  auto s = RocksDbStore::Open(Options(path));
  EXPECT_TRUE(s.ok()) << s.status();
  if (!s.ok()) return 0;
  EXPECT_TRUE((*s)->Load([](RecordView&&) {}).ok());
  for (int i = 1; i <= n; ++i) {
    WriteBatch b;
    b.events.push_back(Issued(MakeRecord(i)));
    EXPECT_TRUE((*s)->Commit(&b).ok());
  }
  return (*s)->LastRevision();
}

TEST(RevisionWitnessTest,
     DeletedWalIsRefusedUntouchedThenAcceptedWithoutReuse) {
  TempDir dir;
  const std::string path = dir.Sub("data");
  const uint64_t last = CommitAndDrop(path, 20);
  ASSERT_EQ(last, 20u);
  int wals = 0;
  for (const auto& e : fs::directory_iterator(path)) {
    if (e.path().extension() == ".log") {
      fs::remove(e.path());
      ++wals;
    }
  }
  ASSERT_EQ(wals, 1);
  const auto before = ListFiles(path);

  auto refused = RocksDbStore::Open(Options(path));
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kDataLoss)
      << refused.status();
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("damaged"));
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("up to 20 that were acknowledged"));
  EXPECT_EQ(ListFiles(path), before) << "the refused dir was changed";

  auto accepted = RocksDbStore::Open(Options(path, /*accept=*/true));
  ASSERT_TRUE(accepted.ok()) << accepted.status();
  EXPECT_THAT((*accepted)->recovery_note(), HasSubstr("the loss was accepted"));
  int loaded = 0;
  auto meta = (*accepted)->Load([&](RecordView&&) { ++loaded; });
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ(loaded, 0);
  EXPECT_EQ(meta->revision, 20u);
  WriteBatch b;
  b.events.push_back(Issued(MakeRecord(99)));
  ASSERT_TRUE((*accepted)->Commit(&b).ok());
  EXPECT_EQ(b.events[0].revision, 21u) << "a revision was handed out twice";
}

}  // namespace
}  // namespace registrar
