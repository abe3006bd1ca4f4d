// RocksDbStore against a real RocksDB in temporary directories.

#include "service/store/rocksdb_store.h"

#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rocksdb/db.h"
#include "service/common/field_error.h"
#include "service/id/id.h"
#include "tests/unit/store/store_test_util.h"

namespace registrar {
namespace {

using ::registrar::testing_util::ExpectSameRecord;
using ::registrar::testing_util::Issued;
using ::registrar::testing_util::ListFiles;
using ::registrar::testing_util::MakeRecord;
using ::registrar::testing_util::TempDir;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kChildPathEnv[] = "REGISTRAR_STORE_TEST_CHILD_PATH";

RocksDbStoreOptions Options(const std::string& path,
                            Durability d = Durability::kFsync,
                            uint32_t node_id = 0) {
  RocksDbStoreOptions o;
  o.path = path;
  o.durability = d;
  o.node_id = node_id;
  return o;
}

std::unique_ptr<RocksDbStore> MustOpen(const RocksDbStoreOptions& o) {
  auto s = RocksDbStore::Open(o);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(s).value() : nullptr;
}

// Every record Load streams, by ID.
std::map<Id128, RecordView> LoadAll(Store& store, StoreMeta* meta = nullptr) {
  std::map<Id128, RecordView> out;
  auto m = store.Load([&](RecordView&& r) {
    const Id128 id = r.id;
    out.emplace(id, std::move(r));
  });
  EXPECT_TRUE(m.ok()) << m.status();
  if (meta != nullptr && m.ok()) *meta = *m;
  return out;
}

// Sets a meta key with the raw RocksDB API (for refusal tests).
void PutRawMeta(const std::string& path, const std::string& key,
                const std::string& value) {
  std::vector<std::string> names;
  ASSERT_TRUE(
      rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const auto& n : names)
    cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  ASSERT_TRUE(
      rocksdb::DB::Open(rocksdb::DBOptions(), path, cfs, &handles, &db).ok());
  ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), key, value).ok());
  for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
  delete db;
}

TEST(RocksDbStoreTest, RoundTripsEveryFieldThroughReopen) {
  TempDir dir;
  std::vector<RecordView> written;
  {
    auto store = MustOpen(Options(dir.path()));
    ASSERT_NE(store, nullptr);
    auto meta = store->Load([](RecordView&&) { FAIL() << "fresh store"; });
    ASSERT_TRUE(meta.ok()) << meta.status();
    EXPECT_EQ(meta->revision, 0u);

    WriteBatch b;
    int n = 0;
    for (Kind k :
         {Kind::kThread, Kind::kRun, Kind::kRequest, Kind::kConnection}) {
      b.events.push_back(Issued(MakeRecord(++n, k)));
    }
    RecordView ended = MakeRecord(++n, Kind::kRequest);
    ended.state = State::kReleased;
    ended.ended_at = absl::FromUnixMillis(1'750'000'100'000);
    ended.end_reason = "connection closed";
    b.events.push_back({0, EventType::kReleased, ended});
    RecordView bare = MakeRecord(++n, Kind::kThread);
    bare.labels = std::make_shared<const Labels>();
    bare.connection = Id128{};
    b.events.push_back(Issued(bare));
    ASSERT_TRUE(store->Commit(&b).ok());
    for (size_t i = 0; i < b.events.size(); ++i) {
      EXPECT_EQ(b.events[i].revision, i + 1);
      EXPECT_EQ(b.events[i].record.revision, i + 1);
      written.push_back(b.events[i].record);
    }
  }
  auto store = MustOpen(Options(dir.path()));
  ASSERT_NE(store, nullptr);
  StoreMeta meta;
  auto loaded = LoadAll(*store, &meta);
  ASSERT_EQ(loaded.size(), written.size());
  for (const RecordView& w : written) {
    SCOPED_TRACE(FormatUuid(w.id));
    ASSERT_TRUE(loaded.count(w.id));
    ExpectSameRecord(w, loaded[w.id]);
  }
  EXPECT_EQ(meta.revision, written.size());
}

