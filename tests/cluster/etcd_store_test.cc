// EtcdStore against a real 3-member etcd: the Store contract (round trip
// through Load, atomic batches, gap-free revisions under concurrent Submit,
// the event log with resume and compaction), fencing of a second writer,
// etcd unavailable, the etcd leader killed under load, and a Txn whose
// leader is lost sent again after txn_attempt_timeout.

#include "service/etcd/etcd_store.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/field_error.h"
#include "service/etcd/kv.h"
#include "tests/cluster/await.h"
#include "tests/cluster/cluster_fixture.h"
#include "tests/unit/store/store_test_util.h"

namespace registrar::etcd {
namespace {

using ::registrar::testing::Call;
using ::registrar::testing::ClusterTest;
using ::registrar::testing::EtcdCluster;
using ::registrar::testing::WaitFor;
using ::registrar::testing_util::ExpectSameRecord;
using ::registrar::testing_util::Issued;
using ::registrar::testing_util::MakeRecord;
using ::testing::HasSubstr;

// The etcd settings the README names for Registrar.
constexpr int64_t kMaxTxnOps = 16384;
constexpr int64_t kMaxRequestBytes = 8 * 1024 * 1024;

class EtcdStoreTest : public ClusterTest {
 protected:
  static void SetUpTestSuite() {
    EtcdCluster::Options o;
    o.extra_args = {absl::StrCat("--max-txn-ops=", kMaxTxnOps),
                    absl::StrCat("--max-request-bytes=", kMaxRequestBytes)};
    auto c = EtcdCluster::Start(o);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
  }

