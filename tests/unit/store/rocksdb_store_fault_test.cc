// Write failures with the real RocksDB and the real kernel, no fakes:
//  - a full disk: a small tmpfs filled with a ballast file (needs the right
//    to mount, e.g. root with CAP_SYS_ADMIN; skipped otherwise);
//  - a fatal I/O error: RLIMIT_FSIZE, which the kernel enforces on root too
//    (writes past the limit fail with EFBIG), so it runs everywhere.
// chmod is no use for this: root ignores permissions.

#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/clock.h"
#include "service/store/rocksdb_store.h"
#include "tests/unit/store/store_test_util.h"

namespace registrar {

void PrintTo(Durability d, std::ostream* os) { *os << DurabilityName(d); }

namespace {

namespace fs = std::filesystem;
using ::registrar::testing_util::Issued;
using ::registrar::testing_util::MakeRecord;
using ::registrar::testing_util::TempDir;
using ::testing::HasSubstr;

RocksDbStoreOptions SmallOptions(const std::string& path, Durability d) {
  RocksDbStoreOptions o;
  o.path = path;
  o.durability = d;
  o.memtable_bytes = 256 << 10;  // so a few MB of disk is plenty
  o.block_cache_bytes = 1 << 20;
  // Every CheckWritable below retries at once (the throttle has its own
  // test).
  o.recovery_interval = absl::ZeroDuration();
  return o;
}

absl::Status CommitOne(RocksDbStore& store, uint64_t n, uint64_t* revision) {
  WriteBatch b;
  b.events.push_back(Issued(MakeRecord(n)));
  absl::Status s = store.Commit(&b);
  *revision = b.events[0].revision;
  return s;
}

// Opens the store at `path` into `*store` and loads it; a fatal failure
// when either fails (call in ASSERT_NO_FATAL_FAILURE).
void OpenAndLoad(const std::string& path, Durability d,
                 std::unique_ptr<RocksDbStore>* store) {
  auto opened = RocksDbStore::Open(SmallOptions(path, d));
  ASSERT_TRUE(opened.ok()) << opened.status();
  ASSERT_TRUE((*opened)->Load([](RecordView&&) {}).ok());
  *store = *std::move(opened);
}

// After reopening: every committed record is there and the event log is
// 1..last without gaps.
void ExpectCommitted(const std::string& path, uint64_t last) {
  auto reopened = RocksDbStore::Open(SmallOptions(path, Durability::kFsync));
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  RocksDbStore& store = **reopened;
  size_t records = 0;
  auto meta = store.Load([&](RecordView&&) { ++records; });
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ(meta->revision, last);
  EXPECT_EQ(records, last);  // one new record per committed revision
  std::vector<Event> events;
  ASSERT_TRUE(store.ReadEvents(1, last + 10, &events).ok());
  ASSERT_EQ(events.size(), last);
  for (size_t i = 0; i < events.size(); ++i) {
    ASSERT_EQ(events[i].revision, i + 1);
  }
}

// A tmpfs of `bytes` mounted on a fresh directory, unmounted at the end.
class Tmpfs {
 public:
  explicit Tmpfs(size_t bytes) {
    const std::string opts = "size=" + std::to_string(bytes);
    if (::mount("tmpfs", dir_.path().c_str(), "tmpfs", 0, opts.c_str()) == 0) {
      mounted_ = true;
    } else {
      error_ = std::strerror(errno);
    }
  }
  ~Tmpfs() {
    if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }
  std::string Sub(const std::string& name) const { return dir_.Sub(name); }

  // Writes a file until the filesystem is full.
  void Fill(const std::string& name) {
    std::ofstream f(Sub(name), std::ios::binary);
    const std::string chunk(4096, 'x');
    while (f.write(chunk.data(), chunk.size())) {
    }
  }