TEST(RocksDbStoreTest, LaterEventOfARecordReplacesIt) {
  TempDir dir;
  auto store = MustOpen(Options(dir.path()));
  RecordView r = MakeRecord(1);
  WriteBatch issue;
  issue.events.push_back(Issued(r));
  ASSERT_TRUE(store->Commit(&issue).ok());
  r.state = State::kExpired;
  r.ended_at = absl::FromUnixMillis(1'750'000'000'500);
  r.end_reason = "lease expired";
  WriteBatch expire;
  expire.events.push_back({0, EventType::kExpired, r});
  ASSERT_TRUE(store->Commit(&expire).ok());
  auto loaded = LoadAll(*store);
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[r.id].state, State::kExpired);
  EXPECT_EQ(loaded[r.id].revision, 2u);
  EXPECT_EQ(loaded[r.id].end_reason, "lease expired");
}

TEST(RocksDbStoreTest, RevisionsStayGapFreeAcrossReopen) {
  TempDir dir;
  uint64_t next = 1;
  for (int round = 0; round < 3; ++round) {
    auto store = MustOpen(Options(dir.path()));
    ASSERT_NE(store, nullptr);
    EXPECT_EQ(store->LastRevision(), next - 1);
    StoreMeta meta;
    LoadAll(*store, &meta);
    EXPECT_EQ(meta.revision, next - 1);
    for (int i = 0; i < 5; ++i) {
      WriteBatch b;
      b.events.push_back(Issued(MakeRecord(next)));
      b.events.push_back(Issued(MakeRecord(next + 1000)));
      ASSERT_TRUE(store->Commit(&b).ok());
      EXPECT_EQ(b.events[0].revision, next);
      EXPECT_EQ(b.events[1].revision, next + 1);
      next += 2;
    }
    // A batch without events uses no revision.
    WriteBatch lease_only;
    lease_only.put_leases.push_back({Id128{7, 7}, "gw", absl::Seconds(10)});
    ASSERT_TRUE(store->Commit(&lease_only).ok());
    EXPECT_EQ(store->LastRevision(), next - 1);
  }
}

TEST(RocksDbStoreTest, LeasesPutAndDeleteSurviveReopen) {
  TempDir dir;
  {
    auto store = MustOpen(Options(dir.path()));
    WriteBatch b;
    b.put_leases.push_back({Id128{1, 1}, "gateway-1", absl::Seconds(10)});
    b.put_leases.push_back({Id128{2, 2}, "gateway-2", absl::Seconds(20)});
    b.put_leases.push_back(
        {Id128{3, 3}, "gateway-3", absl::Milliseconds(1500)});
    ASSERT_TRUE(store->Commit(&b).ok());
    WriteBatch revoke;
    revoke.delete_leases.push_back(Id128{2, 2});
    ASSERT_TRUE(store->Commit(&revoke).ok());
  }
  auto store = MustOpen(Options(dir.path()));
  StoreMeta meta;
  LoadAll(*store, &meta);
  ASSERT_EQ(meta.leases.size(), 2u);
  std::sort(meta.leases.begin(), meta.leases.end(),
            [](const LeaseView& a, const LeaseView& b) { return a.id < b.id; });
  EXPECT_EQ(meta.leases[0].id, (Id128{1, 1}));
  EXPECT_EQ(meta.leases[0].holder, "gateway-1");
  EXPECT_EQ(meta.leases[0].ttl, absl::Seconds(10));
  EXPECT_EQ(meta.leases[1].id, (Id128{3, 3}));
  EXPECT_EQ(meta.leases[1].ttl, absl::Milliseconds(1500));
}

TEST(RocksDbStoreTest, DropRecordsDeletesThem) {
  TempDir dir;
  {
    auto store = MustOpen(Options(dir.path()));
    WriteBatch b;
    for (int i = 1; i <= 4; ++i) b.events.push_back(Issued(MakeRecord(i)));
    ASSERT_TRUE(store->Commit(&b).ok());
    WriteBatch drop;
    drop.drop_records = {MakeRecord(2).id, MakeRecord(4).id,
                         Id128{99, 99} /* never existed: no error */};
    ASSERT_TRUE(store->Commit(&drop).ok());
    EXPECT_EQ(store->LastRevision(), 4u);
  }
  auto store = MustOpen(Options(dir.path()));
  auto loaded = LoadAll(*store);
  EXPECT_EQ(loaded.size(), 2u);
  EXPECT_TRUE(loaded.count(MakeRecord(1).id));
  EXPECT_TRUE(loaded.count(MakeRecord(3).id));
  // Dropping a record does not touch the event log.
  std::vector<Event> events;
  ASSERT_TRUE(store->ReadEvents(1, 10, &events).ok());
  EXPECT_EQ(events.size(), 4u);
}

