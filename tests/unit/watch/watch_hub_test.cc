// WatchHub against a real MemoryStore, commits driven through
// Store::Commit. The sink is a test implementation of WatchSink (the
// interface the gRPC reactor implements), acknowledged by hand, so a slow
// or stalled reader is simply a sink nobody acknowledges.

#include "service/watch/watch_hub.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/field_error.h"
#include "service/store/memory_store.h"

namespace registrar {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::Duration kWait = absl::Seconds(10);

std::string StatusText(const absl::Status& s) {
  return absl::StrCat(absl::StatusCodeToString(s.code()), ": ",
                      std::string(s.message()));
}

// A sink that records what the hub does and checks the hub's promises: one
// Send at a time, nothing after Finish, Finish once.
class TestSink final : public WatchSink {
 public:
  void Send(const Event& event) override {
    absl::MutexLock lock(&mu_);
    if (in_flight_) violations_.push_back("Send while a Send is outstanding");
    if (finished_) violations_.push_back("Send after Finish");
    in_flight_ = true;
    events_.push_back(event);
  }
  void Finish(const absl::Status& status) override {
    absl::MutexLock lock(&mu_);
    if (finished_) violations_.push_back("Finish twice");
    finished_ = true;
    status_ = status;
  }

  // Waits for an outstanding Send and acknowledges it. False when the
  // stream finished (or `timeout` passed) with nothing to acknowledge.
  bool AckNext(WatchHub& hub, WatchHub::Watcher& w,
               absl::Duration timeout = kWait) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return in_flight_ || finished_;
      };
      mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
      if (!in_flight_) return false;
      in_flight_ = false;
    }
    hub.WriteDone(w, true);  // never with the sink's lock: may Send inline
    return true;
  }

  // Acknowledges Sends until at least `n` events arrived and none is
  // outstanding; false if the stream finished or stalled first.
  bool ReadAtLeast(WatchHub& hub, WatchHub::Watcher& w, size_t n,
                   absl::Duration timeout = kWait) {
    const absl::Time deadline = absl::Now() + timeout;
    for (;;) {
      {
        absl::MutexLock lock(&mu_);
        if (events_.size() >= n && !in_flight_) return true;
      }
      if (!AckNext(hub, w, deadline - absl::Now())) return event_count() >= n;
    }
  }

  // Waits until Finish was called; its status (OK with a failure if not).
  absl::Status AwaitFinish(absl::Duration timeout = kWait) {
    absl::MutexLock lock(&mu_);
    auto finished = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return finished_;
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&finished), timeout)) {
      ADD_FAILURE() << "the watcher was not finished within " << timeout;
      return absl::OkStatus();
    }
    return status_;
  }

  // Waits until at least `n` events arrived (acknowledged by others).
  bool AwaitCount(size_t n, absl::Time deadline) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return events_.size() >= n;
    };
    return mu_.AwaitWithDeadline(absl::Condition(&enough), deadline);
  }

  // Waits until a Send is outstanding.
  bool AwaitInFlight(absl::Duration timeout = kWait) {
    absl::MutexLock lock(&mu_);
    auto busy = [this]()
                    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_; };
    return mu_.AwaitWithTimeout(absl::Condition(&busy), timeout);
  }

  size_t event_count() const {
    absl::MutexLock lock(&mu_);
    return events_.size();
  }
  std::vector<Event> events() const {
    absl::MutexLock lock(&mu_);
    return events_;
  }
  std::vector<uint64_t> revisions() const {
    std::vector<uint64_t> out;
    for (const Event& e : events()) out.push_back(e.revision);
    return out;
  }
  bool finished() const {
    absl::MutexLock lock(&mu_);
    return finished_;
  }
  std::vector<std::string> violations() const {
    absl::MutexLock lock(&mu_);
    return violations_;
  }

 private:
  mutable absl::Mutex mu_;
  bool in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::vector<Event> events_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> violations_ ABSL_GUARDED_BY(mu_);
};

