// Registry::IssueAsync (and OpenContextAsync) with a store that defers
// commits (as RocksDB does in fsync mode): records are pending until their
// commit is durable —
// counted against quota and reached by cascades, invisible to reads — and
// taken out again when the commit fails.
//
// The store here is a MemoryStore whose Submit holds batches until the
// test releases them: the one thing the test must control is when a
// commit completes.

#include <algorithm>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "service/common/clock.h"
#include "service/id/id_generator.h"
#include "service/id/key_ring.h"
#include "service/registry/registry.h"
#include "service/store/memory_store.h"
#include "tests/unit/registry/test_store.h"

namespace registrar {
namespace {

// Holds submitted batches until Release(); everything else is the
// MemoryStore's.
class HeldStore final : public testing::ForwardingStore {
 public:
  void Submit(WriteBatch* batch, CommitDone done) override {
    absl::MutexLock lock(&mu_);
    held_.emplace_back(batch, std::move(done));
  }
  // Completes the oldest held batch: committed, or failed with `failure`.
  void Release(absl::Status failure = absl::OkStatus()) {
    std::pair<WriteBatch*, CommitDone> next;
    {
      absl::MutexLock lock(&mu_);
      ASSERT_FALSE(held_.empty());
      next = std::move(held_.front());
      held_.pop_front();
    }
    std::move(next.second)(failure.ok() ? inner_.Commit(next.first) : failure);
  }
  size_t held() {
    absl::MutexLock lock(&mu_);
    return held_.size();
  }
  std::string_view name() const override { return "held"; }

 private:
  absl::Mutex mu_;
  std::deque<std::pair<WriteBatch*, CommitDone>> held_ ABSL_GUARDED_BY(mu_);
};

class IssueAsyncTest : public ::testing::Test {
 protected:
  IssueAsyncTest() : keys_(KeyRing::Generate()), ids_(clock_, keys_, 0) {
    RegistryOptions options;
    options.owner_quota = 3;
    registry_ = std::make_unique<Registry>(options, clock_, ids_, nullptr,
                                           &store_);
  }

  // Starts an IssueAsync; the result lands in *out when it completes.
  void Start(const IssueSpec& spec,
             std::optional<absl::StatusOr<std::vector<std::string>>>* out) {
    registry_->IssueAsync(
        spec, [out](absl::StatusOr<std::vector<std::string>> r) {
          *out = std::move(r);
        });
  }
  static IssueSpec Spec(Kind kind, uint32_t count = 1) {
    IssueSpec spec;
    spec.kind = kind;
    spec.owner = {"acme", "alice"};
    spec.count = count;
    return spec;
  }
  size_t Listed(bool include_ended = true) {
    ListOwnedSpec spec;
    spec.owner = {"acme", "alice"};
    spec.include_ended = include_ended;
    auto listed = registry_->ListOwned(spec);
    EXPECT_TRUE(listed.ok());
    return listed.ok() ? listed->records.size() : 0;
  }
  // Issues and commits at once.
  std::vector<std::string> IssueNow(IssueSpec spec) {
    std::optional<absl::StatusOr<std::vector<std::string>>> out;
    Start(spec, &out);
    store_.Release();
    EXPECT_TRUE(out.has_value() && out->ok());
    return out.has_value() && out->ok() ? **out : std::vector<std::string>{};
  }