  void SetUp() override {
    ClusterTest::SetUp();
    prefix_ = absl::StrCat(
        "/t/", ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  EtcdStoreOptions Options() const {
    EtcdStoreOptions o;
    o.prefix = prefix_;
    o.max_txn_ops = kMaxTxnOps;
    o.max_request_bytes = kMaxRequestBytes;
    return o;
  }

  // A loaded store on this test's prefix; records loaded go to *loaded.
  // call_timeout: of every etcd call (0: the fixture's).
  std::unique_ptr<EtcdStore> Open(
      EtcdStoreOptions o, std::map<Id128, RecordView>* loaded = nullptr,
      StoreMeta* meta = nullptr,
      absl::Duration call_timeout = absl::ZeroDuration()) {
    std::shared_ptr<Connection> conn = Connect();
    if (conn != nullptr && call_timeout > absl::ZeroDuration()) {
      ConnectionOptions co = conn->options();
      co.call_timeout = call_timeout;
      conn = *Connection::Create(co);
    }
    EXPECT_NE(conn, nullptr);
    if (conn == nullptr) return nullptr;
    auto store = EtcdStore::Create(conn, std::move(o));
    EXPECT_TRUE(store.ok()) << store.status();
    if (!store.ok()) return nullptr;
    absl::StatusOr<StoreMeta> m = (*store)->Load([&](RecordView&& r) {
      if (loaded != nullptr) loaded->emplace(r.id, std::move(r));
    });
    EXPECT_TRUE(m.ok()) << m.status();
    if (!m.ok()) return nullptr;
    if (meta != nullptr) *meta = *m;
    return *std::move(store);
  }
  std::unique_ptr<EtcdStore> Open(std::map<Id128, RecordView>* loaded = nullptr,
                                  StoreMeta* meta = nullptr) {
    return Open(Options(), loaded, meta);
  }

  // Every key under this test's record prefix, straight from etcd.
  std::vector<mvccpb::KeyValue> RecordKeys() {
    Kv kv(Connect());
    pb::RangeRequest req;
    const std::string prefix = prefix_ + "/r/";
    req.set_key(prefix);
    req.set_range_end(PrefixEnd(prefix));
    auto r =
        Call<pb::RangeResponse>([&](auto cb) { kv.Range(req, std::move(cb)); });
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return {};
    return {r->kvs().begin(), r->kvs().end()};
  }

  std::string prefix_;
};

TEST_F(EtcdStoreTest, CommitThenLoadRoundTripsRecordsLeasesAndMeta) {
  std::vector<RecordView> written;
  {
    std::map<Id128, RecordView> loaded;
    StoreMeta meta;
    auto store = Open(&loaded, &meta);
    ASSERT_NE(store, nullptr);
    EXPECT_TRUE(loaded.empty());
    EXPECT_EQ(meta.revision, 0u);

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
    b.put_leases.push_back({Id128{1, 1}, "gateway-1", absl::Seconds(10), "me"});
    b.put_leases.push_back({Id128{2, 2}, "gateway-2", absl::Seconds(20), ""});
    b.clock_high_water_ms = 1'750'000'005'000;
    ASSERT_TRUE(store->Commit(&b).ok());
    ASSERT_EQ(b.events.size(), 5u);
    for (size_t i = 0; i < b.events.size(); ++i) {
      EXPECT_EQ(b.events[i].revision, i + 1);
      written.push_back(b.events[i].record);
    }
    WriteBatch later;  // revoke one lease, drop one record, lower clock
    later.delete_leases.push_back(Id128{2, 2});
    later.drop_records.push_back(written[0].id);
    later.clock_high_water_ms = 1'750'000'001'000;
    ASSERT_TRUE(store->Commit(&later).ok());
    EXPECT_EQ(store->LastRevision(), 5u);
    written.erase(written.begin());
  }
  std::map<Id128, RecordView> loaded;
  StoreMeta meta;
  auto store = Open(&loaded, &meta);
  ASSERT_NE(store, nullptr);
  ASSERT_EQ(loaded.size(), written.size());
  for (const RecordView& w : written) {
    ASSERT_TRUE(loaded.count(w.id));
    ExpectSameRecord(w, loaded[w.id]);
  }
  EXPECT_EQ(meta.revision, 5u);
  EXPECT_EQ(store->LastRevision(), 5u);
  EXPECT_EQ(meta.clock_high_water_ms, 1'750'000'005'000u);
  ASSERT_EQ(meta.leases.size(), 1u);
  EXPECT_EQ(meta.leases[0].id, (Id128{1, 1}));
  EXPECT_EQ(meta.leases[0].holder, "gateway-1");
  EXPECT_EQ(meta.leases[0].ttl, absl::Seconds(10));
  EXPECT_EQ(meta.leases[0].grantor, "me");
  EXPECT_EQ(store->ApproximateRecordCount(), written.size());
}

TEST_F(EtcdStoreTest, LargeBatchIsOneTxnAndOneThatCannotFitFailsWhole) {
  // A lease end of 4,000 connections (issue 17) is one batch.
  constexpr int kRecords = 4000;
  auto store = Open();
  ASSERT_NE(store, nullptr);
  WriteBatch big;
  for (int i = 1; i <= kRecords; ++i) {
    big.events.push_back(Issued(MakeRecord(i, Kind::kConnection)));
  }
  big.delete_leases.push_back(Id128{9, 9});
  ASSERT_TRUE(store->Commit(&big).ok());
  EXPECT_EQ(store->commit_stats().writes, 1u);
  std::vector<mvccpb::KeyValue> keys = RecordKeys();
  ASSERT_EQ(keys.size(), static_cast<size_t>(kRecords));
  // One Txn: etcd wrote every key at the same revision.
  std::set<int64_t> mods;
  for (const auto& kv : keys) mods.insert(kv.mod_revision());
  EXPECT_EQ(mods.size(), 1u);

  // A store assuming etcd's default limit refuses it rather than split it.
  EtcdStoreOptions small = Options();
  small.prefix += "-small";
  small.max_txn_ops = 128;
  auto limited = Open(small);
  ASSERT_NE(limited, nullptr);
  WriteBatch too_big;
  for (int i = 1; i <= 200; ++i) {
    too_big.events.push_back(Issued(MakeRecord(i)));
  }
  absl::Status s = limited->Commit(&too_big);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("--max-txn-ops"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("128"));
  EXPECT_EQ(LimitOf(s), Limit::kEtcdMaxTxnOps);  // the server names its flag
  EXPECT_EQ(limited->LastRevision(), 0u);
  EXPECT_EQ(limited->ApproximateRecordCount(), 0u);
  // The store still works for batches that fit.
  WriteBatch fits;
  fits.events.push_back(Issued(MakeRecord(1)));
  ASSERT_TRUE(limited->Commit(&fits).ok());
  EXPECT_EQ(fits.events[0].revision, 1u);
}

TEST_F(EtcdStoreTest, ConcurrentSubmitsGetGapFreeRevisionsInFewTxns) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 60;
  auto store = Open();
  ASSERT_NE(store, nullptr);
  absl::Mutex mu;
  std::vector<uint64_t> seen_by_listener;
  store->SetEventListener([&](const std::vector<Event>& events) {
    absl::MutexLock lock(&mu);
    for (const Event& e : events) seen_by_listener.push_back(e.revision);
  });
  std::vector<std::unique_ptr<WriteBatch>> batches;
  for (int i = 0; i < kThreads * kPerThread; ++i) {
    auto b = std::make_unique<WriteBatch>();
    for (int j = 0; j <= i % 3; ++j) {
      b->events.push_back(Issued(MakeRecord(i * 10 + j)));
    }
    batches.push_back(std::move(b));
  }
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        store->Submit(batches[t * kPerThread + i].get(), [&](absl::Status s) {
          (s.ok() ? ok : failed).fetch_add(1);
        });
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_TRUE(WaitFor([&] { return ok + failed == kThreads * kPerThread; }));
  ASSERT_EQ(failed.load(), 0);

  std::vector<uint64_t> revisions;
  for (const auto& b : batches) {
    for (const Event& e : b->events) revisions.push_back(e.revision);
  }
  std::sort(revisions.begin(), revisions.end());
  ASSERT_FALSE(revisions.empty());
  for (size_t i = 0; i < revisions.size(); ++i) {
    ASSERT_EQ(revisions[i], i + 1) << "gap or duplicate";
  }
  EXPECT_EQ(store->LastRevision(), revisions.size());
  {
    absl::MutexLock lock(&mu);
    ASSERT_EQ(seen_by_listener.size(), revisions.size());
    EXPECT_TRUE(
        std::is_sorted(seen_by_listener.begin(), seen_by_listener.end()));
  }
  // Group commit: queued batches were merged into shared Txns.
  const CommitStats stats = store->commit_stats();
  EXPECT_EQ(stats.batches, static_cast<uint64_t>(kThreads * kPerThread));
  EXPECT_LT(stats.writes, stats.batches);

  // A fresh store reads the same log from etcd, not from memory.
  auto reader = Open();
  ASSERT_NE(reader, nullptr);
  std::vector<Event> events;
  ASSERT_TRUE(reader->ReadEvents(1, revisions.size() + 5, &events).ok());
  ASSERT_EQ(events.size(), revisions.size());
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].revision, i + 1);
    EXPECT_EQ(events[i].record.revision, i + 1);
  }
}