TEST(RocksDbStoreTest, ClockHighWaterPersistsAsMaximum) {
  TempDir dir;
  {
    auto store = MustOpen(Options(dir.path()));
    WriteBatch a;
    a.clock_high_water_ms = 1'750'000'005'000;
    ASSERT_TRUE(store->Commit(&a).ok());
    WriteBatch lower;  // must not move it back
    lower.clock_high_water_ms = 1'750'000'001'000;
    ASSERT_TRUE(store->Commit(&lower).ok());
    WriteBatch unchanged;  // 0: unchanged
    unchanged.events.push_back(Issued(MakeRecord(1)));
    ASSERT_TRUE(store->Commit(&unchanged).ok());
  }
  {
    auto store = MustOpen(Options(dir.path()));
    StoreMeta meta;
    LoadAll(*store, &meta);
    EXPECT_EQ(meta.clock_high_water_ms, 1'750'000'005'000u);
    WriteBatch higher;
    higher.clock_high_water_ms = 1'750'000'009'000;
    ASSERT_TRUE(store->Commit(&higher).ok());
  }
  auto store = MustOpen(Options(dir.path()));
  StoreMeta meta;
  LoadAll(*store, &meta);
  EXPECT_EQ(meta.clock_high_water_ms, 1'750'000'009'000u);
}

TEST(RocksDbStoreTest, ReadEventsInOrderWithLimitAndOutOfRangeAfterCompact) {
  TempDir dir;
  {
    auto store = MustOpen(Options(dir.path()));
    EXPECT_EQ(store->OldestRevision(), 1u);
    for (int i = 1; i <= 10; ++i) {
      WriteBatch b;
      RecordView r = MakeRecord(i);
      if (i % 2 == 0) {
        r.state = State::kReleased;
        r.ended_at = absl::FromUnixMillis(1'750'000'000'999);
      }
      b.events.push_back(
          {0, i % 2 ? EventType::kIssued : EventType::kReleased, r});
      ASSERT_TRUE(store->Commit(&b).ok());
    }
    std::vector<Event> all;
    ASSERT_TRUE(store->ReadEvents(1, 100, &all).ok());
    ASSERT_EQ(all.size(), 10u);
    for (size_t i = 0; i < all.size(); ++i) {
      EXPECT_EQ(all[i].revision, i + 1);
      EXPECT_EQ(all[i].record.revision, i + 1);
      EXPECT_EQ(all[i].record.id, MakeRecord(i + 1).id);
      EXPECT_EQ(all[i].type,
                (i + 1) % 2 ? EventType::kIssued : EventType::kReleased);
    }
    std::vector<Event> some;
    ASSERT_TRUE(store->ReadEvents(4, 3, &some).ok());
    ASSERT_EQ(some.size(), 3u);
    EXPECT_EQ(some[0].revision, 4u);
    EXPECT_EQ(some[2].revision, 6u);
    std::vector<Event> none;
    ASSERT_TRUE(store->ReadEvents(11, 5, &none).ok());
    EXPECT_TRUE(none.empty());

    ASSERT_TRUE(store->CompactEvents(6).ok());
    EXPECT_EQ(store->OldestRevision(), 6u);
    std::vector<Event> old;
    absl::Status s = store->ReadEvents(3, 5, &old);
    EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange) << s;
    EXPECT_THAT(std::string(s.message()),
                HasSubstr("oldest available revision is 6"));
    EXPECT_TRUE(old.empty());
    std::vector<Event> rest;
    ASSERT_TRUE(store->ReadEvents(6, 100, &rest).ok());
    ASSERT_EQ(rest.size(), 5u);
    EXPECT_EQ(rest.front().revision, 6u);
    EXPECT_EQ(rest.back().revision, 10u);
    // Compacting below an older revision changes nothing.
    ASSERT_TRUE(store->CompactEvents(2).ok());
    EXPECT_EQ(store->OldestRevision(), 6u);
  }
  auto store = MustOpen(Options(dir.path()));
  EXPECT_EQ(store->OldestRevision(), 6u);
  EXPECT_EQ(store->LastRevision(), 10u);
  std::vector<Event> old;
  EXPECT_EQ(store->ReadEvents(5, 1, &old).code(),
            absl::StatusCode::kOutOfRange);
  // Cannot forget the future: capped at last + 1.
  ASSERT_TRUE(store->CompactEvents(1000).ok());
  EXPECT_EQ(store->OldestRevision(), 11u);
  std::vector<Event> none;
  ASSERT_TRUE(store->ReadEvents(11, 10, &none).ok());
  EXPECT_TRUE(none.empty());
  WriteBatch b;
  b.events.push_back(Issued(MakeRecord(11)));
  ASSERT_TRUE(store->Commit(&b).ok());
  std::vector<Event> fresh;
  ASSERT_TRUE(store->ReadEvents(11, 10, &fresh).ok());
  ASSERT_EQ(fresh.size(), 1u);
  EXPECT_EQ(fresh[0].revision, 11u);
}