 private:
  TempDir dir_;
  bool mounted_ = false;
  std::string error_;
};

// Mounts a tmpfs of `bytes` as `tmpfs`, or skips the test (fails it under
// CI=true: CI runs as root, so a skip there would let CI go green without
// the test; .ci/run exports CI=true).
#define MOUNT_TMPFS_OR_SKIP(tmpfs, bytes)                          \
  Tmpfs tmpfs(bytes);                                              \
  if (!tmpfs.mounted()) {                                          \
    const char* ci = std::getenv("CI");                            \
    if (ci != nullptr && std::string(ci) == "true") {              \
      FAIL() << "cannot mount a tmpfs (" << tmpfs.error()          \
             << ") and CI=true: CI must run this test as root";    \
    }                                                              \
    GTEST_SKIP() << "cannot mount a tmpfs here (" << tmpfs.error() \
                 << "); needs root with CAP_SYS_ADMIN";            \
  }

// Fills the tmpfs under a store opened with `o` until a commit fails, then
// frees the space: CheckWritable recovers and commits go on, gap-free.
void FillFreeAndRecover(Tmpfs& tmpfs, const RocksDbStoreOptions& o) {
  const Durability durability = o.durability;
  const std::string& path = o.path;
  uint64_t last = 0;
  {
    auto opened = RocksDbStore::Open(o);
    ASSERT_TRUE(opened.ok()) << opened.status();
    ASSERT_TRUE((*opened)->Load([](RecordView&&) {}).ok());
    RocksDbStore& store = **opened;
    uint64_t rev = 0;
    for (int i = 0; i < 10; ++i) {
      ASSERT_TRUE(CommitOne(store, ++last, &rev).ok());
      ASSERT_EQ(rev, last);
    }

    tmpfs.Fill("ballast");
    absl::Status failed;
    for (int i = 0; i < 100'000 && failed.ok(); ++i) {
      failed = CommitOne(store, last + 1, &rev);
      if (failed.ok()) {
        ASSERT_EQ(rev, last + 1);
        ++last;
      } else {
        EXPECT_EQ(rev, 0u) << "a failed commit keeps no revision";
      }
    }
    ASSERT_FALSE(failed.ok()) << "the disk never filled up";
    EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable) << failed;
    EXPECT_THAT(std::string(failed.message()),
                HasSubstr("No space left on device"));
    EXPECT_EQ(store.LastRevision(), last);

    if (durability != Durability::kNone) {
      // Still full: nothing to recover with, and nothing is closed.
      absl::Status check = store.CheckWritable();
      EXPECT_EQ(check.code(), absl::StatusCode::kUnavailable) << check;
      EXPECT_THAT(std::string(check.message()), HasSubstr("bytes free"));
      EXPECT_FALSE(CommitOne(store, last + 1, &rev).ok());
      std::vector<Event> events;  // reads still work
      EXPECT_TRUE(store.ReadEvents(last, 1, &events).ok());
      EXPECT_EQ(events.size(), 1u);
    }

    fs::remove(tmpfs.Sub("ballast"));
    absl::Status check = store.CheckWritable();
    ASSERT_TRUE(check.ok()) << check;
    ASSERT_TRUE(CommitOne(store, last + 1, &rev).ok());
    EXPECT_EQ(rev, last + 1) << "revisions stay gap-free";
    ++last;
    EXPECT_EQ(store.reopens(), durability == Durability::kNone ? 0u : 1u);
  }
  ExpectCommitted(path, last);
}

class DiskFullTest : public ::testing::TestWithParam<Durability> {};

TEST_P(DiskFullTest, CommitsFailWhileFullAndCheckWritableRecovers) {
  MOUNT_TMPFS_OR_SKIP(tmpfs, 16 << 20);
  FillFreeAndRecover(tmpfs, SmallOptions(tmpfs.Sub("data"), GetParam()));
}

TEST_P(DiskFullTest, DefaultSizesOnASmallVolumeRecoverToo) {
  // With the default 64 MiB memtables, recovery would need more free space
  // than this volume has (issue 14: "recovery needs 68157440 bytes free",
  // forever). The store sizes them to the volume instead.
  MOUNT_TMPFS_OR_SKIP(tmpfs, 16 << 20);
  RocksDbStoreOptions o;
  o.path = tmpfs.Sub("data");
  o.durability = GetParam();
  o.recovery_interval = absl::ZeroDuration();
  {
    auto opened = RocksDbStore::Open(o);
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ((*opened)->memtable_bytes(), (16u << 20) / 32);
    EXPECT_THAT((*opened)->sizing_note(), HasSubstr("memtables sized to"));
  }
  FillFreeAndRecover(tmpfs, o);
}

INSTANTIATE_TEST_SUITE_P(Durabilities, DiskFullTest,
                         ::testing::Values(Durability::kFsync, Durability::kOs,
                                           Durability::kNone),
                         [](const auto& info) {
                           return std::string(DurabilityName(info.param));
                         });

// Sets RLIMIT_FSIZE for this process (all threads) and restores it.
class FileSizeLimit {
 public:
  FileSizeLimit() {
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    ::signal(SIGXFSZ, SIG_IGN);  // fail the write with EFBIG instead
  }
  ~FileSizeLimit() { Lift(); }
  bool Set(rlim_t bytes) {
    rlimit r = saved_;
    r.rlim_cur = bytes;
    return ::setrlimit(RLIMIT_FSIZE, &r) == 0;
  }
  void Lift() { ::setrlimit(RLIMIT_FSIZE, &saved_); }

 private:
  rlimit saved_{};
};

uint64_t LargestWal(const std::string& dir) {
  uint64_t largest = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".log") {
      largest = std::max<uint64_t>(largest, e.file_size());
    }
  }
  return largest;
}

class FatalIoErrorTest : public ::testing::TestWithParam<Durability> {};