TEST_F(EtcdStoreTest, SecondWriterOnThePrefixIsFencedAndNothingInterleaves) {
  auto first = Open();
  auto second = Open();
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);
  WriteBatch a;
  a.events.push_back(Issued(MakeRecord(1)));
  ASSERT_TRUE(first->Commit(&a).ok());

  // The second loaded before the first wrote: its view is stale.
  WriteBatch b;
  b.events.push_back(Issued(MakeRecord(2)));
  absl::Status s = second->Commit(&b);
  EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("another writer"));
  EXPECT_EQ(second->CheckWritable().code(), absl::StatusCode::kAborted);
  // Fenced for good: later batches fail too.
  WriteBatch b2;
  b2.events.push_back(Issued(MakeRecord(3)));
  EXPECT_EQ(second->Commit(&b2).code(), absl::StatusCode::kAborted);

  // The first goes on.
  WriteBatch a2;
  a2.events.push_back(Issued(MakeRecord(4)));
  ASSERT_TRUE(first->Commit(&a2).ok());
  EXPECT_EQ(a2.events[0].revision, 2u);

  // A third that loads now writes next; then the first is fenced.
  std::map<Id128, RecordView> loaded;
  auto third = Open(&loaded);
  ASSERT_NE(third, nullptr);
  ASSERT_EQ(loaded.size(), 2u);
  EXPECT_TRUE(loaded.count(MakeRecord(1).id));
  EXPECT_TRUE(loaded.count(MakeRecord(4).id));
  WriteBatch c;
  c.events.push_back(Issued(MakeRecord(5)));
  ASSERT_TRUE(third->Commit(&c).ok());
  EXPECT_EQ(c.events[0].revision, 3u);
  WriteBatch a3;
  a3.events.push_back(Issued(MakeRecord(6)));
  EXPECT_EQ(first->Commit(&a3).code(), absl::StatusCode::kAborted);

  // etcd holds exactly the three accepted records, revisions 1..3.
  std::vector<Event> events;
  ASSERT_TRUE(third->ReadEvents(1, 10, &events).ok());
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].record.id, MakeRecord(1).id);
  EXPECT_EQ(events[1].record.id, MakeRecord(4).id);
  EXPECT_EQ(events[2].record.id, MakeRecord(5).id);
  EXPECT_EQ(RecordKeys().size(), 3u);
}