TEST(RocksDbStoreTest, CompactingInsideABatchKeepsExactlyTheNewerEvents) {
  TempDir dir;
  {
    auto store = MustOpen(Options(dir.path()));
    WriteBatch b;  // one batch: revisions 1..5 in one events entry
    for (uint64_t i = 1; i <= 5; ++i) b.events.push_back(Issued(MakeRecord(i)));
    ASSERT_TRUE(store->Commit(&b).ok());
    ASSERT_TRUE(store->CompactEvents(3).ok());
    EXPECT_EQ(store->OldestRevision(), 3u);
    std::vector<Event> events;
    ASSERT_TRUE(store->ReadEvents(4, 10, &events).ok());
    ASSERT_EQ(events.size(), 2u);
    EXPECT_EQ(events[0].revision, 4u);
    EXPECT_EQ(events[0].record.id, MakeRecord(4).id);
    EXPECT_EQ(store->ReadEvents(2, 10, &events).code(),
              absl::StatusCode::kOutOfRange);
  }
  // After a restart the oldest readable event is still 3, not 1.
  auto store = MustOpen(Options(dir.path()));
  EXPECT_EQ(store->OldestRevision(), 3u);
  std::vector<Event> events;
  ASSERT_TRUE(store->ReadEvents(3, 2, &events).ok());
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].revision, 3u);
  EXPECT_EQ(events[1].revision, 4u);
  EXPECT_EQ(events[1].record.id, MakeRecord(4).id);
}

TEST(RocksDbStoreTest, ConcurrentCommitsShareWritesInFsyncMode) {
  TempDir dir;
  auto store = MustOpen(Options(dir.path(), Durability::kFsync));
  ASSERT_NE(store, nullptr);
  LoadAll(*store);
  absl::Mutex mu;
  std::vector<uint64_t> heard;  // revisions, in listener order
  store->SetEventListener([&](const std::vector<Event>& events) {
    absl::MutexLock lock(&mu);
    for (const Event& e : events) heard.push_back(e.revision);
  });

  constexpr int kThreads = 8, kBatchesPerThread = 150;
  std::vector<std::vector<uint64_t>> revisions(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kBatchesPerThread; ++i) {
        WriteBatch b;
        const uint64_t n = uint64_t(t) * 100'000 + i * 2;
        b.events.push_back(Issued(MakeRecord(n)));
        if (i % 3 == 0) b.events.push_back(Issued(MakeRecord(n + 1)));
        ASSERT_TRUE(store->Commit(&b).ok());
        for (const Event& e : b.events) revisions[t].push_back(e.revision);
      }
    });
  }
  for (auto& th : threads) th.join();

  std::vector<uint64_t> all;
  for (const auto& r : revisions) all.insert(all.end(), r.begin(), r.end());
  std::sort(all.begin(), all.end());
  ASSERT_FALSE(all.empty());
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], i + 1);
  EXPECT_EQ(store->LastRevision(), all.size());
  {
    absl::MutexLock lock(&mu);
    ASSERT_EQ(heard.size(), all.size());
    for (size_t i = 0; i < heard.size(); ++i) ASSERT_EQ(heard[i], i + 1);
  }

  const GroupCommitter::Stats stats = store->commit_stats();
  EXPECT_EQ(stats.batches, uint64_t{kThreads * kBatchesPerThread});
  EXPECT_LT(stats.writes, stats.batches) << "no group commit happened";
  std::printf("%llu batches in %llu writes\n",
              static_cast<unsigned long long>(stats.batches),
              static_cast<unsigned long long>(stats.writes));

  store.reset();
  store = MustOpen(Options(dir.path()));
  EXPECT_EQ(LoadAll(*store).size(), all.size());
  EXPECT_EQ(store->LastRevision(), all.size());
  std::vector<Event> events;
  ASSERT_TRUE(store->ReadEvents(1, all.size() + 10, &events).ok());
  ASSERT_EQ(events.size(), all.size());
}