// One watcher with its sink; stops the watcher (as gRPC's OnDone would)
// when destroyed.
struct TestWatch {
  TestWatch(WatchHub& hub, std::shared_ptr<TestSink> sink,
            std::shared_ptr<WatchHub::Watcher> watcher)
      : hub(hub), sink(std::move(sink)), watcher(std::move(watcher)) {}
  ~TestWatch() {
    hub.Stop(*watcher);
    EXPECT_THAT(sink->violations(), ::testing::IsEmpty());
  }
  bool ReadAtLeast(size_t n, absl::Duration timeout = kWait) {
    return sink->ReadAtLeast(hub, *watcher, n, timeout);
  }
  bool AckNext(absl::Duration timeout = kWait) {
    return sink->AckNext(hub, *watcher, timeout);
  }

  WatchHub& hub;
  std::shared_ptr<TestSink> sink;
  std::shared_ptr<WatchHub::Watcher> watcher;
};

class WatchHubTest : public ::testing::Test {
 protected:
  void MakeHub(WatchLimits limits = {}) {
    hub_ = std::make_unique<WatchHub>(store_, limits);
  }

  absl::StatusOr<std::unique_ptr<TestWatch>> Watch(uint64_t start,
                                                   std::string tenant = "",
                                                   std::string caller = "") {
    auto sink = std::make_shared<TestSink>();
    WatchSpec spec;
    spec.start_revision = start;
    spec.tenant = std::move(tenant);
    spec.caller = std::move(caller);
    absl::StatusOr<std::shared_ptr<WatchHub::Watcher>> w =
        hub_->Start(spec, sink.get());
    if (!w.ok()) return w.status();
    return std::make_unique<TestWatch>(*hub_, sink, *std::move(w));
  }

  std::unique_ptr<TestWatch> MustWatch(uint64_t start, std::string tenant = "",
                                       std::string caller = "") {
    auto w = Watch(start, std::move(tenant), std::move(caller));
    EXPECT_TRUE(w.ok()) << StatusText(w.status());
    return w.ok() ? *std::move(w) : nullptr;
  }

  // Commits one batch of events, one per tenant given; returns the
  // revision of the last.
  uint64_t Commit(const std::vector<std::string>& tenants,
                  EventType type = EventType::kIssued) {
    WriteBatch batch;
    for (const std::string& tenant : tenants) {
      Event e;
      e.type = type;
      e.record.id = Id128{++next_id_, 0x7000};
      e.record.kind = Kind::kThread;
      e.record.owner = Owner{tenant, "user"};
      e.record.labels = std::make_shared<const Labels>();
      e.record.state =
          type == EventType::kIssued ? State::kLive : State::kReleased;
      batch.events.push_back(std::move(e));
    }
    absl::Status s = store_.Commit(&batch);
    EXPECT_TRUE(s.ok()) << StatusText(s);
    return batch.events.empty() ? 0 : batch.events.back().revision;
  }

  // Commits `n` single-event batches of `tenant`.
  void CommitMany(int n, const std::string& tenant = "acme") {
    for (int i = 0; i < n; ++i) Commit({tenant});
  }

  static std::vector<uint64_t> Range(uint64_t first, uint64_t last) {
    std::vector<uint64_t> out;
    for (uint64_t r = first; r <= last; ++r) out.push_back(r);
    return out;
  }

  void TearDown() override {
    if (hub_) hub_->Shutdown();
  }

  MemoryStore store_;
  std::unique_ptr<WatchHub> hub_;
  uint64_t next_id_ = 0;
};