  FakeClock clock_;
  KeyRing keys_;
  IdGenerator ids_;
  HeldStore store_;
  std::unique_ptr<Registry> registry_;
};

TEST_F(IssueAsyncTest, PendingRecordsAreUnseenButCountUntilTheirCommit) {
  std::optional<absl::StatusOr<std::vector<std::string>>> first;
  Start(Spec(Kind::kThread, 2), &first);
  EXPECT_FALSE(first.has_value()) << "answered before the commit";
  EXPECT_EQ(store_.held(), 1u);
  EXPECT_EQ(Listed(), 0u) << "a pending record is listed";

  // Quota 3: two pending + two more is over.
  std::optional<absl::StatusOr<std::vector<std::string>>> second;
  Start(Spec(Kind::kThread, 2), &second);
  ASSERT_TRUE(second.has_value());
  EXPECT_EQ(second->status().code(), absl::StatusCode::kResourceExhausted);

  store_.Release();
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(first->ok()) << first->status();
  ASSERT_EQ((*first)->size(), 2u);
  EXPECT_EQ(Listed(), 2u);
  for (const std::string& id : **first) {
    const ValidateResult v =
        registry_->Validate(id, Kind::kThread, {"acme", "alice"}, true);
    EXPECT_EQ(v.verdict, Verdict::kValid) << id;
    ASSERT_TRUE(v.record.has_value()) << id;
    EXPECT_GT(v.record->revision, 0u) << id;
    auto described = registry_->Describe(id);
    ASSERT_TRUE(described.ok()) << described.status();
  }
}

TEST_F(IssueAsyncTest, FailedCommitTakesTheRecordsOutAndFreesTheQuota) {
  std::optional<absl::StatusOr<std::vector<std::string>>> failed;
  Start(Spec(Kind::kThread, 3), &failed);
  store_.Release(absl::UnavailableError("store: cannot write: disk full"));
  ASSERT_TRUE(failed.has_value());
  EXPECT_EQ(failed->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Listed(), 0u);
  EXPECT_EQ(registry_->Stats().live_records[static_cast<int>(Kind::kThread)], 0u);
  // The whole quota is free again.
  EXPECT_EQ(IssueNow(Spec(Kind::kThread, 3)).size(), 3u);
}

TEST_F(IssueAsyncTest, FailedCommitUnbindsConnectionsFromTheirLease) {
  // Every change is answered once its commit completes: the lease's grant
  // and revocation too.
  std::optional<absl::StatusOr<LeaseGrant>> lease;
  registry_->GrantLeaseAsync("gw-1", absl::Seconds(30), "",
                             absl::InfiniteFuture(),
                             [&](absl::StatusOr<LeaseGrant> g) { lease = g; });
  EXPECT_FALSE(lease.has_value()) << "granted before its commit";
  store_.Release();
  ASSERT_TRUE(lease.has_value() && lease->ok());
  IssueSpec spec = Spec(Kind::kConnection);
  spec.lease_id = (*lease)->lease_id;
  std::optional<absl::StatusOr<std::vector<std::string>>> failed;
  Start(spec, &failed);
  store_.Release(absl::UnavailableError("store: cannot write"));
  ASSERT_TRUE(failed.has_value());
  EXPECT_FALSE(failed->ok());
  const std::vector<std::string> kept = IssueNow(spec);
  ASSERT_EQ(kept.size(), 1u);
  std::optional<absl::StatusOr<std::vector<std::string>>> revoked;
  registry_->RevokeLeaseAsync(
      (*lease)->lease_id, std::nullopt, absl::InfiniteFuture(),
      [&](absl::StatusOr<std::vector<std::string>> r) { revoked = r; });
  store_.Release();
  ASSERT_TRUE(revoked.has_value());
  ASSERT_TRUE(revoked->ok()) << revoked->status();
  EXPECT_EQ(**revoked, kept) << "the failed connection was still bound";
}

TEST_F(IssueAsyncTest, ACascadeReachesAPendingRecordAndItStaysEnded) {
  const std::string thread = IssueNow(Spec(Kind::kThread)).at(0);
  const std::string connection = IssueNow(Spec(Kind::kConnection)).at(0);
  IssueSpec run = Spec(Kind::kRun);
  run.parent_id = thread;
  run.connection_id = connection;
  std::optional<absl::StatusOr<std::vector<std::string>>> pending;
  Start(run, &pending);

  // The cleanup reaches the pending run; its commit is queued behind the
  // run's, and it is answered after it.
  CleanupTarget target;
  target.type = CleanupTarget::Type::kConnection;
  target.connection_id = connection;
  std::optional<absl::StatusOr<CleanupResult>> cleaned;
  registry_->CleanupAsync({"acme", "alice"}, target, "disconnect",
                          absl::InfiniteFuture(),
                          [&](absl::StatusOr<CleanupResult> r) { cleaned = r; });
  EXPECT_FALSE(cleaned.has_value()) << "answered before its commit";
  ASSERT_EQ(store_.held(), 2u);

  store_.Release();  // the run
  ASSERT_TRUE(pending.has_value());
  ASSERT_TRUE(pending->ok()) << pending->status();
  EXPECT_FALSE(cleaned.has_value());
  store_.Release();  // the cleanup
  ASSERT_TRUE(cleaned.has_value());
  ASSERT_TRUE(cleaned->ok()) << cleaned->status();
  EXPECT_EQ((*cleaned)->released.size(), 2u) << "connection and the run";
  const std::string run_id = (*pending)->at(0);
  EXPECT_NE(std::find((*cleaned)->released.begin(), (*cleaned)->released.end(),
                      run_id),
            (*cleaned)->released.end());
  EXPECT_EQ(
      registry_->Validate(run_id, Kind::kRun, {"acme", "alice"}, false).verdict,
      Verdict::kReleased);
}

TEST_F(IssueAsyncTest, OpenContextIsPendingUntilItsCommitThenReusesTheThread) {
  OpenContextSpec spec;
  spec.owner = {"acme", "alice"};
  std::optional<absl::StatusOr<OpenContextResult>> first;
  registry_->OpenContextAsync(
      spec, [&](absl::StatusOr<OpenContextResult> r) { first = std::move(r); });
  EXPECT_FALSE(first.has_value());
  EXPECT_EQ(Listed(), 0u);
  store_.Release();
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(first->ok()) << first->status();
  EXPECT_FALSE((*first)->thread_reused);
  EXPECT_EQ(Listed(), 3u);

  // Quota 3 is full: reusing the thread adds two more, which is over.
  spec.thread_id = (*first)->thread_id;
  std::optional<absl::StatusOr<OpenContextResult>> over;
  registry_->OpenContextAsync(
      spec, [&](absl::StatusOr<OpenContextResult> r) { over = std::move(r); });
  ASSERT_TRUE(over.has_value());
  EXPECT_EQ(over->status().code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(IssueAsyncTest, FailedOpenContextCommitLeavesNothing) {
  OpenContextSpec spec;
  spec.owner = {"acme", "alice"};
  std::optional<absl::StatusOr<OpenContextResult>> failed;
  registry_->OpenContextAsync(
      spec, [&](absl::StatusOr<OpenContextResult> r) { failed = std::move(r); });
  store_.Release(absl::UnavailableError("store: cannot write"));
  ASSERT_TRUE(failed.has_value());
  EXPECT_EQ(failed->status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Listed(), 0u);
  EXPECT_EQ(registry_->Stats().live_records[static_cast<int>(Kind::kRun)], 0u);
}

}  // namespace
}  // namespace registrar