TEST(RocksDbStoreTest, OtherDurabilitiesPersistOnCleanClose) {
  for (Durability d : {Durability::kOs, Durability::kNone}) {
    SCOPED_TRACE(std::string(DurabilityName(d)));
    TempDir dir;
    {
      auto store = MustOpen(Options(dir.path(), d));
      EXPECT_EQ(store->durability(), d);
      WriteBatch b;
      b.events.push_back(Issued(MakeRecord(1)));
      b.put_leases.push_back({Id128{1, 2}, "gw", absl::Seconds(5)});
      b.clock_high_water_ms = 1'750'000'000'777;
      ASSERT_TRUE(store->Commit(&b).ok());
      EXPECT_TRUE(store->CheckWritable().ok());
    }
    auto store = MustOpen(Options(dir.path(), Durability::kFsync));
    StoreMeta meta;
    EXPECT_EQ(LoadAll(*store, &meta).size(), 1u);
    EXPECT_EQ(meta.revision, 1u);
    EXPECT_EQ(meta.leases.size(), 1u);
    EXPECT_EQ(meta.clock_high_water_ms, 1'750'000'000'777u);
  }
}

TEST(RocksDbStoreTest, NodeIdMismatchIsRefused) {
  TempDir dir;
  { ASSERT_NE(MustOpen(Options(dir.path(), Durability::kFsync, 3)), nullptr); }
  auto s = RocksDbStore::Open(Options(dir.path(), Durability::kFsync, 5));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.status().message()),
              HasSubstr("belongs to node_id 3, this server is node_id 5"));
  // The server names its flag; the store only tags which setting it was.
  EXPECT_EQ(LimitOf(s.status()), Limit::kNodeId);
  auto same = RocksDbStore::Open(Options(dir.path(), Durability::kFsync, 3));
  EXPECT_TRUE(same.ok()) << same.status();
  EXPECT_EQ((*same)->node_id(), 3u);
}

TEST(RocksDbStoreTest, ForeignDirectoryIsRefusedAndLeftIntact) {
  TempDir dir;
  const std::string file = dir.Sub("notes.txt");
  std::ofstream(file) << "not a database";
  const auto before = ListFiles(dir.path());
  auto s = RocksDbStore::Open(Options(dir.path()));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(
      std::string(s.status().message()),
      HasSubstr("is not a Registrar data directory; refusing to use it"));
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("notes.txt"));
  EXPECT_EQ(ListFiles(dir.path()), before);
  std::ifstream in(file);
  std::string content;
  std::getline(in, content);
  EXPECT_EQ(content, "not a database");

  // A plain file as the path is refused too.
  auto f = RocksDbStore::Open(Options(file));
  EXPECT_EQ(f.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(RocksDbStoreTest, ForeignRocksDbIsRefusedAndLeftIntact) {
  TempDir dir;
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir.path(), &db).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "user:1", "alice").ok());
    delete db;
  }
  const auto before = ListFiles(dir.path());
  auto s = RocksDbStore::Open(Options(dir.path()));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.status().message()),
              HasSubstr("is not a Registrar data directory"));
  EXPECT_EQ(ListFiles(dir.path()), before);
  rocksdb::DB* db = nullptr;
  ASSERT_TRUE(
      rocksdb::DB::OpenForReadOnly(rocksdb::Options(), dir.path(), &db).ok());
  std::string v;
  EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), "user:1", &v).ok());
  EXPECT_EQ(v, "alice");
  delete db;
}