TEST_F(EtcdStoreTest, ReadEventsResumesWithoutGapAndCompactsToOutOfRange) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->OldestRevision(), 1u);
  for (int i = 1; i <= 10; ++i) {
    WriteBatch b;
    b.events.push_back(Issued(MakeRecord(2 * i)));
    b.events.push_back(Issued(MakeRecord(2 * i + 1)));
    ASSERT_TRUE(store->Commit(&b).ok());
  }
  ASSERT_EQ(store->LastRevision(), 20u);
  // A watcher reads 7, then resumes from its last revision + 1, on this
  // store (memory) and on a fresh one (etcd): the same events, once each.
  auto fresh = Open();
  ASSERT_NE(fresh, nullptr);
  for (Store* s :
       {static_cast<Store*>(store.get()), static_cast<Store*>(fresh.get())}) {
    std::vector<Event> first, rest;
    ASSERT_TRUE(s->ReadEvents(1, 7, &first).ok());
    ASSERT_EQ(first.size(), 7u);
    ASSERT_TRUE(s->ReadEvents(first.back().revision + 1, 100, &rest).ok());
    ASSERT_EQ(rest.size(), 13u);
    std::vector<Event> all = first;
    all.insert(all.end(), rest.begin(), rest.end());
    for (size_t i = 0; i < all.size(); ++i) {
      EXPECT_EQ(all[i].revision, i + 1);
      EXPECT_EQ(all[i].record.id, MakeRecord(i + 2).id);
    }
    std::vector<Event> none;
    ASSERT_TRUE(s->ReadEvents(21, 5, &none).ok());
    EXPECT_TRUE(none.empty());
  }
  // Compacting inside a Txn's entry (revisions 5 and 6 share one).
  ASSERT_TRUE(store->CompactEvents(6).ok());
  EXPECT_EQ(store->OldestRevision(), 6u);
  std::vector<Event> old;
  absl::Status s = store->ReadEvents(5, 5, &old);
  EXPECT_EQ(s.code(), absl::StatusCode::kOutOfRange) << s;
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("oldest available revision is 6"));
  auto after = Open();
  ASSERT_NE(after, nullptr);
  EXPECT_EQ(after->OldestRevision(), 6u);
  std::vector<Event> kept;
  ASSERT_TRUE(after->ReadEvents(6, 3, &kept).ok());
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(kept[0].revision, 6u);
  EXPECT_EQ(kept[0].record.id, MakeRecord(7).id);
  EXPECT_EQ(after->ReadEvents(5, 1, &old).code(),
            absl::StatusCode::kOutOfRange);
}