TEST_P(FatalIoErrorTest, WritesFailUntilTheCauseIsGoneThenReopenRecovers) {
  const Durability durability = GetParam();
  TempDir dir;
  const std::string path = dir.Sub("data");
  uint64_t last = 0;
  {
    std::unique_ptr<RocksDbStore> opened;
    ASSERT_NO_FATAL_FAILURE(OpenAndLoad(path, durability, &opened));
    RocksDbStore& store = *opened;
    uint64_t rev = 0;
    for (int i = 0; i < 10; ++i)
      ASSERT_TRUE(CommitOne(store, ++last, &rev).ok());

    FileSizeLimit limit;
    // The WAL may not grow any more: EFBIG, which RocksDB treats as fatal.
    ASSERT_TRUE(limit.Set(LargestWal(path) + 16));
    absl::Status failed = CommitOne(store, last + 1, &rev);
    EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable) << failed;
    EXPECT_THAT(std::string(failed.message()), HasSubstr("File too large"));
    EXPECT_EQ(rev, 0u);
    EXPECT_EQ(store.LastRevision(), last);
    failed = CommitOne(store, last + 1, &rev);  // stopped: fails at once
    EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable) << failed;

    // No file may grow at all: the reopen cannot write its MANIFEST, so the
    // store stays closed and every call is Unavailable.
    ASSERT_TRUE(limit.Set(0));
    absl::Status check = store.CheckWritable();
    EXPECT_EQ(check.code(), absl::StatusCode::kUnavailable) << check;
    EXPECT_THAT(std::string(check.message()), HasSubstr("reopening"));
    absl::Status closed = CommitOne(store, last + 1, &rev);
    EXPECT_EQ(closed.code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(closed.message()), HasSubstr("closed"));
    std::vector<Event> events;
    EXPECT_EQ(store.ReadEvents(1, 1, &events).code(),
              absl::StatusCode::kUnavailable);
    EXPECT_EQ(store.reopens(), 0u);

    limit.Lift();
    check = store.CheckWritable();
    ASSERT_TRUE(check.ok()) << check;
    EXPECT_EQ(store.reopens(), 1u);
    ASSERT_TRUE(CommitOne(store, last + 1, &rev).ok());
    EXPECT_EQ(rev, last + 1) << "failed commits used no revision";
    ++last;
    events.clear();
    ASSERT_TRUE(store.ReadEvents(1, 100, &events).ok());
    EXPECT_EQ(events.size(), last);
  }
  ExpectCommitted(path, last);
}

// A health check calls CheckWritable every tick: after a failed recovery
// attempt it answers with that failure, without trying again, until
// recovery_interval has passed; then it tries (and here succeeds).
TEST(RecoveryIntervalTest, FailedRecoveryIsRetriedOnlyAfterTheInterval) {
  TempDir dir;
  const std::string path = dir.Sub("data");
  FakeClock clock;
  RocksDbStoreOptions options = SmallOptions(path, Durability::kFsync);
  options.recovery_interval = absl::Seconds(1);
  options.clock = &clock;
  auto opened = RocksDbStore::Open(options);
  ASSERT_TRUE(opened.ok()) << opened.status();
  RocksDbStore& store = **opened;
  ASSERT_TRUE(store.Load([](RecordView&&) {}).ok());
  uint64_t rev = 0;
  ASSERT_TRUE(CommitOne(store, 1, &rev).ok());

  FileSizeLimit limit;
  ASSERT_TRUE(limit.Set(LargestWal(path) + 16));
  ASSERT_FALSE(CommitOne(store, 2, &rev).ok());
  ASSERT_TRUE(limit.Set(0));  // the reopen cannot write its MANIFEST
  const absl::Status failed = store.CheckWritable();
  ASSERT_EQ(failed.code(), absl::StatusCode::kUnavailable) << failed;
  EXPECT_EQ(store.recovery_attempts(), 1u);
  limit.Lift();

  // Within the interval: the same failure, no new attempt (the cause is
  // gone, so an attempt would succeed).
  for (int i = 0; i < 3; ++i) {
    clock.Advance(absl::Milliseconds(300));
    EXPECT_EQ(store.CheckWritable(), failed)
        << "after " << (i + 1) * 300 << " ms";
    EXPECT_EQ(store.reopens(), 0u);
    EXPECT_EQ(store.recovery_attempts(), 1u);
  }
  clock.Advance(absl::Milliseconds(100));  // 1 s after the attempt
  const absl::Status recovered = store.CheckWritable();
  ASSERT_TRUE(recovered.ok()) << recovered;
  EXPECT_EQ(store.reopens(), 1u);
  EXPECT_EQ(store.recovery_attempts(), 2u);
  EXPECT_TRUE(CommitOne(store, 2, &rev).ok());
}

INSTANTIATE_TEST_SUITE_P(WithWal, FatalIoErrorTest,
                         ::testing::Values(Durability::kFsync, Durability::kOs),
                         [](const auto& info) {
                           return std::string(DurabilityName(info.param));
                         });

}  // namespace
}  // namespace registrar