TEST(RocksDbStoreTest, EmptyRocksDbFromAnInterruptedFirstOpenIsAdopted) {
  TempDir dir;
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir.path(), &db).ok());
    delete db;
  }
  auto store = MustOpen(Options(dir.path(), Durability::kFsync, 9));
  ASSERT_NE(store, nullptr);
  WriteBatch b;
  b.events.push_back(Issued(MakeRecord(1)));
  ASSERT_TRUE(store->Commit(&b).ok());
}

TEST(RocksDbStoreTest, LeftoversOfACreationBeforeCurrentAreAccepted) {
  TempDir dir;
  for (const char* name :
       {"LOCK", "LOG", "IDENTITY", "MANIFEST-000001", "000001.dbtmp"}) {
    std::ofstream(dir.Sub(name)) << "x";
  }
  auto store = MustOpen(Options(dir.path()));
  ASSERT_NE(store, nullptr);
  WriteBatch b;
  b.events.push_back(Issued(MakeRecord(1)));
  EXPECT_TRUE(store->Commit(&b).ok());
  // But a WAL or table file without CURRENT may be data: refused.
  TempDir other;
  std::ofstream(other.Sub("000003.log")) << "x";
  EXPECT_EQ(RocksDbStore::Open(Options(other.path())).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(RocksDbStoreTest, FreshVolumeWithLostAndFoundIsAccepted) {
  TempDir dir;
  std::filesystem::create_directory(dir.Sub("lost+found"));
  EXPECT_NE(MustOpen(Options(dir.path())), nullptr);
  // And a missing directory (with missing parents) is created.
  EXPECT_NE(MustOpen(Options(dir.Sub("a/b/c"))), nullptr);
}

TEST(RocksDbStoreTest, NewerFormatVersionIsRefused) {
  TempDir dir;
  { ASSERT_NE(MustOpen(Options(dir.path())), nullptr); }
  PutRawMeta(dir.path(), "registrar/format_version",
             std::to_string(kStoreFormatVersion + 1));
  auto s = RocksDbStore::Open(Options(dir.path()));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("newer Registrar"));
}

TEST(RocksDbStoreTest, SecondOpenInThisProcessIsRefused) {
  TempDir dir;
  auto first = MustOpen(Options(dir.path()));
  ASSERT_NE(first, nullptr);
  auto second = RocksDbStore::Open(Options(dir.path()));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr("is in use by another registrar process"));
  // Another spelling of the same directory is the same directory.
  const std::string other =
      dir.path() + "/../" +
      std::filesystem::path(dir.path()).filename().string();
  auto third = RocksDbStore::Open(Options(other));
  EXPECT_EQ(third.status().code(), absl::StatusCode::kFailedPrecondition)
      << third.status();
  // The first one still works.
  WriteBatch b;
  b.events.push_back(Issued(MakeRecord(1)));
  EXPECT_TRUE(first->Commit(&b).ok());
}

// Run only as the child process of SecondProcessIsRefused.
TEST(RocksDbStoreHelper, DISABLED_OpenFromChildProcess) {
  const char* path = std::getenv(kChildPathEnv);
  ASSERT_NE(path, nullptr);
  auto s = RocksDbStore::Open(Options(path));
  std::printf("CHILD_STATUS: %s\n", s.status().ToString().c_str());
  std::fflush(stdout);
  std::_Exit(s.ok() ? 0 : 3);
}

