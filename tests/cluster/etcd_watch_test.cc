// service/etcd's Watch against a real 3-member etcd: every event from a
// revision in order, progress notifications, compaction reported as such,
// and resumption without gap or duplicate after the member it watches on
// is killed.

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "service/etcd/kv.h"
#include "service/etcd/watch.h"
#include "tests/cluster/await.h"
#include "tests/cluster/cluster_fixture.h"

namespace registrar::etcd {
namespace {

using ::registrar::testing::Call;
using ::registrar::testing::ClusterTest;
using ::registrar::testing::kAwait;

// Collects what a Watch reports.
struct Collector {
  absl::Mutex mu;
  std::vector<mvccpb::Event> events ABSL_GUARDED_BY(mu);
  std::vector<int64_t> progress ABSL_GUARDED_BY(mu);
  std::optional<WatchEnd> end ABSL_GUARDED_BY(mu);
  int callbacks_after_end ABSL_GUARDED_BY(mu) = 0;

  WatchHandlers Handlers(std::shared_ptr<Collector> self) {
    WatchHandlers h;
    h.on_events = [self](std::vector<mvccpb::Event> evs, int64_t) {
      absl::MutexLock lock(&self->mu);
      if (self->end) ++self->callbacks_after_end;
      for (auto& e : evs) self->events.push_back(std::move(e));
    };
    h.on_progress = [self](int64_t revision) {
      absl::MutexLock lock(&self->mu);
      if (self->end) ++self->callbacks_after_end;
      self->progress.push_back(revision);
    };
    h.on_end = [self](const WatchEnd& end) {
      absl::MutexLock lock(&self->mu);
      if (self->end) ++self->callbacks_after_end;
      self->end = end;
    };
    return h;
  }
  bool WaitEvents(size_t n) {
    absl::MutexLock lock(&mu);
    auto enough = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu) {
      return events.size() >= n || end.has_value();
    };
    mu.AwaitWithTimeout(absl::Condition(&enough), kAwait);
    return events.size() >= n;
  }
  bool WaitProgressAtLeast(int64_t revision) {
    absl::MutexLock lock(&mu);
    auto reached = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu) {
      return (!progress.empty() && progress.back() >= revision) ||
             end.has_value();
    };
    return mu.AwaitWithTimeout(absl::Condition(&reached), kAwait) &&
           !progress.empty() && progress.back() >= revision;
  }
  std::optional<WatchEnd> WaitEnd() {
    absl::MutexLock lock(&mu);
    auto ended = [&]()
                     ABSL_SHARED_LOCKS_REQUIRED(mu) { return end.has_value(); };
    mu.AwaitWithTimeout(absl::Condition(&ended), kAwait);
    return end;
  }
};

class EtcdWatchTest : public ClusterTest {
 protected:
  void SetUp() override {
    ClusterTest::SetUp();
    conn_ = Connect();
    ASSERT_NE(conn_, nullptr);
    kv_ = std::make_unique<Kv>(conn_);
  }

  // Creates key once (a retried create after an unknown outcome is a
  // no-op); the revision that created it.
  absl::StatusOr<int64_t> Create(Kv& kv, const std::string& key) {
    pb::TxnRequest req;
    *req.add_compare() = KeyAbsent(key);
    *req.add_success() = PutOp(key, "v");
    *req.add_failure() = RangeOp(key);
    auto r = Call<pb::TxnResponse>([&](auto cb) { kv.Txn(req, cb); });
    if (!r.ok()) return r.status();
    if (r->succeeded()) return r->header().revision();
    return r->responses(0).response_range().kvs(0).create_revision();
  }

  std::shared_ptr<Connection> conn_;
  std::unique_ptr<Kv> kv_;
};

TEST_F(EtcdWatchTest, FromARevisionDeliversEveryEventInOrder) {
  // History before the watch starts, then more while it runs.
  std::vector<std::pair<mvccpb::Event::EventType, int64_t>> expected;
  for (int i = 0; i < 30; ++i) {
    auto rev = Create(*kv_, absl::StrFormat("/w/order/%03d", i));
    ASSERT_TRUE(rev.ok()) << rev.status();
    expected.push_back({mvccpb::Event::PUT, *rev});
  }
  for (int i = 0; i < 10; ++i) {
    auto del = Call<pb::DeleteRangeResponse>([&](auto cb) {
      kv_->Delete(absl::StrFormat("/w/order/%03d", i), "", cb);
    });
    ASSERT_TRUE(del.ok()) << del.status();
    expected.push_back({mvccpb::Event::DELETE, del->header().revision()});
  }
  auto c = std::make_shared<Collector>();
  WatchOptions o;
  o.key = "/w/order/";
  o.range_end = PrefixEnd(o.key);
  o.start_revision = expected.front().second;
  auto watch = Watch::Start(conn_, o, c->Handlers(c));
  for (int i = 30; i < 60; ++i) {
    auto rev = Create(*kv_, absl::StrFormat("/w/order/%03d", i));
    ASSERT_TRUE(rev.ok()) << rev.status();
    expected.push_back({mvccpb::Event::PUT, *rev});
  }
  ASSERT_TRUE(c->WaitEvents(expected.size()));
  watch->Cancel();
  auto end = c->WaitEnd();
  ASSERT_TRUE(end.has_value());
  EXPECT_TRUE(absl::IsCancelled(end->status)) << end->status;

  absl::MutexLock lock(&c->mu);
  ASSERT_EQ(c->events.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    EXPECT_EQ(c->events[i].type(), expected[i].first) << i;
    EXPECT_EQ(c->events[i].kv().mod_revision(), expected[i].second) << i;
  }
  EXPECT_EQ(c->callbacks_after_end, 0);
}