TEST_F(WatchHubTest, DeliversEveryEventInRevisionOrderWithTypesAndRecords) {
  MakeHub();
  auto w = MustWatch(1);
  ASSERT_NE(w, nullptr);
  Commit({"acme", "globex", "acme"});
  Commit({"acme"}, EventType::kReleased);
  Commit({"globex", "acme"}, EventType::kExpired);
  CommitMany(100);  // more than one batch
  ASSERT_TRUE(w->ReadAtLeast(106));
  EXPECT_THAT(w->sink->revisions(), ElementsAreArray(Range(1, 106)));
  const std::vector<Event> events = w->sink->events();
  EXPECT_EQ(events[1].record.owner.tenant, "globex");
  EXPECT_EQ(events[2].type, EventType::kIssued);
  EXPECT_EQ(events[3].type, EventType::kReleased);
  EXPECT_EQ(events[4].type, EventType::kExpired);
  EXPECT_EQ(events[5].type, EventType::kExpired);
  for (const Event& e : events) EXPECT_EQ(e.record.revision, e.revision);
  EXPECT_FALSE(w->sink->finished());
}

TEST_F(WatchHubTest, WatchersStartedBeforeAndAfterCommitsSeeTheSame) {
  MakeHub();
  auto early = MustWatch(1);
  for (int i = 0; i < 50; ++i) Commit({"a", "b", "c"});
  auto late = MustWatch(1);
  ASSERT_TRUE(early->ReadAtLeast(150));
  ASSERT_TRUE(late->ReadAtLeast(150));
  EXPECT_THAT(early->sink->revisions(), ElementsAreArray(Range(1, 150)));
  EXPECT_THAT(late->sink->revisions(), ElementsAreArray(Range(1, 150)));
}

TEST_F(WatchHubTest, TenantFilterDeliversOnlyThatTenantInOrder) {
  MakeHub(WatchLimits{.batch = 4});
  auto acme = MustWatch(1, "acme");
  auto globex = MustWatch(1, "globex");
  std::vector<uint64_t> acme_revs, globex_revs;
  for (int i = 0; i < 40; ++i) {
    const uint64_t last = Commit({"globex", "acme", "globex"});
    acme_revs.push_back(last - 1);
    globex_revs.push_back(last - 2);
    globex_revs.push_back(last);
  }
  // Long runs of the other tenant (more than a batch) are skipped too.
  for (int i = 0; i < 30; ++i) globex_revs.push_back(Commit({"globex"}));
  acme_revs.push_back(Commit({"acme"}));

  ASSERT_TRUE(acme->ReadAtLeast(acme_revs.size()));
  ASSERT_TRUE(globex->ReadAtLeast(globex_revs.size()));
  EXPECT_THAT(acme->sink->revisions(), ElementsAreArray(acme_revs));
  EXPECT_THAT(globex->sink->revisions(), ElementsAreArray(globex_revs));
  for (const Event& e : acme->sink->events()) {
    EXPECT_EQ(e.record.owner.tenant, "acme");
  }
  // Nothing more arrives (everything is acknowledged, nothing left).
  EXPECT_FALSE(acme->AckNext(absl::Milliseconds(100)));
  EXPECT_EQ(acme->sink->event_count(), acme_revs.size());
}

TEST_F(WatchHubTest, StartZeroMeansFromNow) {
  MakeHub();
  CommitMany(5);
  auto w = MustWatch(0);
  CommitMany(3);
  ASSERT_TRUE(w->ReadAtLeast(3));
  EXPECT_FALSE(w->AckNext(absl::Milliseconds(100)));
  EXPECT_THAT(w->sink->revisions(), ElementsAreArray(Range(6, 8)));
}

TEST_F(WatchHubTest, StartAtNWithinHistoryAndAtTheNextRevision) {
  MakeHub();
  CommitMany(10);
  auto from4 = MustWatch(4);
  auto from11 = MustWatch(11);  // not committed yet: waits for it
  ASSERT_TRUE(from4->ReadAtLeast(7));
  EXPECT_THAT(from4->sink->revisions(), ElementsAreArray(Range(4, 10)));
  EXPECT_FALSE(from11->AckNext(absl::Milliseconds(100)));
  EXPECT_EQ(from11->sink->event_count(), 0u);
  CommitMany(7);
  ASSERT_TRUE(from11->ReadAtLeast(7));
  EXPECT_THAT(from11->sink->revisions(), ElementsAreArray(Range(11, 17)));
}