TEST(RocksDbStoreTest, SecondProcessIsRefused) {
  TempDir dir;
  auto first = MustOpen(Options(dir.path()));
  ASSERT_NE(first, nullptr);
  char exe[4096];
  const ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  ASSERT_GT(n, 0);
  exe[n] = '\0';
  const std::string cmd =
      std::string(kChildPathEnv) + "='" + dir.path() + "' '" + exe +
      "' --gtest_also_run_disabled_tests "
      "--gtest_filter=RocksDbStoreHelper.DISABLED_OpenFromChildProcess 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string output;
  char buf[512];
  while (fgets(buf, sizeof(buf), p) != nullptr) output += buf;
  const int rc = pclose(p);
  ASSERT_TRUE(WIFEXITED(rc)) << output;
  EXPECT_EQ(WEXITSTATUS(rc), 3) << output;
  EXPECT_THAT(output, HasSubstr("is in use by another registrar process"));
  EXPECT_THAT(output, Not(HasSubstr("this process already has it open")));
}

TEST(RocksDbStoreTest, CorruptionIsReportedAndNothingIsRemoved) {
  TempDir dir;
  {
    auto store = MustOpen(Options(dir.path()));
    WriteBatch b;
    b.events.push_back(Issued(MakeRecord(1)));
    ASSERT_TRUE(store->Commit(&b).ok());
    ASSERT_TRUE(store->Flush().ok());
  }
  // Overwrite the middle of the MANIFEST (the list of live files).
  std::string manifest;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    if (e.path().filename().string().rfind("MANIFEST-", 0) == 0) {
      manifest = e.path().string();
    }
  }
  ASSERT_FALSE(manifest.empty());
  {
    std::fstream f(manifest, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(10);
    const std::string junk(64, '\x5a');
    f.write(junk.data(), junk.size());
  }
  const auto before = ListFiles(dir.path());
  auto s = RocksDbStore::Open(Options(dir.path()));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss) << s.status();
  EXPECT_THAT(std::string(s.status().message()), HasSubstr(dir.path()));
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("Corruption"));
  for (const auto& [name, size] : before) {
    EXPECT_TRUE(std::filesystem::exists(name)) << name << " was removed";
  }
}

TEST(RocksDbStoreTest, CheckWritableOnAHealthyStore) {
  TempDir dir;
  auto store = MustOpen(Options(dir.path()));
  EXPECT_TRUE(store->CheckWritable().ok());
  EXPECT_TRUE(store->CheckWritable().ok());
  EXPECT_EQ(store->name(), "rocksdb");
}

TEST(RocksDbStoreTest, DiskUsageCountsFlushedBytes) {
  TempDir dir;
  auto store = MustOpen(Options(dir.path()));
  WriteBatch b;
  for (int i = 0; i < 1000; ++i) b.events.push_back(Issued(MakeRecord(i)));
  ASSERT_TRUE(store->Commit(&b).ok());
  StoreDiskUsage before = store->disk_usage();
  EXPECT_GT(before.wal_bytes, 0u);
  EXPECT_GT(before.memtable_bytes, 0u);
  ASSERT_TRUE(store->Flush().ok());
  StoreDiskUsage after = store->disk_usage();
  EXPECT_GT(after.live_sst_bytes, 0u);
  EXPECT_GT(after.records_sst_bytes, 0u);
  EXPECT_GT(after.events_sst_bytes, 0u);
  EXPECT_GE(after.dir_bytes, after.live_sst_bytes);
  ASSERT_TRUE(store->CompactAll().ok());
  const std::string stats = store->DebugStats(true);
  EXPECT_THAT(stats, HasSubstr("1 batches in 1 writes"));
  EXPECT_THAT(stats, HasSubstr("--- records ---"));
}