TEST_F(EtcdStoreTest, WithoutQuorumCommitsFailUnavailableThenRecover) {
  EtcdStoreOptions o = Options();
  o.commit_timeout = absl::Seconds(2);
  o.probe_interval = absl::ZeroDuration();
  auto store = Open(o, nullptr, nullptr, absl::Milliseconds(500));
  ASSERT_NE(store, nullptr);
  WriteBatch before;
  before.events.push_back(Issued(MakeRecord(1)));
  ASSERT_TRUE(store->Commit(&before).ok());
  ASSERT_TRUE(store->CheckWritable().ok());

  ASSERT_TRUE(cluster_->Kill(1).ok());
  ASSERT_TRUE(cluster_->Kill(2).ok());
  WriteBatch during;
  during.events.push_back(Issued(MakeRecord(2)));
  absl::Status s = store->Commit(&during);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("etcd"));
  EXPECT_EQ(store->CheckWritable().code(), absl::StatusCode::kUnavailable);

  ASSERT_TRUE(cluster_->Restart(1).ok());
  ASSERT_TRUE(cluster_->Restart(2).ok());
  ASSERT_TRUE(cluster_->WaitHealthy(absl::Seconds(30)).ok());
  ASSERT_TRUE(WaitFor([&] { return store->CheckWritable().ok(); }));
  WriteBatch after;
  after.events.push_back(Issued(MakeRecord(3)));
  s = store->Commit(&after);
  std::map<Id128, RecordView> loaded;
  ASSERT_NE(Open(&loaded), nullptr);
  if (s.ok()) {
    // The failed batch was not applied and used no revision.
    EXPECT_EQ(after.events[0].revision, 2u);
    ASSERT_EQ(loaded.size(), 2u);
    EXPECT_FALSE(loaded.count(MakeRecord(2).id));
  } else {
    // etcd applied the failed batch once its quorum was back (a leader
    // had logged it): the store fenced itself rather than diverge.
    EXPECT_EQ(s.code(), absl::StatusCode::kAborted) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr("applied by etcd"));
    ASSERT_EQ(loaded.size(), 2u);
    EXPECT_TRUE(loaded.count(MakeRecord(2).id));
    EXPECT_FALSE(loaded.count(MakeRecord(3).id));
  }
}

TEST_F(EtcdStoreTest, LeaderKilledUnderLoadLosesNoAcknowledgedBatch) {
  constexpr int kWriters = 4;
  auto store = Open();
  ASSERT_NE(store, nullptr);
  absl::Mutex mu;
  std::set<Id128> acked, refused;
  std::atomic<bool> stop{false};
  std::atomic<int> acked_count{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      for (int i = 0; !stop.load(); ++i) {
        WriteBatch b;
        b.events.push_back(Issued(MakeRecord(w * 1'000'000 + i)));
        const absl::Status s = store->Commit(&b);
        absl::MutexLock lock(&mu);
        (s.ok() ? acked : refused).insert(b.events[0].record.id);
        if (s.ok()) acked_count.fetch_add(1);
      }
    });
  }
  ASSERT_TRUE(WaitFor([&] { return acked_count.load() >= 200; }));
  absl::StatusOr<int> leader = cluster_->Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  ASSERT_TRUE(cluster_->Kill(*leader).ok());
  const int at_kill = acked_count.load();
  // Commits resume on the new leader.
  EXPECT_TRUE(WaitFor([&] { return acked_count.load() >= at_kill + 200; }));
  ASSERT_TRUE(cluster_->Restart(*leader).ok());
  stop = true;
  for (auto& t : writers) t.join();
  EXPECT_TRUE(store->CheckWritable().ok());

  std::map<Id128, RecordView> loaded;
  StoreMeta meta;
  ASSERT_NE(Open(&loaded, &meta), nullptr);
  absl::MutexLock lock(&mu);
  ASSERT_GT(acked.size(), 400u);
  for (const Id128& id : acked) {
    ASSERT_TRUE(loaded.count(id)) << "acknowledged batch lost";
  }
  for (const Id128& id : refused) {
    EXPECT_FALSE(loaded.count(id)) << "failed batch applied";
  }
  EXPECT_EQ(loaded.size(), acked.size());
  // Revisions gap-free: one per acknowledged record, 1..n.
  std::set<uint64_t> revisions;
  for (const auto& [id, r] : loaded) revisions.insert(r.revision);
  ASSERT_EQ(revisions.size(), loaded.size());
  EXPECT_EQ(*revisions.begin(), 1u);
  EXPECT_EQ(*revisions.rbegin(), loaded.size());
  EXPECT_EQ(meta.revision, loaded.size());
}