TEST_F(WatchHubTest, StartBeyondTheNextRevisionIsOutOfRange) {
  MakeHub();
  CommitMany(10);
  for (uint64_t start : {uint64_t{12}, uint64_t{1000}, UINT64_MAX}) {
    auto w = Watch(start);
    ASSERT_FALSE(w.ok()) << start;
    EXPECT_EQ(w.status().code(), absl::StatusCode::kOutOfRange);
    EXPECT_THAT(std::string(w.status().message()),
                AllOf(HasSubstr("start_revision"),
                      HasSubstr("beyond the newest revision 10"),
                      HasSubstr("at most 11")));
  }
  EXPECT_EQ(hub_->watcher_count(), 0u);  // refused ones are not counted
  // On an empty store only revision 1 (or 0) may be watched.
  MemoryStore empty;
  WatchHub fresh(empty);
  WatchSpec spec;
  spec.start_revision = 2;
  EXPECT_EQ(fresh.Start(spec, nullptr).status().code(),
            absl::StatusCode::kOutOfRange);
}

TEST_F(WatchHubTest, StartBelowTheRetainedHistoryIsOutOfRange) {
  MakeHub();
  CommitMany(10);
  ASSERT_TRUE(store_.CompactEvents(6).ok());
  auto too_old = Watch(3);
  ASSERT_FALSE(too_old.ok());
  EXPECT_EQ(too_old.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_THAT(std::string(too_old.status().message()),
              HasSubstr("oldest available revision is 6"));
  auto oldest = MustWatch(6);
  ASSERT_TRUE(oldest->ReadAtLeast(5));
  EXPECT_THAT(oldest->sink->revisions(), ElementsAreArray(Range(6, 10)));
  EXPECT_EQ(hub_->watcher_count(), 1u);  // the refused one is not counted
}

TEST_F(WatchHubTest, WatcherOverTakenByCompactionIsFinishedOutOfRange) {
  MakeHub(WatchLimits{.batch = 8});
  auto w = MustWatch(1);
  CommitMany(100);
  ASSERT_TRUE(w->sink->AwaitInFlight());  // revision 1 sent, never acked
  ASSERT_TRUE(store_.CompactEvents(50).ok());
  // Compaction does not signal; the pump looks again within ~1024 commits
  // even while every watcher is busy writing.
  CommitMany(1100);
  const absl::Status status = w->sink->AwaitFinish();
  EXPECT_EQ(status.code(), absl::StatusCode::kOutOfRange) << StatusText(status);
  EXPECT_THAT(std::string(status.message()),
              HasSubstr("watch fell behind the retained history; oldest "
                        "available revision is 50"));
}

TEST_F(WatchHubTest, SlowWatcherIsCutOffAtMaxLagAndResumesWithoutGap) {
  MakeHub(WatchLimits{.max_lag = 50, .batch = 8});
  auto slow = MustWatch(1);
  auto fast = MustWatch(1);
  CommitMany(3);
  ASSERT_TRUE(slow->ReadAtLeast(3));  // then it stops reading
  for (int i = 0; i < 100; ++i) {
    Commit({"acme"});
    ASSERT_TRUE(fast->ReadAtLeast(3 + i + 1));  // a reader that keeps up
  }
  const absl::Status status = slow->sink->AwaitFinish();
  ASSERT_EQ(status.code(), absl::StatusCode::kResourceExhausted)
      << StatusText(status);
  EXPECT_THAT(std::string(status.message()), HasSubstr("watcher too slow: "));
  EXPECT_THAT(std::string(status.message()), HasSubstr("(limit 50)"));
  // Everything handed to the sink is delivered before the status, so the
  // stream resumes right after the last event handed over.
  const std::vector<uint64_t> got = slow->sink->revisions();
  ASSERT_FALSE(got.empty());
  EXPECT_THAT(got, ElementsAreArray(Range(1, got.back())));
  EXPECT_THAT(
      std::string(status.message()),
      HasSubstr(absl::StrCat("resume with start_revision=", got.back() + 1)));
  EXPECT_FALSE(fast->sink->finished());  // the fast one was not affected

  auto resumed = MustWatch(got.back() + 1);
  ASSERT_TRUE(resumed->ReadAtLeast(103 - got.back()));
  std::vector<uint64_t> all = got;
  for (uint64_t r : resumed->sink->revisions()) all.push_back(r);
  EXPECT_THAT(all, ElementsAreArray(Range(1, 103)));
}

TEST_F(WatchHubTest, StalledReaderHoldsAtMostOneBatch) {
  MakeHub(WatchLimits{.batch = 16});
  auto stalled = MustWatch(1);
  for (int i = 0; i < 200; ++i)
    Commit({"acme", "acme", "acme", "acme", "acme"});
  ASSERT_TRUE(stalled->sink->AwaitInFlight());
  // Let the pump do its worst: a whole round after all 1,000 commits.
  ASSERT_TRUE(hub_->AwaitPumpIdle(kWait));
  EXPECT_EQ(stalled->sink->event_count(), 1u);
  EXPECT_LE(hub_->pending_events(*stalled->watcher), 16u);
  // Reading on drains it in order, still never more than a batch pending.
  for (int i = 0; i < 300; ++i) {
    ASSERT_TRUE(stalled->AckNext());
    ASSERT_LE(hub_->pending_events(*stalled->watcher), 16u);
  }
  EXPECT_THAT(stalled->sink->revisions(), ElementsAreArray(Range(1, 301)));
}

TEST_F(WatchHubTest, MaxWatchersIsEnforcedAndFreedByStop) {
  MakeHub(WatchLimits{.max_watchers = 2});
  auto a = MustWatch(0);
  auto b = MustWatch(0);
  auto c = Watch(0);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("limit 2"));
  a.reset();  // Stop
  EXPECT_EQ(hub_->watcher_count(), 1u);
  auto d = Watch(0);
  EXPECT_TRUE(d.ok()) << StatusText(d.status());
}