TEST_F(EtcdWatchTest, RequestedProgressReachesTheLatestRevision) {
  auto c = std::make_shared<Collector>();
  WatchOptions o;
  o.key = "/w/quiet/";
  o.range_end = PrefixEnd(o.key);
  auto watch = Watch::Start(conn_, o, c->Handlers(c));
  // Changes elsewhere move the revision; the quiet watch sees no event but
  // a progress notification at (or past) that revision.
  auto rev = Create(*kv_, "/w/elsewhere");
  ASSERT_TRUE(rev.ok()) << rev.status();
  bool reached = false;
  for (int attempt = 0; attempt < 50 && !reached; ++attempt) {
    // Sent once the stream is up; a request before that is dropped by
    // etcd's watcher-less stream, so ask until answered (bounded).
    watch->RequestProgress();
    absl::MutexLock lock(&c->mu);
    auto got = [&]() ABSL_SHARED_LOCKS_REQUIRED(c->mu) {
      return !c->progress.empty() && c->progress.back() >= *rev;
    };
    reached =
        c->mu.AwaitWithTimeout(absl::Condition(&got), absl::Milliseconds(200));
  }
  EXPECT_TRUE(reached);
  watch->Cancel();
  ASSERT_TRUE(c->WaitEnd().has_value());
  absl::MutexLock lock(&c->mu);
  EXPECT_TRUE(c->events.empty());
}

TEST_F(EtcdWatchTest, CompactedStartRevisionIsReportedAsCompaction) {
  auto first = Create(*kv_, "/w/compact/a");
  ASSERT_TRUE(first.ok());
  auto second = Create(*kv_, "/w/compact/b");
  ASSERT_TRUE(second.ok());
  auto compacted = Call<pb::CompactionResponse>(
      [&](auto cb) { kv_->Compact(*second, /*physical=*/true, cb); });
  ASSERT_TRUE(compacted.ok()) << compacted.status();

  auto c = std::make_shared<Collector>();
  WatchOptions o;
  o.key = "/w/compact/";
  o.range_end = PrefixEnd(o.key);
  o.start_revision = *first;  // older than the compaction
  auto watch = Watch::Start(conn_, o, c->Handlers(c));
  auto end = c->WaitEnd();
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->compact_revision, *second);
  EXPECT_TRUE(absl::IsOutOfRange(end->status)) << end->status;
  absl::MutexLock lock(&c->mu);
  EXPECT_TRUE(c->events.empty());
}

TEST_F(EtcdWatchTest, ResumesOnAnotherMemberWithoutGapOrDuplicate) {
  auto writer_conn = Connect();
  ASSERT_NE(writer_conn, nullptr);
  Kv writer(writer_conn);
  auto start = Create(writer, "/w/resume/000");
  ASSERT_TRUE(start.ok());

  auto c = std::make_shared<Collector>();
  WatchOptions o;
  o.key = "/w/resume/";
  o.range_end = PrefixEnd(o.key);
  o.start_revision = *start;
  const int watched = conn_->current();
  auto watch = Watch::Start(conn_, o, c->Handlers(c));
  ASSERT_TRUE(c->WaitEvents(1));

  constexpr int kKeys = 80;
  std::vector<int64_t> revisions = {*start};
  for (int i = 1; i < kKeys; ++i) {
    if (i == kKeys / 2) {
      ASSERT_TRUE(cluster_->Kill(watched).ok());
    }
    const std::string key = absl::StrFormat("/w/resume/%03d", i);
    absl::StatusOr<int64_t> rev = absl::UnknownError("not written");
    const absl::Time deadline = absl::Now() + absl::Seconds(15);
    do {
      rev = Create(writer, key);  // create-if-absent: safe to send again
    } while (!rev.ok() && absl::Now() < deadline);
    ASSERT_TRUE(rev.ok()) << key << ": " << rev.status();
    revisions.push_back(*rev);
  }
  ASSERT_TRUE(c->WaitEvents(kKeys));
  watch->Cancel();
  ASSERT_TRUE(c->WaitEnd().has_value());
  EXPECT_GE(watch->resumes(), 1);
  absl::MutexLock lock(&c->mu);
  ASSERT_EQ(c->events.size(), static_cast<size_t>(kKeys));
  for (int i = 0; i < kKeys; ++i) {
    EXPECT_EQ(c->events[i].kv().key(), absl::StrFormat("/w/resume/%03d", i));
    EXPECT_EQ(c->events[i].kv().mod_revision(), revisions[i]);
  }
  ASSERT_TRUE(cluster_->Restart(watched).ok());
}

}  // namespace
}  // namespace registrar::etcd