TEST(RocksDbStoreTest, InspectReportsTheDataDir) {
  TempDir dir;
  auto store = MustOpen(Options(dir.path(), Durability::kFsync, 12));
  WriteBatch b;
  b.events.push_back(Issued(MakeRecord(1, Kind::kThread)));
  b.events.push_back(Issued(MakeRecord(2, Kind::kThread)));
  b.events.push_back(Issued(MakeRecord(3, Kind::kConnection)));
  RecordView released = MakeRecord(4, Kind::kRun);
  released.state = State::kReleased;
  released.ended_at = absl::FromUnixMillis(1'750'000'000'500);
  b.events.push_back({0, EventType::kReleased, released});
  b.put_leases.push_back({Id128{1, 1}, "gw", absl::Seconds(10)});
  b.clock_high_water_ms = 1'750'000'000'900;
  ASSERT_TRUE(store->Commit(&b).ok());
  ASSERT_TRUE(store->CompactEvents(2).ok());

  auto check = [&](const DataDirInfo& info) {
    EXPECT_EQ(info.node_id, 12u);
    EXPECT_EQ(info.format_version, kStoreFormatVersion);
    EXPECT_GT(info.created_ms, 0);
    EXPECT_EQ(info.last_revision, 4u);
    EXPECT_EQ(info.clock_high_water_ms, 1'750'000'000'900u);
    EXPECT_EQ(info.records, 4u);
    EXPECT_EQ(info.records_by[int(Kind::kThread)][int(State::kLive)], 2u);
    EXPECT_EQ(info.records_by[int(Kind::kConnection)][int(State::kLive)], 1u);
    EXPECT_EQ(info.records_by[int(Kind::kRun)][int(State::kReleased)], 1u);
    EXPECT_EQ(info.leases, 1u);
    EXPECT_EQ(info.oldest_event_revision, 2u);
    EXPECT_EQ(info.newest_event_revision, 4u);
    EXPECT_GT(info.dir_bytes, 0u);
    const std::string text = info.ToString();
    EXPECT_THAT(text, HasSubstr("node_id: 12"));
    EXPECT_THAT(text, HasSubstr("thread live: 2"));
    EXPECT_THAT(text, HasSubstr("events: 3 (revisions 2..4)"));
  };
  // While the server has it open (read-only open sees the WAL).
  auto live = RocksDbStore::Inspect(dir.path());
  ASSERT_TRUE(live.ok()) << live.status();
  check(*live);
  store.reset();
  auto closed = RocksDbStore::Inspect(dir.path());
  ASSERT_TRUE(closed.ok()) << closed.status();
  check(*closed);
  std::printf("%s", closed->ToString().c_str());
}

TEST(RocksDbStoreTest, InspectRefusesMissingAndForeignDirs) {
  TempDir dir;
  EXPECT_EQ(RocksDbStore::Inspect(dir.Sub("missing")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("missing")));
  EXPECT_EQ(RocksDbStore::Inspect(dir.path()).status().code(),
            absl::StatusCode::kFailedPrecondition);  // empty: no database
  std::ofstream(dir.Sub("x")) << "x";
  auto s = RocksDbStore::Inspect(dir.path());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.status().message()),
              HasSubstr("not a Registrar data directory"));
}

TEST(RocksDbStoreTest, DataDirRemembersItsTagKeyAndRefusesAnother) {
  TempDir dir;
  {
    auto store = MustOpen(Options(dir.path()));
    ASSERT_NE(store, nullptr);
    // A new data dir takes the signing key.
    ASSERT_TRUE(store->AdoptTagKey({"0:aaaa"}, "0:aaaa").ok());
  }
  {
    auto store = MustOpen(Options(dir.path()));
    ASSERT_NE(store, nullptr);
    // Another key: refused, naming both, tagged for --key_file.
    absl::Status s = store->AdoptTagKey({"0:bbbb"}, "0:bbbb");
    EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("0:aaaa"));
    EXPECT_THAT(std::string(s.message()), HasSubstr("0:bbbb"));
    EXPECT_THAT(std::string(s.message()), HasSubstr("FORGED"));
    EXPECT_EQ(LimitOf(s), Limit::kTagKey);
    // A rotation that still holds the old key: accepted, the new one signs.
    EXPECT_TRUE(store->AdoptTagKey({"0:aaaa", "1:cccc"}, "1:cccc").ok());
  }
  auto store = MustOpen(Options(dir.path()));
  ASSERT_NE(store, nullptr);
  // Remembered across reopening: now the new key alone will do, the old
  // one alone will not.
  EXPECT_FALSE(store->AdoptTagKey({"0:aaaa"}, "0:aaaa").ok());
  EXPECT_TRUE(store->AdoptTagKey({"1:cccc"}, "1:cccc").ok());
}

}  // namespace
}  // namespace registrar