TEST_F(WatchHubTest, OneTenantCannotTakeEverySlot) {
  MakeHub(WatchLimits{.max_watchers = 10,
                      .max_watchers_per_tenant = 3,
                      .max_watchers_per_caller = 0});
  std::vector<std::unique_ptr<TestWatch>> acme;
  for (int i = 0; i < 3; ++i) {
    acme.push_back(MustWatch(0, "acme", "reader-" + std::to_string(i)));
  }
  ASSERT_EQ(hub_->watcher_count(), 3u);
  // A fourth of acme's is refused whoever asks, naming the limit and flag.
  auto fourth = Watch(0, "acme", "someone-else");
  ASSERT_FALSE(fourth.ok());
  EXPECT_EQ(fourth.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(fourth.status().message()),
              AllOf(HasSubstr("tenant \"acme\""), HasSubstr("limit 3"),
                    Not(HasSubstr("--"))));
  EXPECT_EQ(LimitOf(fourth.status()), Limit::kMaxWatchersPerTenant);
  // Other tenants (and all-tenant watchers, counted as one tenant) still
  // get theirs.
  auto globex = Watch(0, "globex", "reader-0");
  EXPECT_TRUE(globex.ok()) << StatusText(globex.status());
  std::vector<std::unique_ptr<TestWatch>> all;
  for (int i = 0; i < 3; ++i) all.push_back(MustWatch(0, "", "admin"));
  auto all4 = Watch(0, "", "admin");
  ASSERT_FALSE(all4.ok());
  EXPECT_THAT(std::string(all4.status().message()), HasSubstr("all tenants"));
  EXPECT_EQ(hub_->watcher_count(), 7u);
  // A slot freed by Stop is acme's again.
  acme.pop_back();
  auto again = Watch(0, "acme", "someone-else");
  EXPECT_TRUE(again.ok()) << StatusText(again.status());
}

