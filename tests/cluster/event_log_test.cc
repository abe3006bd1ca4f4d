// EventLog (service/cluster/event_log.h) over real EtcdStores on one prefix
// of a real 3-member etcd: a writer store that commits and a follower
// store that is told of the writer's commits (NoteCommitted), as a
// replica's generations are. Checks that the event log answers from the
// store switched in last, that it refuses Commit, Submit and Load, and that
// its listener hears the current store's events only, moves with Switch
// (told of the new store's newest revision) and is detached when the log is
// destroyed.

#include "service/cluster/event_log.h"

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "service/etcd/etcd_store.h"
#include "tests/cluster/await.h"
#include "tests/cluster/cluster_fixture.h"
#include "tests/unit/store/store_test_util.h"

namespace registrar::cluster {
namespace {

using ::registrar::testing::ClusterTest;
using ::registrar::testing::kAwait;
using ::registrar::testing_util::Issued;
using ::registrar::testing_util::MakeRecord;

std::vector<uint64_t> Revisions(const std::vector<Event>& events) {
  std::vector<uint64_t> out;
  for (const Event& e : events) out.push_back(e.revision);
  return out;
}

// Records every call of the listener it hands out.
class Heard {
 public:
  EventListener Listener() {
    return [this](const std::vector<Event>& events) {
      absl::MutexLock lock(&mu_);
      calls_.push_back(events);
    };
  }
  std::vector<std::vector<Event>> calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<std::vector<Event>> calls_ ABSL_GUARDED_BY(mu_);
};

class EventLogTest : public ClusterTest {
 protected:
  void SetUp() override {
    ClusterTest::SetUp();
    prefix_ = absl::StrCat(
        "/event_log/",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  // A store on this test's prefix, loaded; nullptr on failure. *meta: what
  // Load returned.
  std::shared_ptr<etcd::EtcdStore> Open(StoreMeta* meta = nullptr) {
    std::shared_ptr<etcd::Connection> conn = Connect();
    EXPECT_NE(conn, nullptr);
    if (conn == nullptr) return nullptr;
    etcd::EtcdStoreOptions o;
    o.prefix = prefix_;
    auto store = etcd::EtcdStore::Create(conn, o);
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return nullptr;
    absl::StatusOr<StoreMeta> m = (*store)->Load([](RecordView&&) {});
    EXPECT_TRUE(m.ok()) << m.status();
    if (!m.ok()) return nullptr;
    if (meta != nullptr) *meta = *m;
    return std::shared_ptr<etcd::EtcdStore>(*std::move(store));
  }

  // Commits record n as issued through `store`; its events, with their
  // revisions (empty on failure).
  static std::vector<Event> Commit(etcd::EtcdStore& store, uint64_t n) {
    WriteBatch b;
    b.events.push_back(Issued(MakeRecord(n)));
    absl::Status s = store.Commit(&b);
    EXPECT_TRUE(s.ok()) << s;
    if (!s.ok()) return {};
    return b.events;
  }

  std::string prefix_;
};

TEST(EventLogWithoutStoreTest, HasNoLogUntilAStoreIsSwitchedIn) {
  EventLog log;
  std::vector<Event> out;
  EXPECT_EQ(log.ReadEvents(1, 10, &out).code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(log.LastRevision(), 0u);
  EXPECT_EQ(log.OldestRevision(), 1u);
  EXPECT_EQ(log.CheckWritable().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(log.CompactEvents(5).ok());
  EXPECT_EQ(log.commit_stats().batches, 0u);
}

TEST_F(EventLogTest, AnswersFromTheStoreSwitchedIn) {
  std::shared_ptr<etcd::EtcdStore> follower = Open();
  std::shared_ptr<etcd::EtcdStore> writer = Open();
  ASSERT_NE(follower, nullptr);
  ASSERT_NE(writer, nullptr);
  std::vector<Event> first = Commit(*writer, 1);
  ASSERT_EQ(Revisions(first), std::vector<uint64_t>{1});
  ASSERT_EQ(Revisions(Commit(*writer, 2)), std::vector<uint64_t>{2});
  ASSERT_EQ(Revisions(Commit(*writer, 3)), std::vector<uint64_t>{3});
  // The follower heard of revision 1 only; the writer forgets revision 1.
  follower->NoteCommitted(first, 1);
  ASSERT_TRUE(writer->CompactEvents(2).ok());
  ASSERT_EQ(writer->OldestRevision(), 2u);
  ASSERT_EQ(follower->OldestRevision(), 1u);

  EventLog log;
  log.Switch(follower);
  EXPECT_EQ(log.LastRevision(), 1u);
  EXPECT_EQ(log.OldestRevision(), 1u);
  EXPECT_EQ(log.commit_stats().batches, 0u);
  std::vector<Event> out;
  ASSERT_TRUE(log.ReadEvents(1, 10, &out).ok());
  EXPECT_EQ(Revisions(out), std::vector<uint64_t>{1});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].record.id, MakeRecord(1).id);

  log.Switch(writer);
  EXPECT_EQ(log.LastRevision(), 3u);
  EXPECT_EQ(log.OldestRevision(), 2u);
  EXPECT_EQ(log.commit_stats().batches, 3u);
  out.clear();
  EXPECT_EQ(log.ReadEvents(1, 10, &out).code(), absl::StatusCode::kOutOfRange);
  out.clear();
  ASSERT_TRUE(log.ReadEvents(2, 10, &out).ok());
  EXPECT_EQ(Revisions(out), (std::vector<uint64_t>{2, 3}));
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].record.id, MakeRecord(2).id);
  EXPECT_EQ(out[1].record.id, MakeRecord(3).id);
}

TEST_F(EventLogTest, RefusesCommitSubmitAndLoad) {
  std::shared_ptr<etcd::EtcdStore> writer = Open();
  ASSERT_NE(writer, nullptr);
  ASSERT_EQ(Revisions(Commit(*writer, 1)), std::vector<uint64_t>{1});
  EventLog log;
  log.Switch(writer);

  WriteBatch committed;
  committed.events.push_back(Issued(MakeRecord(2)));
  EXPECT_EQ(log.Commit(&committed).code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(committed.events[0].revision, 0u);

  WriteBatch submitted;
  submitted.events.push_back(Issued(MakeRecord(3)));
  absl::Notification done;
  absl::Status submit_status;
  log.Submit(&submitted, [&](absl::Status s) {
    submit_status = std::move(s);
    done.Notify();
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kAwait));
  EXPECT_EQ(submit_status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(submitted.events[0].revision, 0u);

  int records = 0;
  absl::StatusOr<StoreMeta> loaded =
      log.Load([&records](RecordView&&) { ++records; });
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(records, 0);

  // Nothing reached the store or etcd.
  EXPECT_EQ(writer->LastRevision(), 1u);
  EXPECT_EQ(log.LastRevision(), 1u);
  StoreMeta meta;
  ASSERT_NE(Open(&meta), nullptr);
  EXPECT_EQ(meta.revision, 1u);
}

TEST_F(EventLogTest, ListenerMovesToTheStoreSwitchedIn) {
  Heard heard;
  std::shared_ptr<etcd::EtcdStore> follower = Open();
  std::shared_ptr<etcd::EtcdStore> writer = Open();
  ASSERT_NE(follower, nullptr);
  ASSERT_NE(writer, nullptr);
  EventLog log;
  log.SetEventListener(heard.Listener());
  // The follower has no revision yet: nothing to tell.
  log.Switch(follower);
  EXPECT_TRUE(heard.calls().empty());

  // The writer's commit reaches the listener only through the follower.
  std::vector<Event> first = Commit(*writer, 1);
  ASSERT_EQ(Revisions(first), std::vector<uint64_t>{1});
  EXPECT_TRUE(heard.calls().empty());
  follower->NoteCommitted(first, 1);
  ASSERT_EQ(heard.calls().size(), 1u);
  EXPECT_EQ(Revisions(heard.calls()[0]), std::vector<uint64_t>{1});
  EXPECT_EQ(heard.calls()[0][0].record.id, MakeRecord(1).id);

  // The follower falls behind; the writer is switched in.
  std::vector<Event> second = Commit(*writer, 2);
  std::vector<Event> third = Commit(*writer, 3);
  ASSERT_EQ(Revisions(third), std::vector<uint64_t>{3});
  EXPECT_EQ(heard.calls().size(), 1u);
  log.Switch(writer);
  // Told of the writer's newest revision.
  ASSERT_EQ(heard.calls().size(), 2u);
  ASSERT_FALSE(heard.calls()[1].empty());
  EXPECT_EQ(heard.calls()[1].back().revision, 3u);

  // The old store's events are no longer heard; the new store's are.
  follower->NoteCommitted(second, 2);
  follower->NoteCommitted(third, 3);
  ASSERT_EQ(follower->LastRevision(), 3u);
  EXPECT_EQ(heard.calls().size(), 2u);
  ASSERT_EQ(Revisions(Commit(*writer, 4)), std::vector<uint64_t>{4});
  ASSERT_EQ(heard.calls().size(), 3u);
  EXPECT_EQ(Revisions(heard.calls()[2]), std::vector<uint64_t>{4});
  EXPECT_EQ(heard.calls()[2][0].record.id, MakeRecord(4).id);
}

TEST_F(EventLogTest, ListenerLeavesAWriterThatStepsDown) {
  Heard heard;
  std::shared_ptr<etcd::EtcdStore> writer = Open();
  ASSERT_NE(writer, nullptr);
  EventLog log;
  log.Switch(writer);
  log.SetEventListener(heard.Listener());
  ASSERT_EQ(Revisions(Commit(*writer, 1)), std::vector<uint64_t>{1});
  ASSERT_EQ(heard.calls().size(), 1u);
  EXPECT_EQ(Revisions(heard.calls()[0]), std::vector<uint64_t>{1});

  // A fresh follower generation, loaded at revision 1.
  std::shared_ptr<etcd::EtcdStore> follower = Open();
  ASSERT_NE(follower, nullptr);
  ASSERT_EQ(follower->LastRevision(), 1u);
  log.Switch(follower);
  ASSERT_EQ(heard.calls().size(), 2u);
  ASSERT_FALSE(heard.calls()[1].empty());
  EXPECT_EQ(heard.calls()[1].back().revision, 1u);

  // The old writer still commits (its listener has run once Commit
  // returns), but the log hears it only through the follower's feed.
  std::vector<Event> second = Commit(*writer, 2);
  ASSERT_EQ(Revisions(second), std::vector<uint64_t>{2});
  EXPECT_EQ(heard.calls().size(), 2u);
  follower->NoteCommitted(second, 2);
  ASSERT_EQ(heard.calls().size(), 3u);
  EXPECT_EQ(Revisions(heard.calls()[2]), std::vector<uint64_t>{2});
  EXPECT_EQ(heard.calls()[2][0].record.id, MakeRecord(2).id);
  EXPECT_EQ(log.LastRevision(), 2u);
}

TEST_F(EventLogTest, SwitchToTheSameStoreKeepsTheListenerAndTellsNothing) {
  Heard heard;
  std::shared_ptr<etcd::EtcdStore> writer = Open();
  ASSERT_NE(writer, nullptr);
  ASSERT_EQ(Revisions(Commit(*writer, 1)), std::vector<uint64_t>{1});
  std::shared_ptr<etcd::EtcdStore> follower = Open();
  ASSERT_NE(follower, nullptr);
  EventLog log;
  log.SetEventListener(heard.Listener());
  log.Switch(follower);
  ASSERT_EQ(heard.calls().size(), 1u);  // its newest revision, 1

  // A writer that took over its follower store keeps it.
  log.Switch(follower);
  EXPECT_EQ(heard.calls().size(), 1u);
  std::vector<Event> second = Commit(*writer, 2);
  ASSERT_EQ(Revisions(second), std::vector<uint64_t>{2});
  follower->NoteCommitted(second, 2);
  ASSERT_EQ(heard.calls().size(), 2u);
  EXPECT_EQ(Revisions(heard.calls()[1]), std::vector<uint64_t>{2});
}

TEST_F(EventLogTest, ListenerSetAfterSwitchHearsTheCurrentStoreUntilCleared) {
  Heard heard;
  std::shared_ptr<etcd::EtcdStore> writer = Open();
  ASSERT_NE(writer, nullptr);
  EventLog log;
  log.Switch(writer);
  ASSERT_EQ(Revisions(Commit(*writer, 1)), std::vector<uint64_t>{1});

  log.SetEventListener(heard.Listener());
  EXPECT_TRUE(heard.calls().empty());  // setting it tells nothing
  ASSERT_EQ(Revisions(Commit(*writer, 2)), std::vector<uint64_t>{2});
  ASSERT_EQ(heard.calls().size(), 1u);
  EXPECT_EQ(Revisions(heard.calls()[0]), std::vector<uint64_t>{2});

  log.SetEventListener(nullptr);
  ASSERT_EQ(Revisions(Commit(*writer, 3)), std::vector<uint64_t>{3});
  EXPECT_EQ(heard.calls().size(), 1u);
}

TEST_F(EventLogTest, DestroyingTheLogDetachesItsListener) {
  Heard heard;
  std::shared_ptr<etcd::EtcdStore> writer = Open();
  ASSERT_NE(writer, nullptr);
  {
    EventLog log;
    log.SetEventListener(heard.Listener());
    log.Switch(writer);
    ASSERT_EQ(Revisions(Commit(*writer, 1)), std::vector<uint64_t>{1});
    ASSERT_EQ(heard.calls().size(), 1u);
  }
  ASSERT_EQ(Revisions(Commit(*writer, 2)), std::vector<uint64_t>{2});
  EXPECT_EQ(heard.calls().size(), 1u);
}

TEST_F(EventLogTest, SwitchToNoStoreDetachesTheListener) {
  Heard heard;
  std::shared_ptr<etcd::EtcdStore> writer = Open();
  ASSERT_NE(writer, nullptr);
  EventLog log;
  log.SetEventListener(heard.Listener());
  log.Switch(writer);
  ASSERT_EQ(Revisions(Commit(*writer, 1)), std::vector<uint64_t>{1});
  ASSERT_EQ(heard.calls().size(), 1u);
  log.Switch(nullptr);
  ASSERT_EQ(Revisions(Commit(*writer, 2)), std::vector<uint64_t>{2});
  EXPECT_EQ(heard.calls().size(), 1u);
  EXPECT_EQ(log.LastRevision(), 0u);
}

}  // namespace
}  // namespace registrar::cluster