TEST(TxnFateTest, TellsNotAppliedOursAndAnotherWritersApart) {
  const std::string ours = EncodeRevisionValue({.revision = 7, .token = "a:3"});
  const std::string theirs =
      EncodeRevisionValue({.revision = 7, .token = "b:1"});
  // Unchanged since we read it: whatever the value, ours did not apply.
  EXPECT_EQ(FateOf(40, theirs, 40, "a:3"), TxnFate::kNotApplied);
  EXPECT_EQ(FateOf(0, "", 0, "a:3"), TxnFate::kNotApplied);
  // Changed, with our token: an earlier sending of ours applied.
  EXPECT_EQ(FateOf(41, ours, 40, "a:3"), TxnFate::kApplied);
  // Changed by another token, by an earlier Txn of ours, or to garbage.
  EXPECT_EQ(FateOf(41, theirs, 40, "a:3"), TxnFate::kOtherWriter);
  EXPECT_EQ(FateOf(41, EncodeRevisionValue({.revision = 6, .token = "a:2"}), 40,
                   "a:3"),
            TxnFate::kOtherWriter);
  EXPECT_EQ(FateOf(41, "junk", 40, "a:3"), TxnFate::kOtherWriter);
  EXPECT_EQ(FateOf(0, "", 40, "a:3"), TxnFate::kOtherWriter);  // deleted
}

// A Txn sent to a follower whose leader then stops answering: the
// follower forwarded the proposal to the leader, which drops it, and the
// follower answers only after etcd's request timeout (5 s + 2 election
// timeouts = 7 s here), or never within a long call deadline. The writer
// gives up on that sending after txn_attempt_timeout, learns from
// <prefix>/m/rev that it did not apply, and sends it again once the other
// two members have elected a leader (election timeout 1 s).
TEST_F(EtcdStoreTest, TxnLostWithItsLeaderIsSentAgainAfterTheAttemptTimeout) {
  absl::StatusOr<int> leader = cluster_->Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  const int f1 = (*leader + 1) % 3, f2 = (*leader + 2) % 3;
  ConnectionOptions co = Connect()->options();
  co.endpoints = {cluster_->client_endpoint(f1), cluster_->client_endpoint(f2)};
  co.call_timeout = absl::Seconds(60);  // only the attempt timeout helps
  absl::StatusOr<std::shared_ptr<Connection>> conn = Connection::Create(co);
  ASSERT_TRUE(conn.ok()) << conn.status();
  EtcdStoreOptions o = Options();
  o.commit_timeout = absl::Seconds(30);
  o.txn_attempt_timeout = absl::Milliseconds(500);
  absl::StatusOr<std::unique_ptr<EtcdStore>> store =
      EtcdStore::Create(*conn, o);
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Load([](RecordView&&) {}).ok());
  WriteBatch first;
  first.events.push_back(Issued(MakeRecord(1)));
  ASSERT_TRUE((*store)->Commit(&first).ok());

  ASSERT_TRUE(cluster_->Pause(*leader).ok());
  const absl::Time start = absl::Now();
  WriteBatch during;
  during.events.push_back(Issued(MakeRecord(2)));
  const absl::Status s = (*store)->Commit(&during);
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(cluster_->Resume(*leader).ok());
  ASSERT_TRUE(s.ok()) << s;
  std::printf("commit with the leader paused took %s\n",
              absl::FormatDuration(took).c_str());
  // Election (1 s, up to 2 with its randomisation) plus the attempt
  // timeout and the resend; etcd's own answer would take 7 s.
  EXPECT_LT(took, absl::Seconds(5));
  EXPECT_TRUE((*store)->CheckWritable().ok());

  // Applied once: gap-free revisions, both records loaded.
  ASSERT_TRUE(cluster_->WaitHealthy(absl::Seconds(30)).ok());
  std::map<Id128, RecordView> loaded;
  StoreMeta meta;
  ASSERT_NE(Open(&loaded, &meta), nullptr);
  EXPECT_EQ(loaded.size(), 2u);
  EXPECT_EQ(during.events[0].revision, 2u);
  EXPECT_EQ(meta.revision, 2u);
}

}  // namespace
}  // namespace registrar::etcd