TEST_F(WatchHubTest, OneCallerCannotTakeEverySlot) {
  MakeHub(WatchLimits{.max_watchers = 10,
                      .max_watchers_per_tenant = 0,
                      .max_watchers_per_caller = 2});
  auto a = MustWatch(0, "acme", "greedy");
  auto b = MustWatch(0, "globex", "greedy");
  auto c = Watch(0, "initech", "greedy");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(c.status().message()),
              AllOf(HasSubstr("caller greedy"), HasSubstr("limit 2"),
                    Not(HasSubstr("--"))));
  EXPECT_EQ(LimitOf(c.status()), Limit::kMaxWatchersPerCaller);
  // Another caller, same tenants: admitted.
  auto d = Watch(0, "acme", "polite");
  EXPECT_TRUE(d.ok()) << StatusText(d.status());
  b.reset();
  auto e = Watch(0, "initech", "greedy");
  EXPECT_TRUE(e.ok()) << StatusText(e.status());
  EXPECT_EQ(hub_->watcher_count(), 3u);
}

TEST_F(WatchHubTest, RefusedWatchersLeaveNoCountBehind) {
  // Refusals by one bound do not consume the other's slots: 100 refused
  // attempts by distinct callers of a full tenant leave every caller's
  // count at zero, so each of them may still watch another tenant.
  MakeHub(WatchLimits{.max_watchers = 200,
                      .max_watchers_per_tenant = 1,
                      .max_watchers_per_caller = 1});
  auto held = MustWatch(0, "full", "holder");
  for (int i = 0; i < 100; ++i) {
    ASSERT_FALSE(Watch(0, "full", "c" + std::to_string(i)).ok());
  }
  std::vector<std::unique_ptr<TestWatch>> others;
  for (int i = 0; i < 100; ++i) {
    auto w = Watch(0, "t" + std::to_string(i), "c" + std::to_string(i));
    ASSERT_TRUE(w.ok()) << i << " " << StatusText(w.status());
    others.push_back(*std::move(w));
  }
  EXPECT_EQ(hub_->watcher_count(), 101u);
}

TEST_F(WatchHubTest, CancelAndBrokenWriteFinishWithCancelled) {
  MakeHub();
  auto cancelled = MustWatch(1);
  auto broken = MustWatch(1);
  CommitMany(3);
  hub_->Cancel(*cancelled->watcher);
  EXPECT_EQ(cancelled->sink->AwaitFinish().code(),
            absl::StatusCode::kCancelled);
  hub_->Cancel(*cancelled->watcher);  // once only (checked by the sink)

  ASSERT_TRUE(broken->sink->AwaitInFlight());
  hub_->WriteDone(*broken->watcher, /*ok=*/false);
  EXPECT_EQ(broken->sink->AwaitFinish().code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(broken->sink->event_count(), 1u);
  // A late WriteDone after Finish is ignored.
  hub_->WriteDone(*broken->watcher, true);
  CommitMany(3);
  // The pump has looked at every watcher since those commits.
  ASSERT_TRUE(hub_->AwaitPumpIdle(kWait));
  EXPECT_EQ(broken->sink->event_count(), 1u);
}

TEST_F(WatchHubTest, ShutdownFinishesEveryWatcherAndRefusesNewOnes) {
  MakeHub();
  auto idle = MustWatch(0);
  auto busy = MustWatch(1);
  CommitMany(5);
  ASSERT_TRUE(busy->sink->AwaitInFlight());
  hub_->Shutdown();
  for (TestWatch* w : {idle.get(), busy.get()}) {
    const absl::Status s = w->sink->AwaitFinish();
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
    EXPECT_EQ(s.message(), "server is shutting down");
  }
  auto late = Watch(0);
  EXPECT_EQ(late.status().code(), absl::StatusCode::kUnavailable);
  // The store no longer calls the hub; commits go on.
  CommitMany(5);
  EXPECT_EQ(store_.LastRevision(), 10u);
  hub_->Shutdown();  // idempotent
}

// Many committers and watchers at once: every watcher gets exactly the
// events of its filter, in order, no gap, no duplicate.
TEST_F(WatchHubTest, ConcurrentCommittersAndReaders) {
  MakeHub(WatchLimits{.batch = 8});
  const std::vector<std::string> tenants = {"a", "b", "c"};
  auto all = MustWatch(1);
  auto only_b = MustWatch(1, "b");
  constexpr int kThreads = 4;
  constexpr int kBatches = 300;
  std::atomic<bool> done{false};
  std::vector<std::thread> readers;
  for (TestWatch* w : {all.get(), only_b.get()}) {
    readers.emplace_back([w, &done] {
      while (!done.load()) w->AckNext(absl::Milliseconds(10));
    });
  }
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([this, t, &tenants] {
      for (int i = 0; i < kBatches; ++i) {
        std::vector<std::string> batch;
        for (int k = 0; k <= (i + t) % 3; ++k) {
          batch.push_back(tenants[(i * 7 + t + k) % 3]);
        }
        WriteBatch wb;
        for (const std::string& tenant : batch) {
          Event e;
          e.record.owner = Owner{tenant, "u"};
          e.record.kind = Kind::kThread;
          e.record.labels = std::make_shared<const Labels>();
          wb.events.push_back(std::move(e));
        }
        ASSERT_TRUE(store_.Commit(&wb).ok());
      }
    });
  }
  for (auto& t : writers) t.join();
  const uint64_t last = store_.LastRevision();
  std::vector<Event> stored;
  ASSERT_TRUE(store_.ReadEvents(1, last, &stored).ok());
  std::vector<uint64_t> b_revs;
  for (const Event& e : stored) {
    if (e.record.owner.tenant == "b") b_revs.push_back(e.revision);
  }
  // Wait for both to catch up, then stop the readers.
  const absl::Time deadline = absl::Now() + kWait;
  EXPECT_TRUE(all->sink->AwaitCount(last, deadline));
  EXPECT_TRUE(only_b->sink->AwaitCount(b_revs.size(), deadline));
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_THAT(all->sink->revisions(), ElementsAreArray(Range(1, last)));
  EXPECT_THAT(only_b->sink->revisions(), ElementsAreArray(b_revs));
}

// Fan-out: many watchers at the same cursor (they share each store read)
// all get everything, in order.
TEST_F(WatchHubTest, ManyWatchersAllGetEverything) {
  MakeHub(WatchLimits{.batch = 16});
  constexpr int kWatchers = 200;
  constexpr int kEvents = 300;
  std::vector<std::unique_ptr<TestWatch>> watches;
  for (int i = 0; i < kWatchers; ++i) {
    watches.push_back(MustWatch(1, i % 4 == 0 ? "b" : ""));
  }
  std::atomic<bool> done{false};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t) {
    readers.emplace_back([&, t] {
      while (!done.load()) {
        for (int i = t; i < kWatchers; i += 4) {
          watches[i]->AckNext(absl::ZeroDuration());
        }
      }
    });
  }
  std::vector<uint64_t> b_revs;
  for (int i = 0; i < kEvents; ++i) {
    const uint64_t rev = Commit({i % 3 == 0 ? "b" : "a"});
    if (i % 3 == 0) b_revs.push_back(rev);
  }
  const absl::Time deadline = absl::Now() + kWait;
  for (int i = 0; i < kWatchers; ++i) {
    const size_t want = i % 4 == 0 ? b_revs.size() : kEvents;
    EXPECT_TRUE(watches[i]->sink->AwaitCount(want, deadline)) << i;
  }
  done = true;
  for (auto& t : readers) t.join();
  for (int i = 0; i < kWatchers; ++i) {
    if (i % 4 == 0) {
      EXPECT_THAT(watches[i]->sink->revisions(), ElementsAreArray(b_revs));
    } else {
      EXPECT_THAT(watches[i]->sink->revisions(),
                  ElementsAreArray(Range(1, kEvents)));
    }
  }
}

}  // namespace
}  // namespace registrar
