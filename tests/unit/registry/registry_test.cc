#include "service/registry/registry.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <ostream>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/clock.h"
#include "service/common/field_error.h"
#include "service/id/id.h"
#include "service/id/id_generator.h"
#include "service/id/key_ring.h"
#include "service/model/kind.h"
#include "service/registry/observer.h"

namespace registrar {

// Readable gtest output for the core's enums (found by ADL).
void PrintTo(Verdict v, std::ostream* os) {
  static constexpr const char* kNames[] = {
      "UNSPECIFIED", "VALID",     "MALFORMED", "WRONG_KIND", "FORGED",
      "UNKNOWN",     "NOT_OWNER", "RELEASED",  "EXPIRED"};
  const auto i = static_cast<size_t>(v);
  *os << (i < std::size(kNames) ? kNames[i] : "?");
}
void PrintTo(State s, std::ostream* os) {
  static constexpr const char* kNames[] = {"UNSPECIFIED", "LIVE", "RELEASED",
                                           "EXPIRED"};
  const auto i = static_cast<size_t>(s);
  *os << (i < std::size(kNames) ? kNames[i] : "?");
}
void PrintTo(Kind k, std::ostream* os) { *os << KindName(k); }
void PrintTo(const Owner& o, std::ostream* os) {
  *os << "{" << o.tenant << "/" << o.user_id << "}";
}

namespace {

std::string ParentIdText(const RecordView& r) {
  return FormatParentId(r.kind, r.parent);
}

using ::testing::Contains;
using ::testing::ElementsAreArray;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using ::testing::UnorderedElementsAre;
using ::testing::UnorderedElementsAreArray;

constexpr Kind kRecordKinds[] = {Kind::kThread, Kind::kRun, Kind::kRequest,
                                 Kind::kConnection};
constexpr uint32_t kShardCounts[] = {1, 16};

Owner Alice() { return {"acme", "alice"}; }
Owner Bob() { return {"acme", "bob"}; }
Owner AliceElsewhere() { return {"globex", "alice"}; }  // same user_id

// The status has `code` and names `field` (see field_error.h).
MATCHER_P2(IsFieldError, code, field, "") {
  const absl::Status& status = arg;
  if (status.code() != code) {
    *result_listener << "code is " << absl::StatusCodeToString(status.code())
                     << " (" << status.message() << ")";
    return false;
  }
  std::optional<std::string> named = ErrorField(status);
  if (!named.has_value() || *named != field) {
    *result_listener << "field is " << (named ? *named : "<none>") << " ("
                     << status.message() << ")";
    return false;
  }
  return true;
}

MATCHER_P(HasCode, code, "") {
  const absl::Status& status = arg;
  if (status.code() == code) return true;
  *result_listener << "code is " << absl::StatusCodeToString(status.code())
                   << " (" << status.message() << ")";
  return false;
}

std::string Suffix(std::string_view id) {
  return std::string(id.substr(id.find('_') + 1));
}

// The same 128 bits under another prefix.
std::string Relabel(std::string_view id, Kind kind) {
  return std::string(KindPrefix(kind)) + "_" + Suffix(id);
}

// `id` with the lowest tag bit flipped: well-formed, never minted.
std::string FlipTagBit(std::string_view id) {
  absl::StatusOr<ParsedId> parsed = ParseId(id);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  if (!parsed.ok()) return "";
  Id128 bits = parsed->bits;
  bits.lo ^= 1;
  return FormatId(parsed->kind, bits);
}

Id128 BitsOf(std::string_view id) {
  absl::StatusOr<ParsedId> parsed = ParseId(id);
  EXPECT_TRUE(parsed.ok()) << parsed.status();
  return parsed.ok() ? parsed->bits : Id128{};
}

std::string TextOf(const RecordView& r) { return FormatId(r.kind, r.id); }

std::vector<uint64_t> StatsVector(const RegistryStats& s) {
  std::vector<uint64_t> v(std::begin(s.live_records), std::end(s.live_records));
  v.push_back(s.tombstones);
  v.push_back(s.leases);
  return v;
}

// Records what the registry reports. Thread-safe.
class RecordingObserver final : public RegistryObserver {
 public:
  void OnIssued(Kind kind, uint64_t count) override {
    issued_[static_cast<int>(kind)] += count;
  }
  void OnEnded(Kind kind, EndCause cause, uint64_t count) override {
    ended_[static_cast<int>(kind)][static_cast<int>(cause)] += count;
  }
  void OnLeaseGranted() override { ++granted_; }
  void OnLeaseEnded(EndCause cause) override {
    ++lease_ended_[static_cast<int>(cause)];
  }

  uint64_t issued(Kind kind) const { return issued_[static_cast<int>(kind)]; }
  uint64_t ended(Kind kind, EndCause cause) const {
    return ended_[static_cast<int>(kind)][static_cast<int>(cause)];
  }
  uint64_t ended_total() const {
    uint64_t n = 0;
    for (const auto& by_cause : ended_) {
      for (const auto& c : by_cause) n += c;
    }
    return n;
  }
  uint64_t issued_total() const {
    uint64_t n = 0;
    for (const auto& c : issued_) n += c;
    return n;
  }
  uint64_t granted() const { return granted_; }
  uint64_t lease_ended(EndCause cause) const {
    return lease_ended_[static_cast<int>(cause)];
  }

 private:
  std::atomic<uint64_t> issued_[kNumKinds] = {};
  std::atomic<uint64_t> ended_[kNumKinds][kNumEndCauses] = {};
  std::atomic<uint64_t> granted_{0};
  std::atomic<uint64_t> lease_ended_[kNumEndCauses] = {};
};

class RegistryTest : public ::testing::Test {
 protected:
  RegistryTest() : keys_(KeyRing::Generate()), ids_(clock_, keys_, 0) {
    Reset(RegistryOptions{});
  }

  // A fresh registry (and observer) with `options`.
  void Reset(const RegistryOptions& options) {
    registry_.reset();
    observer_ = std::make_unique<RecordingObserver>();
    registry_ =
        std::make_unique<Registry>(options, clock_, ids_, observer_.get());
  }
  void ResetWithShards(uint32_t shards) {
    RegistryOptions options;
    options.shards = shards;
    Reset(options);
  }

  static IssueSpec Spec(Kind kind, const Owner& owner,
                        std::string_view parent = "",
                        std::string_view connection = "",
                        std::string_view lease = "") {
    IssueSpec spec;
    spec.kind = kind;
    spec.owner = owner;
    spec.parent_id = parent;
    spec.connection_id = connection;
    spec.lease_id = lease;
    return spec;
  }

  // Issues one ID; a failure fails the test and returns "".
  std::string Issue1(Kind kind, const Owner& owner,
                     std::string_view parent = "",
                     std::string_view connection = "",
                     std::string_view lease = "") {
    absl::StatusOr<std::vector<std::string>> ids =
        registry_->Issue(Spec(kind, owner, parent, connection, lease));
    EXPECT_TRUE(ids.ok()) << ids.status();
    if (!ids.ok()) return "";
    EXPECT_THAT(*ids, SizeIs(1));
    return ids->empty() ? "" : ids->front();
  }

  std::vector<std::string> IssueN(Kind kind, const Owner& owner, uint32_t n) {
    IssueSpec spec = Spec(kind, owner);
    spec.count = n;
    absl::StatusOr<std::vector<std::string>> ids = registry_->Issue(spec);
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<std::string>{};
  }

  absl::Status IssueStatus(const IssueSpec& spec) {
    return registry_->Issue(spec).status();
  }

  OpenContextResult Open(const Owner& owner, std::string_view thread = "",
                         std::string_view connection = "") {
    OpenContextSpec spec;
    spec.owner = owner;
    spec.thread_id = thread;
    spec.connection_id = connection;
    absl::StatusOr<OpenContextResult> r = registry_->OpenContext(spec);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : OpenContextResult{};
  }

  absl::Status OpenStatus(const Owner& owner, std::string_view thread,
                          std::string_view connection) {
    OpenContextSpec spec;
    spec.owner = owner;
    spec.thread_id = thread;
    spec.connection_id = connection;
    return registry_->OpenContext(spec).status();
  }

  Verdict Check(std::string_view id, const Owner& owner,
                Kind expected = Kind::kUnspecified) const {
    return registry_->Validate(id, expected, owner, /*want_record=*/false)
        .verdict;
  }

  // State by Describe; kUnspecified when there is no record.
  State StateOf(std::string_view id) const {
    absl::StatusOr<RecordView> r = registry_->Describe(id);
    return r.ok() ? r->state : State::kUnspecified;
  }

  RecordView DescribeOk(std::string_view id) const {
    absl::StatusOr<RecordView> r = registry_->Describe(id);
    EXPECT_TRUE(r.ok()) << id << ": " << r.status();
    return r.ok() ? *r : RecordView{};
  }

  absl::StatusOr<CleanupResult> TryCleanupIds(const Owner& owner,
                                              std::vector<std::string> ids,
                                              std::string_view reason = "") {
    CleanupTarget target;
    target.type = CleanupTarget::Type::kIds;
    for (const std::string& id : ids) target.ids.push_back(id);
    return registry_->Cleanup(owner, target, reason);
  }
  CleanupResult CleanupIds(const Owner& owner, std::vector<std::string> ids,
                           std::string_view reason = "") {
    absl::StatusOr<CleanupResult> r =
        TryCleanupIds(owner, std::move(ids), reason);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : CleanupResult{};
  }
  absl::StatusOr<CleanupResult> TryCleanupConnection(
      const Owner& owner, std::string_view connection,
      std::string_view reason = "") {
    CleanupTarget target;
    target.type = CleanupTarget::Type::kConnection;
    target.connection_id = connection;
    return registry_->Cleanup(owner, target, reason);
  }
  CleanupResult CleanupConnection(const Owner& owner,
                                  std::string_view connection,
                                  std::string_view reason = "") {
    absl::StatusOr<CleanupResult> r =
        TryCleanupConnection(owner, connection, reason);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : CleanupResult{};
  }
  CleanupResult CleanupAll(const Owner& owner, std::string_view reason = "") {
    CleanupTarget target;
    target.type = CleanupTarget::Type::kAllOwned;
    absl::StatusOr<CleanupResult> r = registry_->Cleanup(owner, target, reason);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : CleanupResult{};
  }

  std::string Grant(absl::Duration ttl = absl::Seconds(30)) {
    absl::StatusOr<LeaseGrant> g = registry_->GrantLease("gateway-1", ttl);
    EXPECT_TRUE(g.ok()) << g.status();
    return g.ok() ? g->lease_id : "";
  }

  // Every record of the owner (all pages), as text, in the order returned.
  std::vector<std::string> ListAll(const Owner& owner,
                                   Kind kind = Kind::kUnspecified,
                                   bool include_ended = false) const {
    std::vector<std::string> out;
    std::string token;
    for (int page = 0; page < 100'000; ++page) {
      ListOwnedSpec spec;
      spec.owner = owner;
      spec.kind = kind;
      spec.include_ended = include_ended;
      spec.page_size = 1000;
      spec.page_token = token;
      absl::StatusOr<ListOwnedResult> r = registry_->ListOwned(spec);
      EXPECT_TRUE(r.ok()) << r.status();
      if (!r.ok()) break;
      for (const RecordView& v : r->records) out.push_back(TextOf(v));
      if (r->next_page_token.empty()) break;
      token = r->next_page_token;
    }
    return out;
  }

  std::vector<uint64_t> StatsNow() const {
    return StatsVector(registry_->Stats());
  }

  // A well-formed ID whose tag no key produced (2^-46 odds otherwise).
  std::string ForgedId(Kind kind, uint64_t tag = 0x2a2a2a2a2a2a) const {
    IdFields f;
    f.unix_ms = absl::ToUnixMillis(clock_.Now());
    f.seq = 4000;
    f.tag = tag;
    return FormatId(kind, PackId(f));
  }
  // A genuine ID of `owner` that the registry never recorded.
  std::string MintedNotRecorded(Kind kind, const Owner& owner) {
    return FormatId(kind,
                    ids_.MintOne(kind, owner.tenant, owner.user_id).value());
  }

  FakeClock clock_;
  KeyRing keys_;
  IdGenerator ids_;
  std::unique_ptr<RecordingObserver> observer_;
  std::unique_ptr<Registry> registry_;
};

// ---------------------------------------------------------------------------
// Issue

TEST_F(RegistryTest, IssueMintsAndRecordsEachKind) {
  for (Kind kind : kRecordKinds) {
    SCOPED_TRACE(KindName(kind));
    const std::string id = Issue1(kind, Alice());
    absl::StatusOr<ParsedId> parsed = ParseId(id);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->kind, kind);
    EXPECT_TRUE(id.starts_with(std::string(KindPrefix(kind)) + "_")) << id;
    EXPECT_TRUE(keys_.Verify(kind, parsed->bits, "acme", "alice"));
    const RecordView r = DescribeOk(id);
    EXPECT_EQ(r.kind, kind);
    EXPECT_EQ(r.owner, Alice());
    EXPECT_EQ(r.state, State::kLive);
    EXPECT_EQ(Check(id, Alice(), kind), Verdict::kValid);
    EXPECT_EQ(registry_->Stats().live_records[static_cast<int>(kind)], 1u);
  }
}

TEST_F(RegistryTest, IssueCountZeroMintsOne) {
  IssueSpec spec = Spec(Kind::kThread, Alice());
  spec.count = 0;
  absl::StatusOr<std::vector<std::string>> ids = registry_->Issue(spec);
  ASSERT_TRUE(ids.ok()) << ids.status();
  ASSERT_THAT(*ids, SizeIs(1));
  EXPECT_EQ(Check((*ids)[0], Alice(), Kind::kThread), Verdict::kValid);
}

TEST_F(RegistryTest, IssueBatchMintsDistinctIncreasingIds) {
  const std::vector<std::string> ids = IssueN(Kind::kRequest, Alice(), 500);
  ASSERT_THAT(ids, SizeIs(500));
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), 500u);
  for (const std::string& id : ids) {
    ASSERT_EQ(Check(id, Alice(), Kind::kRequest), Verdict::kValid) << id;
  }
  EXPECT_EQ(observer_->issued(Kind::kRequest), 500u);
}

TEST_F(RegistryTest, IssueCountAboveMaxBatchIsResourceExhausted) {
  RegistryOptions options;
  options.max_batch = 10;
  Reset(options);
  IssueSpec spec = Spec(Kind::kThread, Alice());
  spec.count = 11;
  EXPECT_THAT(IssueStatus(spec),
              IsFieldError(absl::StatusCode::kResourceExhausted, "count"));
  EXPECT_THAT(ListAll(Alice()), IsEmpty());
  spec.count = 10;
  EXPECT_TRUE(IssueStatus(spec).ok());
  EXPECT_THAT(ListAll(Alice()), SizeIs(10));
}

TEST_F(RegistryTest, IssueRejectsUnspecifiedAndLeaseKinds) {
  for (Kind kind : {Kind::kUnspecified, Kind::kLease}) {
    SCOPED_TRACE(KindName(kind));
    EXPECT_THAT(IssueStatus(Spec(kind, Alice())),
                IsFieldError(absl::StatusCode::kInvalidArgument, "kind"));
  }
  EXPECT_THAT(StatsNow(), ElementsAreArray(StatsVector(RegistryStats{})));
}

TEST_F(RegistryTest, IssueRunUnderLiveThreadAndRequestUnderRun) {
  const std::string thread = Issue1(Kind::kThread, Alice());
  const std::string run = Issue1(Kind::kRun, Alice(), thread);
  const std::string request = Issue1(Kind::kRequest, Alice(), run);
  EXPECT_EQ(ParentIdText(DescribeOk(run)), thread);
  EXPECT_EQ(ParentIdText(DescribeOk(request)), run);
  EXPECT_EQ(DescribeOk(run).parent, BitsOf(thread));
  EXPECT_EQ(Check(request, Alice(), Kind::kRequest), Verdict::kValid);
}

TEST_F(RegistryTest, IssueUnderParentOfWrongKindIsInvalidArgument) {
  const OpenContextResult ctx = Open(Alice());
  const std::vector<uint64_t> before = StatsNow();
  // A run's parent must be a thread ID.
  for (const std::string& parent :
       {ctx.run_id, ctx.request_id, Relabel(ctx.thread_id, Kind::kConnection),
        std::string("garbage"), std::string("user_a_thread_1")}) {
    SCOPED_TRACE(parent);
    EXPECT_THAT(IssueStatus(Spec(Kind::kRun, Alice(), parent)),
                IsFieldError(absl::StatusCode::kInvalidArgument, "parent_id"));
  }
  // A request's parent must be a run ID.
  for (const std::string& parent : {ctx.thread_id, ctx.request_id}) {
    SCOPED_TRACE(parent);
    EXPECT_THAT(IssueStatus(Spec(Kind::kRequest, Alice(), parent)),
                IsFieldError(absl::StatusCode::kInvalidArgument, "parent_id"));
  }
  EXPECT_EQ(StatsNow(), before);
}

TEST_F(RegistryTest, IssueUnderUnusableParentIsFailedPrecondition) {
  for (uint32_t shards : kShardCounts) {
    SCOPED_TRACE(shards);
    ResetWithShards(shards);
    const std::string released = Issue1(Kind::kThread, Alice());
    CleanupIds(Alice(), {released});
    const std::string bobs = Issue1(Kind::kThread, Bob());
    const std::string other_tenant = Issue1(Kind::kThread, AliceElsewhere());
    const std::string run_released = Issue1(Kind::kRun, Alice());
    CleanupIds(Alice(), {run_released});
    const std::vector<uint64_t> before = StatsNow();

    for (const std::string& parent :
         {released, bobs, other_tenant,
          MintedNotRecorded(Kind::kThread, Alice()), ForgedId(Kind::kThread)}) {
      SCOPED_TRACE(parent);
      EXPECT_THAT(
          IssueStatus(Spec(Kind::kRun, Alice(), parent)),
          IsFieldError(absl::StatusCode::kFailedPrecondition, "parent_id"));
    }
    EXPECT_THAT(
        IssueStatus(Spec(Kind::kRequest, Alice(), run_released)),
        IsFieldError(absl::StatusCode::kFailedPrecondition, "parent_id"));
    EXPECT_EQ(StatsNow(), before);
    EXPECT_THAT(ListAll(Alice(), Kind::kRun), IsEmpty());
    EXPECT_THAT(ListAll(Alice(), Kind::kRequest), IsEmpty());
  }
}

TEST_F(RegistryTest, IssueParentIdNotAllowedForThreadsAndConnections) {
  const std::string thread = Issue1(Kind::kThread, Alice());
  for (Kind kind : {Kind::kThread, Kind::kConnection}) {
    SCOPED_TRACE(KindName(kind));
    EXPECT_THAT(IssueStatus(Spec(kind, Alice(), thread)),
                IsFieldError(absl::StatusCode::kInvalidArgument, "parent_id"));
  }
  EXPECT_THAT(ListAll(Alice()), UnorderedElementsAre(thread));
}

TEST_F(RegistryTest, IssueConnectionIdMustBeLiveConnectionOfOwner) {
  for (uint32_t shards : kShardCounts) {
    SCOPED_TRACE(shards);
    ResetWithShards(shards);
    const std::string conn = Issue1(Kind::kConnection, Alice());
    // Each non-connection kind may name the connection it was opened through.
    const std::string thread = Issue1(Kind::kThread, Alice(), "", conn);
    const std::string run = Issue1(Kind::kRun, Alice(), thread, conn);
    const std::string request = Issue1(Kind::kRequest, Alice(), run, conn);
    for (const std::string& id : {thread, run, request}) {
      EXPECT_EQ(DescribeOk(id).connection, BitsOf(conn)) << id;
    }

    const std::string released = Issue1(Kind::kConnection, Alice());
    CleanupIds(Alice(), {released});
    const std::string bobs = Issue1(Kind::kConnection, Bob());
    const std::string other_tenant =
        Issue1(Kind::kConnection, AliceElsewhere());
    const std::vector<uint64_t> before = StatsNow();
    for (const std::string& c : {released, bobs, other_tenant,
                                 MintedNotRecorded(Kind::kConnection, Alice()),
                                 ForgedId(Kind::kConnection)}) {
      SCOPED_TRACE(c);
      EXPECT_THAT(
          IssueStatus(Spec(Kind::kThread, Alice(), "", c)),
          IsFieldError(absl::StatusCode::kFailedPrecondition, "connection_id"));
      EXPECT_THAT(
          IssueStatus(Spec(Kind::kRun, Alice(), thread, c)),
          IsFieldError(absl::StatusCode::kFailedPrecondition, "connection_id"));
    }
    // Not a connection ID at all, or on a connection itself.
    EXPECT_THAT(
        IssueStatus(Spec(Kind::kThread, Alice(), "", thread)),
        IsFieldError(absl::StatusCode::kInvalidArgument, "connection_id"));
    EXPECT_THAT(
        IssueStatus(Spec(Kind::kThread, Alice(), "", "conn_nope")),
        IsFieldError(absl::StatusCode::kInvalidArgument, "connection_id"));
    EXPECT_THAT(
        IssueStatus(Spec(Kind::kConnection, Alice(), "", conn)),
        IsFieldError(absl::StatusCode::kInvalidArgument, "connection_id"));
    EXPECT_EQ(StatsNow(), before);
  }
}

TEST_F(RegistryTest, IssueLeaseIdOnlyForConnections) {
  const std::string lease = Grant();
  for (Kind kind : {Kind::kThread, Kind::kRun, Kind::kRequest}) {
    SCOPED_TRACE(KindName(kind));
    EXPECT_THAT(IssueStatus(Spec(kind, Alice(), "", "", lease)),
                IsFieldError(absl::StatusCode::kInvalidArgument, "lease_id"));
  }
  const std::string conn = Issue1(Kind::kConnection, Alice(), "", "", lease);
  EXPECT_EQ(DescribeOk(conn).lease, BitsOf(lease));
  EXPECT_THAT(ListAll(Alice()), UnorderedElementsAre(conn));
}

TEST_F(RegistryTest, IssueConnectionWithUnusableLeaseIsRefused) {
  const std::string revoked = Grant();
  ASSERT_TRUE(registry_->RevokeLease(revoked).ok());
  const std::string expired = Grant(absl::Seconds(5));
  const std::string live = Grant(absl::Seconds(60));
  clock_.Advance(absl::Seconds(5));  // `expired` is due; no Tick yet
  const std::string never = FormatId(
      Kind::kLease, ids_.MintOne(Kind::kLease, "", "gateway-1").value());
  const std::vector<uint64_t> before = StatsNow();

  for (const std::string& lease : {revoked, expired, never}) {
    SCOPED_TRACE(lease);
    EXPECT_THAT(IssueStatus(Spec(Kind::kConnection, Alice(), "", "", lease)),
                HasCode(absl::StatusCode::kFailedPrecondition));
  }
  for (const std::string& lease :
       {std::string("lease_x"), std::string("garbage"),
        Relabel(live, Kind::kConnection)}) {
    SCOPED_TRACE(lease);
    EXPECT_THAT(IssueStatus(Spec(Kind::kConnection, Alice(), "", "", lease)),
                IsFieldError(absl::StatusCode::kInvalidArgument, "lease_id"));
  }
  EXPECT_EQ(StatsNow(), before);
  EXPECT_THAT(ListAll(Alice()), IsEmpty());
  // The live lease still works, and carries only what was issued on it.
  const std::string conn = Issue1(Kind::kConnection, Alice(), "", "", live);
  absl::StatusOr<std::vector<std::string>> revoked_ids =
      registry_->RevokeLease(live);
  ASSERT_TRUE(revoked_ids.ok()) << revoked_ids.status();
  EXPECT_THAT(*revoked_ids, UnorderedElementsAre(conn));
}

// Every error the registry returns names the field at fault (registry.h);
// a lease that is not live is the lease_id field's fault.
TEST_F(RegistryTest, IssueWithDeadLeaseNamesLeaseIdField) {
  const std::string revoked = Grant();
  ASSERT_TRUE(registry_->RevokeLease(revoked).ok());
  EXPECT_THAT(IssueStatus(Spec(Kind::kConnection, Alice(), "", "", revoked)),
              IsFieldError(absl::StatusCode::kFailedPrecondition, "lease_id"));
}

TEST_F(RegistryTest, FailedIssueChangesNothing) {
  RegistryOptions options;
  options.owner_quota = 10;
  options.max_batch = 20;
  Reset(options);
  const std::string lease = Grant();
  const std::string conn = Issue1(Kind::kConnection, Alice(), "", "", lease);
  const OpenContextResult ctx = Open(Alice(), "", conn);
  const std::string released_thread = Issue1(Kind::kThread, Alice());
  CleanupIds(Alice(), {released_thread});
  const std::string dead_lease = Grant();
  ASSERT_TRUE(registry_->RevokeLease(dead_lease).ok());
  // Alice holds 4 live records and 1 tombstone.
  const std::vector<uint64_t> stats = StatsNow();
  const std::vector<std::string> listed = ListAll(Alice(), Kind::kUnspecified,
                                                  /*include_ended=*/true);
  const uint64_t issued = observer_->issued_total();

  std::vector<IssueSpec> bad;
  bad.push_back(Spec(Kind::kUnspecified, Alice()));
  bad.push_back(Spec(Kind::kRun, Alice(), released_thread));
  bad.push_back(Spec(Kind::kRun, Alice(), ctx.run_id));
  bad.push_back(Spec(Kind::kRequest, Alice(), ctx.run_id, ctx.thread_id));
  bad.push_back(Spec(Kind::kThread, Alice(), ctx.thread_id));
  bad.push_back(Spec(Kind::kConnection, Alice(), "", "", dead_lease));
  bad.push_back(Spec(Kind::kThread, Alice(), "", "", lease));
  IssueSpec too_many = Spec(Kind::kRun, Alice(), ctx.thread_id, conn);
  too_many.count = 7;  // 4 + 7 > 10
  bad.push_back(too_many);
  IssueSpec too_big = Spec(Kind::kConnection, Alice(), "", "", lease);
  too_big.count = 21;
  bad.push_back(too_big);
  for (const IssueSpec& spec : bad) {
    EXPECT_FALSE(IssueStatus(spec).ok());
  }

  EXPECT_EQ(StatsNow(), stats);
  EXPECT_EQ(ListAll(Alice(), Kind::kUnspecified, true), listed);
  EXPECT_EQ(observer_->issued_total(), issued);
  // Quota unaffected: exactly 6 more fit.
  IssueSpec six = Spec(Kind::kRun, Alice(), ctx.thread_id);
  six.count = 6;
  EXPECT_TRUE(IssueStatus(six).ok());
  EXPECT_THAT(IssueStatus(Spec(Kind::kThread, Alice())),
              IsFieldError(absl::StatusCode::kResourceExhausted, "owner"));
  // And the lease carries only the one connection.
  absl::StatusOr<std::vector<std::string>> revoked =
      registry_->RevokeLease(lease);
  ASSERT_TRUE(revoked.ok());
  EXPECT_THAT(*revoked, Contains(conn));
  for (const std::string& id : *revoked) {
    if (id.starts_with("conn_")) {
      EXPECT_EQ(id, conn);
    }
  }
}

// ---------------------------------------------------------------------------
// Quota

class RegistryQuotaTest : public RegistryTest {
 protected:
  RegistryQuotaTest() {
    RegistryOptions options;
    options.owner_quota = 5;
    Reset(options);
  }
};

TEST_F(RegistryQuotaTest, ReachingQuotaIsResourceExhaustedNamingOwner) {
  const std::vector<std::string> three = IssueN(Kind::kThread, Alice(), 3);
  IssueSpec spec = Spec(Kind::kConnection, Alice());
  spec.count = 3;  // 3 + 3 > 5: nothing of the batch is recorded
  EXPECT_THAT(IssueStatus(spec),
              IsFieldError(absl::StatusCode::kResourceExhausted, "owner"));
  EXPECT_THAT(ListAll(Alice()), UnorderedElementsAreArray(three));
  spec.count = 2;  // exactly the quota
  EXPECT_TRUE(IssueStatus(spec).ok());
  EXPECT_THAT(IssueStatus(Spec(Kind::kThread, Alice())),
              IsFieldError(absl::StatusCode::kResourceExhausted, "owner"));
  EXPECT_THAT(IssueStatus(Spec(Kind::kRun, Alice(), three[0])),
              IsFieldError(absl::StatusCode::kResourceExhausted, "owner"));
  EXPECT_THAT(ListAll(Alice()), SizeIs(5));
}

TEST_F(RegistryQuotaTest, ReleasingFreesQuota) {
  const std::vector<std::string> five = IssueN(Kind::kThread, Alice(), 5);
  ASSERT_FALSE(IssueStatus(Spec(Kind::kThread, Alice())).ok());
  CleanupIds(Alice(), {five[0], five[1]});
  // Tombstones do not count.
  EXPECT_TRUE(IssueStatus(Spec(Kind::kThread, Alice())).ok());
  EXPECT_TRUE(IssueStatus(Spec(Kind::kThread, Alice())).ok());
  EXPECT_FALSE(IssueStatus(Spec(Kind::kThread, Alice())).ok());
  CleanupAll(Alice());
  EXPECT_THAT(IssueN(Kind::kRequest, Alice(), 5), SizeIs(5));
}

TEST_F(RegistryQuotaTest, QuotaIsPerOwner) {
  for (uint32_t shards : kShardCounts) {
    SCOPED_TRACE(shards);
    RegistryOptions options;
    options.owner_quota = 5;
    options.shards = shards;
    Reset(options);
    IssueN(Kind::kThread, Alice(), 5);
    ASSERT_FALSE(IssueStatus(Spec(Kind::kThread, Alice())).ok());
    EXPECT_THAT(IssueN(Kind::kThread, Bob(), 5), SizeIs(5));
    EXPECT_THAT(IssueN(Kind::kThread, AliceElsewhere(), 5), SizeIs(5));
    EXPECT_THAT(IssueN(Kind::kThread, Owner{"acme", "alice_"}, 5), SizeIs(5));
  }
}

TEST_F(RegistryQuotaTest, OpenContextCountsThreeOrTwoWhenReusing) {
  const OpenContextResult first = Open(Alice());  // 3 live
  EXPECT_THAT(OpenStatus(Alice(), "", ""),
              IsFieldError(absl::StatusCode::kResourceExhausted, "owner"));
  // A usable-looking but foreign thread is not reused, so this needs 3 too.
  const std::string bobs = Issue1(Kind::kThread, Bob());
  EXPECT_THAT(OpenStatus(Alice(), bobs, ""),
              IsFieldError(absl::StatusCode::kResourceExhausted, "owner"));
  EXPECT_THAT(ListAll(Alice()), SizeIs(3));
  const OpenContextResult second = Open(Alice(), first.thread_id);  // 5 live
  EXPECT_TRUE(second.thread_reused);
  EXPECT_THAT(OpenStatus(Alice(), first.thread_id, ""),
              IsFieldError(absl::StatusCode::kResourceExhausted, "owner"));
  EXPECT_THAT(ListAll(Alice()), SizeIs(5));
}

// ---------------------------------------------------------------------------
// OpenContext

TEST_F(RegistryTest, OpenContextMintsThreadRunAndRequest) {
  OpenContextSpec spec;
  spec.owner = Alice();
  spec.labels = {{"client", "web"}, {"model", "x"}};
  absl::StatusOr<OpenContextResult> ctx = registry_->OpenContext(spec);
  ASSERT_TRUE(ctx.ok()) << ctx.status();
  EXPECT_FALSE(ctx->thread_reused);
  EXPECT_EQ(Check(ctx->thread_id, Alice(), Kind::kThread), Verdict::kValid);
  EXPECT_EQ(Check(ctx->run_id, Alice(), Kind::kRun), Verdict::kValid);
  EXPECT_EQ(Check(ctx->request_id, Alice(), Kind::kRequest), Verdict::kValid);
  const RecordView thread = DescribeOk(ctx->thread_id);
  const RecordView run = DescribeOk(ctx->run_id);
  const RecordView request = DescribeOk(ctx->request_id);
  EXPECT_TRUE(thread.parent.is_zero());
  EXPECT_EQ(ParentIdText(run), ctx->thread_id);
  EXPECT_EQ(ParentIdText(request), ctx->run_id);
  for (const RecordView* r : {&thread, &run, &request}) {
    EXPECT_EQ(r->owner, Alice());
    EXPECT_TRUE(r->connection.is_zero());
    EXPECT_EQ(*r->labels, spec.labels);
  }
  EXPECT_EQ(observer_->issued(Kind::kThread), 1u);
  EXPECT_EQ(observer_->issued(Kind::kRun), 1u);
  EXPECT_EQ(observer_->issued(Kind::kRequest), 1u);
}

TEST_F(RegistryTest, OpenContextReusesLiveThreadOfOwner) {
  const OpenContextResult first = Open(Alice());
  const OpenContextResult second = Open(Alice(), first.thread_id);
  EXPECT_TRUE(second.thread_reused);
  EXPECT_EQ(second.thread_id, first.thread_id);
  EXPECT_NE(second.run_id, first.run_id);
  EXPECT_EQ(ParentIdText(DescribeOk(second.run_id)), first.thread_id);
  EXPECT_EQ(ParentIdText(DescribeOk(second.request_id)), second.run_id);
  EXPECT_THAT(ListAll(Alice(), Kind::kThread),
              UnorderedElementsAre(first.thread_id));
  EXPECT_EQ(observer_->issued(Kind::kThread), 1u);
  // A thread issued on its own is reusable too.
  const std::string thread = Issue1(Kind::kThread, Alice());
  EXPECT_TRUE(Open(Alice(), thread).thread_reused);
}

TEST_F(RegistryTest, OpenContextMintsNewThreadWhenGivenOneIsUnusable) {
  for (uint32_t shards : kShardCounts) {
    SCOPED_TRACE(shards);
    ResetWithShards(shards);
    const OpenContextResult bobs = Open(Bob());
    const OpenContextResult other_tenant = Open(AliceElsewhere());
    const OpenContextResult mine = Open(Alice());
    const std::string released = Issue1(Kind::kThread, Alice());
    CleanupIds(Alice(), {released});
    for (const std::string& thread :
         {bobs.thread_id, other_tenant.thread_id, released, mine.run_id,
          mine.request_id, Relabel(mine.run_id, Kind::kThread),
          MintedNotRecorded(Kind::kThread, Alice()), ForgedId(Kind::kThread),
          std::string("user_a_thread_1"), std::string("thread_"),
          std::string(4096, 'x')}) {
      SCOPED_TRACE(thread.substr(0, 40));
      const OpenContextResult ctx = Open(Alice(), thread);
      EXPECT_FALSE(ctx.thread_reused);
      EXPECT_NE(ctx.thread_id, thread);
      EXPECT_EQ(Check(ctx.thread_id, Alice(), Kind::kThread), Verdict::kValid);
      EXPECT_EQ(ParentIdText(DescribeOk(ctx.run_id)), ctx.thread_id);
    }
    // The other owners' records were neither touched nor added to.
    EXPECT_THAT(
        ListAll(Bob()),
        UnorderedElementsAre(bobs.thread_id, bobs.run_id, bobs.request_id));
    EXPECT_THAT(ListAll(AliceElsewhere()), SizeIs(3));
    EXPECT_EQ(Check(bobs.thread_id, Bob()), Verdict::kValid);
  }
}

TEST_F(RegistryTest, OpenContextRecordsConnectionOnAllThree) {
  const std::string conn = Issue1(Kind::kConnection, Alice());
  const OpenContextResult ctx = Open(Alice(), "", conn);
  for (const std::string& id : {ctx.thread_id, ctx.run_id, ctx.request_id}) {
    EXPECT_EQ(DescribeOk(id).connection, BitsOf(conn)) << id;
  }
  // Releasing the connection ends the run and request, not the thread.
  const CleanupResult r = CleanupConnection(Alice(), conn);
  EXPECT_THAT(r.released,
              UnorderedElementsAre(conn, ctx.run_id, ctx.request_id));
  EXPECT_EQ(Check(ctx.thread_id, Alice()), Verdict::kValid);
}

TEST_F(RegistryTest, OpenContextWithUnusableConnectionIsRefused) {
  for (uint32_t shards : kShardCounts) {
    SCOPED_TRACE(shards);
    ResetWithShards(shards);
    const std::string bobs = Issue1(Kind::kConnection, Bob());
    const std::string released = Issue1(Kind::kConnection, Alice());
    CleanupIds(Alice(), {released});
    const OpenContextResult ctx = Open(Alice());
    const std::vector<uint64_t> before = StatsNow();
    for (const std::string& conn :
         {bobs, released, MintedNotRecorded(Kind::kConnection, Alice())}) {
      SCOPED_TRACE(conn);
      EXPECT_THAT(
          OpenStatus(Alice(), "", conn),
          IsFieldError(absl::StatusCode::kFailedPrecondition, "connection_id"));
      EXPECT_THAT(
          OpenStatus(Alice(), ctx.thread_id, conn),
          IsFieldError(absl::StatusCode::kFailedPrecondition, "connection_id"));
    }
    for (const std::string& conn : {ctx.thread_id, std::string("conn_bad")}) {
      SCOPED_TRACE(conn);
      EXPECT_THAT(
          OpenStatus(Alice(), "", conn),
          IsFieldError(absl::StatusCode::kInvalidArgument, "connection_id"));
    }
    EXPECT_EQ(StatsNow(), before);
  }
}

// ---------------------------------------------------------------------------
// Validate

TEST_F(RegistryTest, ValidateMalformedComesFirst) {
  const std::string thread = Issue1(Kind::kThread, Alice());
  const std::string lease = Grant();
  std::string upper = thread;
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  Id128 bits = BitsOf(thread);
  Id128 wrong_version = bits;
  wrong_version.hi = (wrong_version.hi & ~uint64_t{0xF000}) | 0x4000;
  Id128 wrong_variant = bits;
  wrong_variant.lo &= ~(uint64_t{3} << 62);
  const std::vector<std::string> inputs = {
      "garbage",
      lease,
      "user_a_ws_1_xyz",
      "user_b_thread_2_abc",
      "thread_",
      "ws_conn_test_use_1757601055956_1_ceecb3c0",
      "",
      std::string(10 * 1024, 'a'),
      "thread_" + std::string(10 * 1024, '0'),
      "thread_" + std::string(26, '\xff'),
      "\xc3\x28\xa0\xa1",
      upper,
      "Thread_" + Suffix(thread),
      "thread-" + Suffix(thread),
      "thread__" + Suffix(thread),
      " " + thread,
      thread + "\n",
      thread.substr(0, thread.size() - 1),
      thread + "0",
      "thread_8" + Suffix(thread).substr(1),           // first char above '7'
      "thread_" + Suffix(thread).substr(0, 25) + "u",  // not in alphabet
      std::string(thread).replace(10, 1, std::string(1, '\0')),
      FormatId(Kind::kThread, wrong_version),
      FormatId(Kind::kThread, wrong_variant),
      FormatUuid(bits),
      Suffix(thread),
  };
  for (const std::string& id : inputs) {
    SCOPED_TRACE(id.substr(0, 60));
    // Before WRONG_KIND too.
    for (Kind expected : {Kind::kUnspecified, Kind::kThread, Kind::kRun}) {
      const ValidateResult r = registry_->Validate(id, expected, Alice(), true);
      EXPECT_EQ(r.verdict, Verdict::kMalformed);
      EXPECT_FALSE(r.record.has_value());
    }
  }
}

TEST_F(RegistryTest, ValidateWrongKindBeatsEverythingAfterMalformed) {
  for (uint32_t shards : kShardCounts) {
    SCOPED_TRACE(shards);
    ResetWithShards(shards);
    const std::string thread = Issue1(Kind::kThread, Alice());
    const std::string bobs = Issue1(Kind::kThread, Bob());
    const std::string released = Issue1(Kind::kThread, Alice());
    CleanupIds(Alice(), {released});
    for (const std::string& id :
         {thread, bobs, released, ForgedId(Kind::kThread),
          MintedNotRecorded(Kind::kThread, Alice())}) {
      SCOPED_TRACE(id);
      for (Kind expected : {Kind::kRun, Kind::kRequest, Kind::kConnection}) {
        const ValidateResult r =
            registry_->Validate(id, expected, Alice(), true);
        EXPECT_EQ(r.verdict, Verdict::kWrongKind);
        EXPECT_FALSE(r.record.has_value());
      }
    }
    // A relabeled ID is judged by its prefix first.
    EXPECT_EQ(Check(Relabel(thread, Kind::kRun), Alice(), Kind::kThread),
              Verdict::kWrongKind);
  }
}

TEST_F(RegistryTest, ValidateValidForEveryKind) {
  const std::string conn = Issue1(Kind::kConnection, Alice());
  const OpenContextResult ctx = Open(Alice(), "", conn);
  for (const auto& [id, kind] : std::vector<std::pair<std::string, Kind>>{
           {conn, Kind::kConnection},
           {ctx.thread_id, Kind::kThread},
           {ctx.run_id, Kind::kRun},
           {ctx.request_id, Kind::kRequest}}) {
    SCOPED_TRACE(id);
    EXPECT_EQ(Check(id, Alice()), Verdict::kValid);
    EXPECT_EQ(Check(id, Alice(), kind), Verdict::kValid);
  }
}

TEST_F(RegistryTest, ValidateNotOwnerForOtherOwners) {
  for (uint32_t shards : kShardCounts) {
    SCOPED_TRACE(shards);
    ResetWithShards(shards);
    const OpenContextResult ctx = Open(Alice());
    const std::string released = Issue1(Kind::kThread, Alice());
    CleanupIds(Alice(), {released});
    for (const Owner& other :
         {Bob(), AliceElsewhere(), Owner{"acme", "alice_b"},
          Owner{"acme", "alic"}, Owner{"acmealice", ""},
          Owner{"acme", "ALICE"}}) {
      SCOPED_TRACE(testing::PrintToString(other));
      for (const std::string& id :
           {ctx.thread_id, ctx.run_id, ctx.request_id, released}) {
        const ValidateResult r =
            registry_->Validate(id, Kind::kUnspecified, other, true);
        EXPECT_EQ(r.verdict, Verdict::kNotOwner) << id;
        EXPECT_FALSE(r.record.has_value()) << id;
      }
    }
  }
}

TEST_F(RegistryTest, ValidateForgedIds) {
  for (uint32_t shards : kShardCounts) {
    SCOPED_TRACE(shards);
    ResetWithShards(shards);
    const OpenContextResult ctx = Open(Alice());
    const std::string conn = Issue1(Kind::kConnection, Alice());
    const OpenContextResult bobs = Open(Bob());
    const std::vector<std::string> forged = {
        // Relabeled prefixes of real records.
        Relabel(ctx.thread_id, Kind::kRun),
        Relabel(ctx.thread_id, Kind::kRequest),
        Relabel(ctx.thread_id, Kind::kConnection),
        Relabel(ctx.run_id, Kind::kThread),
        Relabel(conn, Kind::kThread),
        Relabel(bobs.thread_id, Kind::kRun),
        // Real IDs with a flipped tag bit: no record, tag does not verify.
        FlipTagBit(ctx.thread_id),
        FlipTagBit(conn),
        FlipTagBit(bobs.run_id),
        // Well-formed, never minted.
        ForgedId(Kind::kThread),
        ForgedId(Kind::kRequest, 1),
        // Genuine, but minted for someone else and never recorded.
        MintedNotRecorded(Kind::kThread, Bob()),
    };
    for (const std::string& id : forged) {
      SCOPED_TRACE(id);
      const ValidateResult r =
          registry_->Validate(id, Kind::kUnspecified, Alice(), true);
      EXPECT_EQ(r.verdict, Verdict::kForged);
      EXPECT_FALSE(r.record.has_value());
      absl::StatusOr<ParsedId> parsed = ParseId(id);
      ASSERT_TRUE(parsed.ok());
      EXPECT_EQ(Check(id, Alice(), parsed->kind), Verdict::kForged);
    }
    // The originals are intact.
    EXPECT_EQ(Check(ctx.thread_id, Alice()), Verdict::kValid);
    EXPECT_EQ(Check(conn, Alice()), Verdict::kValid);
  }
}

TEST_F(RegistryTest, ValidateReleasedAndExpired) {
  const std::string lease = Grant(absl::Seconds(10));
  const std::string conn = Issue1(Kind::kConnection, Alice(), "", "", lease);
  const std::string thread = Issue1(Kind::kThread, Alice());
  CleanupIds(Alice(), {thread});
  EXPECT_EQ(Check(thread, Alice()), Verdict::kReleased);
  EXPECT_EQ(Check(thread, Alice(), Kind::kThread), Verdict::kReleased);
  EXPECT_EQ(Check(conn, Alice()), Verdict::kValid);
  clock_.Advance(absl::Seconds(10));
  EXPECT_THAT(registry_->Tick(), UnorderedElementsAre(conn));
  EXPECT_EQ(Check(conn, Alice()), Verdict::kExpired);
  EXPECT_EQ(Check(conn, Alice(), Kind::kConnection), Verdict::kExpired);
  // Another owner still gets NOT_OWNER for ended records.
  EXPECT_EQ(Check(conn, Bob()), Verdict::kNotOwner);
}

TEST_F(RegistryTest, ValidateUnknownForGenuineIdWithoutRecord) {
  RegistryOptions options;
  options.tombstone_retention = absl::Minutes(5);
  Reset(options);
  const std::string thread = Issue1(Kind::kThread, Alice());
  const std::string run = Issue1(Kind::kRun, Alice(), thread);
  CleanupIds(Alice(), {thread});
  clock_.Advance(absl::Minutes(5) + absl::Milliseconds(1));
  registry_->Tick();
  EXPECT_EQ(Check(thread, Alice()), Verdict::kUnknown);
  EXPECT_EQ(Check(run, Alice(), Kind::kRun), Verdict::kUnknown);
  // Not genuine for anyone else, nor under another prefix.
  EXPECT_EQ(Check(thread, Bob()), Verdict::kForged);
  EXPECT_EQ(Check(thread, AliceElsewhere()), Verdict::kForged);
  EXPECT_EQ(Check(Relabel(thread, Kind::kRun), Alice()), Verdict::kForged);
  EXPECT_EQ(Check(FlipTagBit(thread), Alice()), Verdict::kForged);

  // Minted by the generator but never recorded.
  for (Kind kind : kRecordKinds) {
    const std::string id = MintedNotRecorded(kind, Alice());
    EXPECT_EQ(Check(id, Alice()), Verdict::kUnknown) << id;
    EXPECT_EQ(Check(id, Alice(), kind), Verdict::kUnknown) << id;
    EXPECT_EQ(Check(id, Bob()), Verdict::kForged) << id;
    const ValidateResult r =
        registry_->Validate(id, Kind::kUnspecified, Alice(), true);
    EXPECT_FALSE(r.record.has_value());
  }
}

TEST_F(RegistryTest, ValidateReturnsRecordOnlyToOwnerWhenAsked) {
  for (uint32_t shards : kShardCounts) {
    SCOPED_TRACE(shards);
    ResetWithShards(shards);
    const std::string thread = Issue1(Kind::kThread, Alice());
    const std::string run = Issue1(Kind::kRun, Alice(), thread);
    ValidateResult r = registry_->Validate(run, Kind::kRun, Alice(), true);
    EXPECT_EQ(r.verdict, Verdict::kValid);
    ASSERT_TRUE(r.record.has_value());
    EXPECT_EQ(TextOf(*r.record), run);
    EXPECT_EQ(r.record->owner, Alice());
    EXPECT_EQ(ParentIdText(*r.record), thread);
    EXPECT_EQ(r.record->state, State::kLive);

    EXPECT_FALSE(registry_->Validate(run, Kind::kRun, Alice(), false)
                     .record.has_value());
    for (const Owner& other : {Bob(), AliceElsewhere()}) {
      r = registry_->Validate(run, Kind::kRun, other, true);
      EXPECT_EQ(r.verdict, Verdict::kNotOwner);
      EXPECT_FALSE(r.record.has_value());
    }
    // Ended records of the owner come with their record.
    CleanupIds(Alice(), {thread}, "done");
    r = registry_->Validate(run, Kind::kRun, Alice(), true);
    EXPECT_EQ(r.verdict, Verdict::kReleased);
    ASSERT_TRUE(r.record.has_value());
    EXPECT_EQ(r.record->state, State::kReleased);
    EXPECT_EQ(r.record->end_reason, "done");
  }
}

// ---------------------------------------------------------------------------
// Cleanup

TEST_F(RegistryTest, CleanupByIdsReleasesWithCascades) {
  const std::string thread = Issue1(Kind::kThread, Alice());
  const std::string run1 = Issue1(Kind::kRun, Alice(), thread);
  const std::string run2 = Issue1(Kind::kRun, Alice(), thread);
  const std::string req1 = Issue1(Kind::kRequest, Alice(), run1);
  const std::string req2 = Issue1(Kind::kRequest, Alice(), run2);
  const OpenContextResult other = Open(Alice());
  const std::string loose_run = Issue1(Kind::kRun, Alice());
  const std::string loose_req = Issue1(Kind::kRequest, Alice(), loose_run);

  CleanupResult r = CleanupIds(Alice(), {thread});
  EXPECT_THAT(r.released, UnorderedElementsAre(thread, run1, run2, req1, req2));
  EXPECT_THAT(r.already_ended, IsEmpty());
  EXPECT_THAT(r.refused, IsEmpty());
  EXPECT_THAT(r.unknown, IsEmpty());
  for (const std::string& id : {thread, run1, run2, req1, req2}) {
    EXPECT_EQ(Check(id, Alice()), Verdict::kReleased) << id;
  }
  for (const std::string& id : {other.thread_id, other.run_id, other.request_id,
                                loose_run, loose_req}) {
    EXPECT_EQ(Check(id, Alice()), Verdict::kValid) << id;
  }
  // A run releases its requests, not its thread.
  r = CleanupIds(Alice(), {other.run_id});
  EXPECT_THAT(r.released, UnorderedElementsAre(other.run_id, other.request_id));
  EXPECT_EQ(Check(other.thread_id, Alice()), Verdict::kValid);
  // A request releases only itself.
  r = CleanupIds(Alice(), {loose_req});
  EXPECT_THAT(r.released, UnorderedElementsAre(loose_req));
  EXPECT_EQ(Check(loose_run, Alice()), Verdict::kValid);
}

TEST_F(RegistryTest, CleanupByIdsIsIdempotent) {
  const OpenContextResult ctx = Open(Alice());
  CleanupIds(Alice(), {ctx.thread_id});
  const std::vector<uint64_t> stats = StatsNow();
  const CleanupResult r =
      CleanupIds(Alice(), {ctx.thread_id, ctx.run_id, ctx.request_id});
  EXPECT_THAT(r.released, IsEmpty());
  EXPECT_THAT(r.already_ended,
              UnorderedElementsAre(ctx.thread_id, ctx.run_id, ctx.request_id));
  EXPECT_THAT(r.refused, IsEmpty());
  EXPECT_THAT(r.unknown, IsEmpty());
  EXPECT_EQ(StatsNow(), stats);
}

TEST_F(RegistryTest, CleanupByIdsRefusesOtherOwnersRecords) {
  for (uint32_t shards : kShardCounts) {
    SCOPED_TRACE(shards);
    ResetWithShards(shards);
    const OpenContextResult bobs = Open(Bob());
    const OpenContextResult elsewhere = Open(AliceElsewhere());
    const std::string mine = Issue1(Kind::kThread, Alice());
    const std::vector<uint64_t> stats = StatsNow();
    const CleanupResult r = CleanupIds(
        Alice(), {bobs.thread_id, bobs.request_id, elsewhere.thread_id});
    EXPECT_THAT(r.released, IsEmpty());
    EXPECT_THAT(r.refused, UnorderedElementsAre(bobs.thread_id, bobs.request_id,
                                                elsewhere.thread_id));
    EXPECT_THAT(r.unknown, IsEmpty());
    EXPECT_EQ(StatsNow(), stats);
    for (const std::string& id :
         {bobs.thread_id, bobs.run_id, bobs.request_id}) {
      EXPECT_EQ(Check(id, Bob()), Verdict::kValid) << id;
    }
    EXPECT_EQ(Check(elsewhere.thread_id, AliceElsewhere()), Verdict::kValid);
    EXPECT_EQ(Check(mine, Alice()), Verdict::kValid);
    // Even mixed into a call that does release something of the caller's.
    const CleanupResult mixed = CleanupIds(Alice(), {mine, bobs.run_id});
    EXPECT_THAT(mixed.released, UnorderedElementsAre(mine));
    EXPECT_THAT(mixed.refused, UnorderedElementsAre(bobs.run_id));
    EXPECT_EQ(Check(bobs.run_id, Bob()), Verdict::kValid);
    // Another owner's ended records are refused too, never "already ended".
    const std::string bobs_released = Issue1(Kind::kThread, Bob());
    CleanupIds(Bob(), {bobs_released});
    const CleanupResult ended = CleanupIds(Alice(), {bobs_released});
    EXPECT_THAT(ended.refused, UnorderedElementsAre(bobs_released));
    EXPECT_THAT(ended.already_ended, IsEmpty());
  }
}

TEST_F(RegistryTest, CleanupByIdsReportsUnparseableAndNeverIssuedAsUnknown) {
  const std::string thread = Issue1(Kind::kThread, Alice());
  const std::string lease = Grant();
  const std::vector<std::string> unknown = {
      "garbage",
      "",
      "user_a_ws_1_xyz",
      std::string(10 * 1024, 'z'),
      lease,
      MintedNotRecorded(Kind::kThread, Alice()),
      ForgedId(Kind::kConnection),
      Relabel(thread, Kind::kRun),
      FlipTagBit(thread),
  };
  const std::vector<uint64_t> stats = StatsNow();
  const CleanupResult r = CleanupIds(Alice(), unknown);
  EXPECT_THAT(r.unknown, UnorderedElementsAreArray(unknown));
  EXPECT_THAT(r.released, IsEmpty());
  EXPECT_THAT(r.refused, IsEmpty());
  EXPECT_THAT(r.already_ended, IsEmpty());
  EXPECT_EQ(StatsNow(), stats);
  EXPECT_EQ(Check(thread, Alice()), Verdict::kValid);
  EXPECT_TRUE(registry_->KeepAlive(lease).ok());
}

TEST_F(RegistryTest, CleanupByIdsReportsDuplicatesOnce) {
  const OpenContextResult ctx = Open(Alice());
  // The run is named after its thread already ended it (a cascade), and the
  // thread twice.
  const CleanupResult r = CleanupIds(
      Alice(), {ctx.thread_id, ctx.thread_id, ctx.run_id, ctx.thread_id});
  EXPECT_THAT(r.released,
              UnorderedElementsAre(ctx.thread_id, ctx.run_id, ctx.request_id));
  EXPECT_THAT(r.already_ended, IsEmpty());
  EXPECT_EQ(registry_->Stats().tombstones, 3u);
  EXPECT_EQ(observer_->ended(Kind::kThread, EndCause::kCleanupIds), 1u);
  EXPECT_EQ(observer_->ended(Kind::kRun, EndCause::kCleanupIds), 1u);
}

// Each named ID is answered once, whatever list it lands in.
TEST_F(RegistryTest, CleanupByIdsReportsRepeatedEndedRefusedUnknownOnce) {
  const std::string released = Issue1(Kind::kThread, Alice());
  CleanupIds(Alice(), {released});
  const std::string bobs = Issue1(Kind::kThread, Bob());
  const CleanupResult r = CleanupIds(
      Alice(), {released, released, bobs, bobs, "garbage", "garbage"});
  EXPECT_THAT(r.released, IsEmpty());
  EXPECT_THAT(r.already_ended, ElementsAreArray({released}));
  EXPECT_THAT(r.refused, ElementsAreArray({bobs}));
  EXPECT_THAT(r.unknown, ElementsAreArray({std::string("garbage")}));
}

TEST_F(RegistryTest, CleanupByConnectionReleasesWhatWasOpenedThroughIt) {
  const std::string conn_a = Issue1(Kind::kConnection, Alice());
  const std::string conn_b = Issue1(Kind::kConnection, Alice());
  const std::string thread_a = Issue1(Kind::kThread, Alice(), "", conn_a);
  const std::string run_a = Issue1(Kind::kRun, Alice(), thread_a, conn_a);
  const std::string req_a = Issue1(Kind::kRequest, Alice(), run_a, conn_a);
  // Opened under run_a without naming a connection: goes with its run.
  const std::string req_plain = Issue1(Kind::kRequest, Alice(), run_a);
  // Opened through B, under a thread of A: stays.
  const std::string run_b = Issue1(Kind::kRun, Alice(), thread_a, conn_b);
  const std::string req_b = Issue1(Kind::kRequest, Alice(), run_b, conn_b);
  // Opened through A under a run of B: goes (it was opened through A).
  const std::string req_a_under_b =
      Issue1(Kind::kRequest, Alice(), run_b, conn_a);
  const OpenContextResult ctx_a = Open(Alice(), thread_a, conn_a);
  const OpenContextResult ctx_none = Open(Alice());

  const CleanupResult r = CleanupConnection(Alice(), conn_a);
  EXPECT_THAT(r.released, UnorderedElementsAre(conn_a, run_a, req_a, req_plain,
                                               req_a_under_b, ctx_a.run_id,
                                               ctx_a.request_id));
  EXPECT_THAT(r.already_ended, IsEmpty());
  EXPECT_THAT(r.refused, IsEmpty());
  EXPECT_THAT(r.unknown, IsEmpty());
  for (const std::string& id :
       {thread_a, conn_b, run_b, req_b, ctx_none.thread_id, ctx_none.run_id,
        ctx_none.request_id}) {
    EXPECT_EQ(Check(id, Alice()), Verdict::kValid) << id;
  }
  for (const std::string& id : r.released) {
    EXPECT_EQ(Check(id, Alice()), Verdict::kReleased) << id;
  }
  // Again: the connection already ended, nothing else happens.
  const CleanupResult again = CleanupConnection(Alice(), conn_a);
  EXPECT_THAT(again.released, IsEmpty());
  EXPECT_THAT(again.already_ended, UnorderedElementsAre(conn_a));
  // A thread outlives its connection and still cascades on its own.
  const CleanupResult thread = CleanupIds(Alice(), {thread_a});
  EXPECT_THAT(thread.released, UnorderedElementsAre(thread_a, run_b, req_b));
}

TEST_F(RegistryTest, CleanupByConnectionOfAnotherOwnerIsRefused) {
  for (uint32_t shards : kShardCounts) {
    SCOPED_TRACE(shards);
    ResetWithShards(shards);
    const std::string bobs = Issue1(Kind::kConnection, Bob());
    const OpenContextResult ctx = Open(Bob(), "", bobs);
    const CleanupResult r = CleanupConnection(Alice(), bobs);
    EXPECT_THAT(r.refused, UnorderedElementsAre(bobs));
    EXPECT_THAT(r.released, IsEmpty());
    for (const std::string& id :
         {bobs, ctx.thread_id, ctx.run_id, ctx.request_id}) {
      EXPECT_EQ(Check(id, Bob()), Verdict::kValid) << id;
    }
    const std::string never = MintedNotRecorded(Kind::kConnection, Alice());
    EXPECT_THAT(CleanupConnection(Alice(), never).unknown,
                UnorderedElementsAre(never));
  }
}

TEST_F(RegistryTest, CleanupNeverTouchesLookalikeOwners) {
  const std::vector<std::pair<Owner, Owner>> pairs = {
      {{"t", "a"}, {"t", "a_b"}},
      {{"t", "x"}, {"tx", ""}},
      {{"t", "ab"}, {"ta", "b"}},
      {{"acme", "user_a"}, {"acme", "user_a_ws_1"}},
      {{"acme", "user_a"}, {"acme", "user_b"}},
      {{"a", "b/c"}, {"a/b", "c"}},
      {{"t", "u"}, {"t", "u "}},
  };
  for (uint32_t shards : kShardCounts) {
    for (const auto& [a, b] : pairs) {
      SCOPED_TRACE(testing::PrintToString(a) + " vs " +
                   testing::PrintToString(b) + " shards " +
                   std::to_string(shards));
      ResetWithShards(shards);
      const std::string conn_a = Issue1(Kind::kConnection, a);
      const OpenContextResult ctx_a = Open(a, "", conn_a);
      const std::string conn_b = Issue1(Kind::kConnection, b);
      const OpenContextResult ctx_b = Open(b, "", conn_b);
      const std::vector<std::string> all_b =
          ListAll(b, Kind::kUnspecified, true);
      ASSERT_THAT(all_b, SizeIs(4));

      EXPECT_THAT(CleanupConnection(a, conn_b).refused,
                  UnorderedElementsAre(conn_b));
      EXPECT_THAT(CleanupIds(a, all_b).refused,
                  UnorderedElementsAreArray(all_b));
      EXPECT_THAT(CleanupConnection(a, conn_a).released,
                  UnorderedElementsAre(conn_a, ctx_a.run_id, ctx_a.request_id));
      EXPECT_THAT(CleanupAll(a).released,
                  UnorderedElementsAre(ctx_a.thread_id));
      for (const std::string& id : all_b) {
        EXPECT_EQ(Check(id, b), Verdict::kValid) << id;
        EXPECT_EQ(Check(id, a), Verdict::kNotOwner) << id;
      }
      EXPECT_EQ(ListAll(b), all_b);
    }
  }
}

TEST_F(RegistryTest, CleanupAllOwnedReleasesOnlyThatOwnersLiveRecords) {
  for (uint32_t shards : kShardCounts) {
    SCOPED_TRACE(shards);
    ResetWithShards(shards);
    const std::string lease = Grant();
    const std::string conn = Issue1(Kind::kConnection, Alice(), "", "", lease);
    const OpenContextResult ctx1 = Open(Alice(), "", conn);
    const OpenContextResult ctx2 = Open(Alice(), ctx1.thread_id);
    const std::vector<std::string> threads = IssueN(Kind::kThread, Alice(), 4);
    CleanupIds(Alice(), {threads[0]});
    const OpenContextResult bobs = Open(Bob());
    const OpenContextResult elsewhere = Open(AliceElsewhere());

    std::vector<std::string> live = ListAll(Alice());
    ASSERT_THAT(live, SizeIs(9));
    const CleanupResult r = CleanupAll(Alice(), "logout");
    EXPECT_THAT(r.released, UnorderedElementsAreArray(live));
    EXPECT_THAT(r.already_ended, IsEmpty());
    EXPECT_THAT(r.refused, IsEmpty());
    EXPECT_THAT(r.unknown, IsEmpty());
    EXPECT_THAT(ListAll(Alice()), IsEmpty());
    for (const std::string& id : live) {
      EXPECT_EQ(DescribeOk(id).end_reason, "logout") << id;
    }
    for (Kind kind : kRecordKinds) {
      const uint64_t n =
          registry_->Stats().live_records[static_cast<int>(kind)];
      EXPECT_EQ(n, kind == Kind::kConnection ? 0u : 2u) << KindName(kind);
    }
    for (const std::string& id :
         {bobs.thread_id, bobs.run_id, bobs.request_id}) {
      EXPECT_EQ(Check(id, Bob()), Verdict::kValid);
    }
    EXPECT_THAT(ListAll(AliceElsewhere()), SizeIs(3));
    // Nothing left: a repeat releases nothing.
    EXPECT_THAT(CleanupAll(Alice()).released, IsEmpty());
    // The released connection is no longer carried by its lease.
    absl::StatusOr<std::vector<std::string>> revoked =
        registry_->RevokeLease(lease);
    ASSERT_TRUE(revoked.ok());
    EXPECT_THAT(*revoked, IsEmpty());
  }
}

TEST_F(RegistryTest, CleanupConnectionIdMustBeAConnectionId) {
  const OpenContextResult ctx = Open(Alice());
  const std::vector<uint64_t> stats = StatsNow();
  for (const std::string& conn :
       {ctx.thread_id, ctx.run_id, std::string("garbage"), std::string(""),
        Grant()}) {
    SCOPED_TRACE(conn);
    EXPECT_THAT(
        TryCleanupConnection(Alice(), conn).status(),
        IsFieldError(absl::StatusCode::kInvalidArgument, "connection_id"));
  }
  EXPECT_EQ(StatsNow()[static_cast<int>(Kind::kThread)],
            stats[static_cast<int>(Kind::kThread)]);
  EXPECT_EQ(Check(ctx.thread_id, Alice()), Verdict::kValid);
  EXPECT_EQ(Check(ctx.run_id, Alice()), Verdict::kValid);
}

TEST_F(RegistryTest, CleanupMoreIdsThanMaxBatchIsResourceExhausted) {
  RegistryOptions options;
  options.max_batch = 10;
  Reset(options);
  const std::vector<std::string> ids = IssueN(Kind::kThread, Alice(), 10);
  std::vector<std::string> eleven = ids;
  eleven.push_back("garbage");
  EXPECT_THAT(TryCleanupIds(Alice(), eleven).status(),
              HasCode(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(ListAll(Alice()), SizeIs(10));
  EXPECT_THAT(CleanupIds(Alice(), ids).released, SizeIs(10));
}

TEST_F(RegistryTest, CleanupEndReasonIsGivenReasonOrCauseName) {
  const std::string conn1 = Issue1(Kind::kConnection, Alice());
  const OpenContextResult c1 = Open(Alice(), "", conn1);
  const std::string conn2 = Issue1(Kind::kConnection, Alice());
  const OpenContextResult c2 = Open(Alice(), "", conn2);
  const std::string t1 = Issue1(Kind::kThread, Alice());
  const std::string r1 = Issue1(Kind::kRun, Alice(), t1);

  CleanupIds(Alice(), {t1});
  EXPECT_EQ(DescribeOk(t1).end_reason, "cleanup_ids");
  EXPECT_EQ(DescribeOk(r1).end_reason, "cleanup_ids");
  CleanupConnection(Alice(), conn1, "socket closed");
  for (const std::string& id : {conn1, c1.run_id, c1.request_id}) {
    EXPECT_EQ(DescribeOk(id).end_reason, "socket closed") << id;
  }
  CleanupConnection(Alice(), conn2);
  for (const std::string& id : {conn2, c2.run_id, c2.request_id}) {
    EXPECT_EQ(DescribeOk(id).end_reason, "cleanup_connection") << id;
  }
  CleanupAll(Alice());
  EXPECT_EQ(DescribeOk(c1.thread_id).end_reason, "cleanup_owner");
  EXPECT_EQ(DescribeOk(c2.thread_id).end_reason, "cleanup_owner");
  // The first reason sticks.
  CleanupIds(Alice(), {t1}, "again");
  EXPECT_EQ(DescribeOk(t1).end_reason, "cleanup_ids");
  // Live records have none.
  EXPECT_EQ(DescribeOk(Issue1(Kind::kThread, Alice())).end_reason, "");
}

TEST_F(RegistryTest, ReleasedConnectionIsDetachedFromItsLease) {
  const std::string lease = Grant(absl::Seconds(10));
  const std::string by_id = Issue1(Kind::kConnection, Alice(), "", "", lease);
  const std::string by_conn = Issue1(Kind::kConnection, Alice(), "", "", lease);
  const std::string kept = Issue1(Kind::kConnection, Alice(), "", "", lease);
  CleanupIds(Alice(), {by_id});
  CleanupConnection(Alice(), by_conn);
  absl::StatusOr<std::vector<std::string>> revoked =
      registry_->RevokeLease(lease);
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_THAT(*revoked, UnorderedElementsAre(kept));
  // The early releases keep their own end.
  EXPECT_EQ(DescribeOk(by_id).end_reason, "cleanup_ids");
  EXPECT_EQ(DescribeOk(kept).end_reason, "lease_revoked");
}

// ---------------------------------------------------------------------------
// Leases

TEST_F(RegistryTest, GrantLeaseChecksTtlBounds) {
  for (absl::Duration ttl :
       {absl::ZeroDuration(), absl::Milliseconds(999), -absl::Seconds(5),
        absl::Hours(24) + absl::Seconds(1), absl::InfiniteDuration()}) {
    SCOPED_TRACE(absl::FormatDuration(ttl));
    EXPECT_THAT(
        registry_->GrantLease("gw", ttl).status(),
        IsFieldError(absl::StatusCode::kInvalidArgument, "ttl_seconds"));
  }
  EXPECT_EQ(registry_->Stats().leases, 0u);
  for (absl::Duration ttl : {absl::Seconds(1), absl::Hours(24)}) {
    absl::StatusOr<LeaseGrant> g = registry_->GrantLease("gw", ttl);
    ASSERT_TRUE(g.ok()) << g.status();
    EXPECT_EQ(g->ttl, ttl);
    absl::StatusOr<ParsedId> parsed = ParseId(g->lease_id);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->kind, Kind::kLease);
    EXPECT_TRUE(g->lease_id.starts_with("lease_"));
  }
  EXPECT_EQ(registry_->Stats().leases, 2u);
  EXPECT_EQ(observer_->granted(), 2u);
}

TEST_F(RegistryTest, GrantLeaseRequiresHolder) {
  EXPECT_THAT(registry_->GrantLease("", absl::Seconds(10)).status(),
              IsFieldError(absl::StatusCode::kInvalidArgument, "holder"));
  EXPECT_EQ(registry_->Stats().leases, 0u);
}

TEST_F(RegistryTest, KeepAliveRenewsTheLease) {
  const absl::Duration ttl = absl::Seconds(10);
  const std::string lease = Grant(ttl);
  const std::string conn = Issue1(Kind::kConnection, Alice(), "", "", lease);
  clock_.Advance(ttl * 0.9);
  absl::StatusOr<absl::Duration> renewed = registry_->KeepAlive(lease);
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_EQ(*renewed, ttl);
  clock_.Advance(ttl * 0.9);  // past the first deadline, not the renewed one
  EXPECT_THAT(registry_->Tick(), IsEmpty());
  EXPECT_EQ(Check(conn, Alice()), Verdict::kValid);
  EXPECT_EQ(registry_->Stats().leases, 1u);
  clock_.Advance(ttl * 0.1);
  EXPECT_THAT(registry_->Tick(), UnorderedElementsAre(conn));
  EXPECT_EQ(Check(conn, Alice()), Verdict::kExpired);
}

TEST_F(RegistryTest, LeaseExpiryEndsItsConnectionsAsExpired) {
  const std::string lease = Grant(absl::Seconds(10));
  const std::string conn1 = Issue1(Kind::kConnection, Alice(), "", "", lease);
  const std::string conn2 = Issue1(Kind::kConnection, Bob(), "", "", lease);
  const std::string unbound = Issue1(Kind::kConnection, Alice());
  const OpenContextResult ctx1 = Open(Alice(), "", conn1);
  const std::string extra_run = Issue1(Kind::kRun, Alice(), ctx1.thread_id);
  const OpenContextResult ctx2 = Open(Bob(), "", conn2);
  const OpenContextResult ctx3 = Open(Alice(), "", unbound);

  clock_.Advance(absl::Seconds(10));
  const absl::Time ended_at = clock_.Now();
  const std::vector<std::string> expired = registry_->Tick();
  EXPECT_THAT(expired,
              UnorderedElementsAre(conn1, ctx1.run_id, ctx1.request_id, conn2,
                                   ctx2.run_id, ctx2.request_id));
  for (const auto& [id, owner] :
       std::vector<std::pair<std::string, Owner>>{{conn1, Alice()},
                                                  {ctx1.run_id, Alice()},
                                                  {ctx1.request_id, Alice()},
                                                  {conn2, Bob()},
                                                  {ctx2.run_id, Bob()},
                                                  {ctx2.request_id, Bob()}}) {
    SCOPED_TRACE(id);
    EXPECT_EQ(Check(id, owner), Verdict::kExpired);
    const RecordView r = DescribeOk(id);
    EXPECT_EQ(r.state, State::kExpired);
    EXPECT_EQ(r.end_reason, "lease_expired");
    EXPECT_EQ(r.ended_at, ended_at);
  }
  // Threads outlive their connection; unrelated records are untouched.
  for (const std::string& id :
       {ctx1.thread_id, extra_run, unbound, ctx3.thread_id, ctx3.run_id}) {
    EXPECT_EQ(Check(id, Alice()), Verdict::kValid) << id;
  }
  EXPECT_EQ(Check(ctx2.thread_id, Bob()), Verdict::kValid);
  EXPECT_EQ(registry_->Stats().leases, 0u);
  EXPECT_THAT(registry_->KeepAlive(lease).status(),
              HasCode(absl::StatusCode::kNotFound));
  EXPECT_THAT(registry_->Tick(), IsEmpty());
  EXPECT_EQ(observer_->ended(Kind::kConnection, EndCause::kLeaseExpired), 2u);
  EXPECT_EQ(observer_->ended(Kind::kRun, EndCause::kLeaseExpired), 2u);
  EXPECT_EQ(observer_->ended(Kind::kRequest, EndCause::kLeaseExpired), 2u);
  EXPECT_EQ(observer_->lease_ended(EndCause::kLeaseExpired), 1u);
}

TEST_F(RegistryTest, KeepAliveAfterExpiryOrRevokeIsNotFound) {
  const std::string expired = Grant(absl::Seconds(5));
  const std::string revoked = Grant(absl::Seconds(60));
  ASSERT_TRUE(registry_->RevokeLease(revoked).ok());
  clock_.Advance(absl::Seconds(5));
  // Due but not yet reaped.
  EXPECT_THAT(registry_->KeepAlive(expired).status(),
              HasCode(absl::StatusCode::kNotFound));
  registry_->Tick();
  EXPECT_THAT(registry_->KeepAlive(expired).status(),
              HasCode(absl::StatusCode::kNotFound));
  EXPECT_THAT(registry_->KeepAlive(revoked).status(),
              HasCode(absl::StatusCode::kNotFound));
  const std::string never =
      FormatId(Kind::kLease, ids_.MintOne(Kind::kLease, "", "gw").value());
  EXPECT_THAT(registry_->KeepAlive(never).status(),
              HasCode(absl::StatusCode::kNotFound));
}

TEST_F(RegistryTest, RevokeLeaseReleasesEverythingBoundToIt) {
  const std::string lease = Grant();
  const std::string other_lease = Grant();
  const std::string conn_a = Issue1(Kind::kConnection, Alice(), "", "", lease);
  const std::string conn_b = Issue1(Kind::kConnection, Bob(), "", "", lease);
  const std::string conn_other =
      Issue1(Kind::kConnection, Alice(), "", "", other_lease);
  const OpenContextResult ctx_a = Open(Alice(), "", conn_a);
  const OpenContextResult ctx_b = Open(Bob(), "", conn_b);
  const OpenContextResult ctx_other = Open(Alice(), "", conn_other);

  absl::StatusOr<std::vector<std::string>> revoked =
      registry_->RevokeLease(lease);
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_THAT(*revoked,
              UnorderedElementsAre(conn_a, ctx_a.run_id, ctx_a.request_id,
                                   conn_b, ctx_b.run_id, ctx_b.request_id));
  for (const std::string& id : *revoked) {
    const RecordView r = DescribeOk(id);
    EXPECT_EQ(r.state, State::kReleased) << id;
    EXPECT_EQ(r.end_reason, "lease_revoked") << id;
    EXPECT_EQ(Check(id, r.owner), Verdict::kReleased) << id;
  }
  EXPECT_EQ(Check(ctx_a.thread_id, Alice()), Verdict::kValid);
  EXPECT_EQ(Check(ctx_b.thread_id, Bob()), Verdict::kValid);
  for (const std::string& id :
       {conn_other, ctx_other.run_id, ctx_other.request_id}) {
    EXPECT_EQ(Check(id, Alice()), Verdict::kValid) << id;
  }
  EXPECT_THAT(registry_->RevokeLease(lease).status(),
              HasCode(absl::StatusCode::kNotFound));
  EXPECT_EQ(registry_->Stats().leases, 1u);
  EXPECT_EQ(observer_->ended(Kind::kConnection, EndCause::kLeaseRevoked), 2u);
  EXPECT_EQ(observer_->lease_ended(EndCause::kLeaseRevoked), 1u);
  // Revoked leases never expire later.
  clock_.Advance(absl::Hours(1));
  const std::vector<std::string> expired = registry_->Tick();
  EXPECT_THAT(expired, UnorderedElementsAre(conn_other, ctx_other.run_id,
                                            ctx_other.request_id));
}

TEST_F(RegistryTest, MalformedLeaseIdIsInvalidArgument) {
  const std::string conn = Issue1(Kind::kConnection, Alice());
  for (const std::string& lease :
       {std::string("garbage"), std::string(""), std::string("lease_"), conn,
        Relabel(conn, Kind::kLease).replace(6, 1, "8"),
        std::string(10 * 1024, 'l')}) {
    SCOPED_TRACE(lease.substr(0, 40));
    EXPECT_THAT(registry_->KeepAlive(lease).status(),
                IsFieldError(absl::StatusCode::kInvalidArgument, "lease_id"));
    EXPECT_THAT(registry_->RevokeLease(lease).status(),
                IsFieldError(absl::StatusCode::kInvalidArgument, "lease_id"));
  }
}

// A lease past its deadline is not live (KeepAlive and Issue already treat it
// so): revoking it is NOT_FOUND and its connections end EXPIRED, as the
// design says of a lease that expires, whether or not Tick ran first.
TEST_F(RegistryTest, RevokeLeasePastItsDeadlineIsNotFoundAndExpires) {
  const std::string lease = Grant(absl::Seconds(10));
  const std::string conn = Issue1(Kind::kConnection, Alice(), "", "", lease);
  clock_.Advance(absl::Seconds(10));
  ASSERT_THAT(registry_->KeepAlive(lease).status(),
              HasCode(absl::StatusCode::kNotFound));
  EXPECT_THAT(registry_->RevokeLease(lease).status(),
              HasCode(absl::StatusCode::kNotFound));
  registry_->Tick();
  EXPECT_EQ(Check(conn, Alice()), Verdict::kExpired);
  EXPECT_EQ(DescribeOk(conn).end_reason, "lease_expired");
}

// ---------------------------------------------------------------------------
// Tombstones

TEST_F(RegistryTest, TombstonesAreKeptForRetentionThenDropped) {
  RegistryOptions options;
  options.tombstone_retention = absl::Minutes(10);
  Reset(options);
  const std::string conn = Issue1(Kind::kConnection, Alice());
  const OpenContextResult ctx = Open(Alice(), "", conn);
  const std::string kept = Issue1(Kind::kThread, Alice());
  CleanupConnection(Alice(), conn);  // conn, run, request
  EXPECT_EQ(registry_->Stats().tombstones, 3u);
  clock_.Advance(absl::Minutes(5));
  CleanupIds(Alice(), {ctx.thread_id});
  EXPECT_EQ(registry_->Stats().tombstones, 4u);
  const std::vector<std::string> first = {conn, ctx.run_id, ctx.request_id};

  clock_.Advance(absl::Minutes(5) - absl::Milliseconds(1));
  registry_->Tick();
  EXPECT_EQ(registry_->Stats().tombstones, 4u);
  for (const std::string& id : first) {
    EXPECT_EQ(Check(id, Alice()), Verdict::kReleased) << id;
    EXPECT_EQ(StateOf(id), State::kReleased) << id;
  }
  EXPECT_THAT(ListAll(Alice(), Kind::kUnspecified, true),
              UnorderedElementsAre(conn, ctx.thread_id, ctx.run_id,
                                   ctx.request_id, kept));

  clock_.Advance(absl::Milliseconds(2));
  registry_->Tick();
  EXPECT_EQ(registry_->Stats().tombstones, 1u);
  for (const std::string& id : first) {
    EXPECT_EQ(Check(id, Alice()), Verdict::kUnknown) << id;
    EXPECT_THAT(registry_->Describe(id).status(),
                HasCode(absl::StatusCode::kNotFound))
        << id;
  }
  EXPECT_EQ(Check(ctx.thread_id, Alice()), Verdict::kReleased);
  EXPECT_THAT(ListAll(Alice(), Kind::kUnspecified, true),
              UnorderedElementsAre(ctx.thread_id, kept));
  EXPECT_THAT(CleanupIds(Alice(), first).unknown,
              UnorderedElementsAreArray(first));

  clock_.Advance(absl::Minutes(5));
  registry_->Tick();
  EXPECT_EQ(registry_->Stats().tombstones, 0u);
  EXPECT_EQ(Check(ctx.thread_id, Alice()), Verdict::kUnknown);
  EXPECT_THAT(ListAll(Alice(), Kind::kUnspecified, true),
              UnorderedElementsAre(kept));
  EXPECT_EQ(Check(kept, Alice()), Verdict::kValid);
  EXPECT_EQ(registry_->Stats().live_records[static_cast<int>(Kind::kThread)],
            1u);
}

TEST_F(RegistryTest, ThreadOutlivesDroppedConnectionTombstone) {
  RegistryOptions options;
  options.tombstone_retention = absl::Minutes(1);
  Reset(options);
  const std::string conn = Issue1(Kind::kConnection, Alice());
  const OpenContextResult ctx = Open(Alice(), "", conn);
  CleanupConnection(Alice(), conn);
  clock_.Advance(absl::Minutes(2));
  registry_->Tick();
  ASSERT_EQ(Check(conn, Alice()), Verdict::kUnknown);
  // The thread is still usable and still cascades.
  const OpenContextResult next = Open(Alice(), ctx.thread_id);
  EXPECT_TRUE(next.thread_reused);
  EXPECT_THAT(
      CleanupIds(Alice(), {ctx.thread_id}).released,
      UnorderedElementsAre(ctx.thread_id, next.run_id, next.request_id));
  clock_.Advance(absl::Minutes(2));
  registry_->Tick();
  EXPECT_EQ(registry_->Stats().tombstones, 0u);
  EXPECT_THAT(ListAll(Alice(), Kind::kUnspecified, true), IsEmpty());
  // An owner whose records all dropped starts again from nothing.
  EXPECT_EQ(Check(Issue1(Kind::kThread, Alice()), Alice()), Verdict::kValid);
}

// ---------------------------------------------------------------------------
// ListOwned

TEST_F(RegistryTest, ListOwnedPaginatesEveryRecordOnceInIdOrder) {
  std::vector<std::string> issued;
  for (int i = 0; i < 50; ++i) {
    const OpenContextResult ctx = Open(Alice());  // 150
    issued.push_back(ctx.thread_id);
    issued.push_back(ctx.run_id);
    issued.push_back(ctx.request_id);
  }
  for (const std::string& id : IssueN(Kind::kConnection, Alice(), 100)) {
    issued.push_back(id);
  }
  IssueN(Kind::kThread, Bob(), 30);
  ASSERT_THAT(issued, SizeIs(250));
  // Minted in increasing order, so issue order is ID order.
  std::vector<Id128> bits;
  for (const std::string& id : issued) bits.push_back(BitsOf(id));
  ASSERT_TRUE(std::is_sorted(bits.begin(), bits.end()));

  std::vector<std::string> listed;
  std::vector<size_t> page_sizes;
  std::string token;
  for (int page = 0; page < 10; ++page) {
    ListOwnedSpec spec;
    spec.owner = Alice();
    spec.page_size = 100;
    spec.page_token = token;
    absl::StatusOr<ListOwnedResult> r = registry_->ListOwned(spec);
    ASSERT_TRUE(r.ok()) << r.status();
    page_sizes.push_back(r->records.size());
    for (const RecordView& v : r->records) {
      EXPECT_EQ(v.owner, Alice());
      listed.push_back(TextOf(v));
    }
    token = r->next_page_token;
    if (token.empty()) break;
  }
  EXPECT_THAT(page_sizes, ElementsAreArray({100u, 100u, 50u}));
  EXPECT_EQ(listed, issued);
}

TEST_F(RegistryTest, ListOwnedCutsPagesByBytesToo) {
  // 300 records with 32 labels of 256-byte values (about 10.5 KB each): a
  // page of 1000 would be over 3 MB; pages stop at max_page_bytes.
  RegistryOptions options;
  options.max_page_bytes = 256 * 1024;
  Reset(options);
  IssueSpec spec = Spec(Kind::kThread, Alice());
  for (int i = 0; i < 32; ++i) {
    spec.labels.emplace_back(absl::StrCat("key", i), std::string(256, 'v'));
  }
  spec.count = 100;
  std::vector<std::string> issued;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<std::vector<std::string>> ids = registry_->Issue(spec);
    ASSERT_TRUE(ids.ok()) << ids.status();
    issued.insert(issued.end(), ids->begin(), ids->end());
  }

  std::vector<std::string> listed;
  std::string token;
  int pages = 0;
  do {
    ListOwnedSpec list;
    list.owner = Alice();
    list.page_size = 1000;
    list.page_token = token;
    absl::StatusOr<ListOwnedResult> r = registry_->ListOwned(list);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_FALSE(r->records.empty());
    uint64_t label_bytes = 0;
    for (const RecordView& v : r->records) {
      for (const auto& [key, value] : *v.labels) {
        label_bytes += key.size() + value.size();
      }
      listed.push_back(TextOf(v));
    }
    EXPECT_LE(label_bytes, options.max_page_bytes);
    token = r->next_page_token;
    ++pages;
  } while (!token.empty() && pages < 100);
  // Every record once, in order, over several pages of about 24 each.
  EXPECT_EQ(listed, issued);
  EXPECT_GE(pages, 10);
  EXPECT_LE(pages, 20);
}

TEST_F(RegistryTest, ListOwnedPageHoldsOneRecordLargerThanTheByteBound) {
  RegistryOptions options;
  options.max_page_bytes = 100;  // below any record's size
  Reset(options);
  const std::vector<std::string> issued = IssueN(Kind::kThread, Alice(), 3);
  std::string token;
  for (const std::string& id : issued) {
    ListOwnedSpec list;
    list.owner = Alice();
    list.page_token = token;
    absl::StatusOr<ListOwnedResult> r = registry_->ListOwned(list);
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_THAT(r->records, SizeIs(1));
    EXPECT_EQ(TextOf(r->records[0]), id);
    token = r->next_page_token;
  }
  EXPECT_EQ(token, "");
}

TEST_F(RegistryTest, ListOwnedExactlyFullPageHasNoToken) {
  IssueN(Kind::kThread, Alice(), 10);
  ListOwnedSpec spec;
  spec.owner = Alice();
  spec.page_size = 10;
  absl::StatusOr<ListOwnedResult> r = registry_->ListOwned(spec);
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->records, SizeIs(10));
  EXPECT_EQ(r->next_page_token, "");
}

TEST_F(RegistryTest, ListOwnedFiltersByKindAndState) {
  const std::string conn = Issue1(Kind::kConnection, Alice());
  const OpenContextResult a = Open(Alice(), "", conn);
  const OpenContextResult b = Open(Alice());
  CleanupIds(Alice(), {b.run_id});
  EXPECT_THAT(ListAll(Alice(), Kind::kThread),
              ElementsAreArray({a.thread_id, b.thread_id}));
  EXPECT_THAT(ListAll(Alice(), Kind::kRun), ElementsAreArray({a.run_id}));
  EXPECT_THAT(ListAll(Alice(), Kind::kRun, true),
              ElementsAreArray({a.run_id, b.run_id}));
  EXPECT_THAT(ListAll(Alice(), Kind::kRequest, true),
              ElementsAreArray({a.request_id, b.request_id}));
  EXPECT_THAT(ListAll(Alice(), Kind::kConnection), ElementsAreArray({conn}));
  EXPECT_THAT(ListAll(Alice()), SizeIs(5));
  EXPECT_THAT(ListAll(Alice(), Kind::kUnspecified, true), SizeIs(7));
  // Pagination with a filter skips non-matching records.
  ListOwnedSpec spec;
  spec.owner = Alice();
  spec.kind = Kind::kThread;
  spec.page_size = 1;
  absl::StatusOr<ListOwnedResult> r = registry_->ListOwned(spec);
  ASSERT_TRUE(r.ok());
  ASSERT_THAT(r->records, SizeIs(1));
  EXPECT_EQ(TextOf(r->records[0]), a.thread_id);
  ASSERT_NE(r->next_page_token, "");
  spec.page_token = r->next_page_token;
  r = registry_->ListOwned(spec);
  ASSERT_TRUE(r.ok());
  ASSERT_THAT(r->records, SizeIs(1));
  EXPECT_EQ(TextOf(r->records[0]), b.thread_id);
  EXPECT_EQ(r->next_page_token, "");
  // Unknown owners have nothing.
  EXPECT_THAT(ListAll(Owner{"acme", "nobody"}), IsEmpty());
}

TEST_F(RegistryTest, ListOwnedRejectsBadPageTokenAndKind) {
  IssueN(Kind::kThread, Alice(), 3);
  for (const std::string& token :
       {std::string("garbage"), std::string("thread_"), std::string(27, '0'),
        std::string(10 * 1024, 'x'), std::string("8") + std::string(25, '0')}) {
    SCOPED_TRACE(token.substr(0, 40));
    ListOwnedSpec spec;
    spec.owner = Alice();
    spec.page_token = token;
    EXPECT_THAT(registry_->ListOwned(spec).status(),
                IsFieldError(absl::StatusCode::kInvalidArgument, "page_token"));
  }
  ListOwnedSpec spec;
  spec.owner = Alice();
  spec.kind = Kind::kLease;
  EXPECT_THAT(registry_->ListOwned(spec).status(),
              IsFieldError(absl::StatusCode::kInvalidArgument, "kind"));
}

TEST_F(RegistryTest, ListOwnedClampsPageSize) {
  RegistryOptions options;
  options.default_page_size = 7;
  options.max_page_size = 20;
  Reset(options);
  IssueN(Kind::kThread, Alice(), 30);
  ListOwnedSpec spec;
  spec.owner = Alice();
  spec.page_size = 1'000'000;
  absl::StatusOr<ListOwnedResult> r = registry_->ListOwned(spec);
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->records, SizeIs(20));
  EXPECT_NE(r->next_page_token, "");
  spec.page_size = 0;
  r = registry_->ListOwned(spec);
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->records, SizeIs(7));
}

// ---------------------------------------------------------------------------
// Describe

TEST_F(RegistryTest, DescribeReturnsEveryField) {
  const std::string lease = Grant();
  const absl::Time t0 = clock_.Now();
  const std::string conn = Issue1(Kind::kConnection, Alice(), "", "", lease);
  clock_.Advance(absl::Milliseconds(1500));
  const absl::Time t1 = clock_.Now();
  const std::string thread = Issue1(Kind::kThread, Alice(), "", conn);
  const std::string run = Issue1(Kind::kRun, Alice(), thread, conn);
  IssueSpec spec = Spec(Kind::kRequest, Alice(), run, conn);
  spec.labels = {{"agent", "planner"}, {"trace", "abc"}};
  absl::StatusOr<std::vector<std::string>> issued = registry_->Issue(spec);
  ASSERT_TRUE(issued.ok()) << issued.status();
  const std::string request = issued->front();

  const RecordView c = DescribeOk(conn);
  EXPECT_EQ(TextOf(c), conn);
  EXPECT_EQ(c.kind, Kind::kConnection);
  EXPECT_EQ(c.owner, Alice());
  EXPECT_TRUE(c.parent.is_zero());
  EXPECT_TRUE(c.connection.is_zero());
  EXPECT_EQ(c.lease, BitsOf(lease));
  EXPECT_EQ(c.created_at, t0);
  EXPECT_EQ(c.ended_at, absl::InfinitePast());
  EXPECT_EQ(c.state, State::kLive);
  ASSERT_NE(c.labels, nullptr);
  EXPECT_THAT(*c.labels, IsEmpty());

  const RecordView r = DescribeOk(request);
  EXPECT_EQ(r.kind, Kind::kRequest);
  EXPECT_EQ(r.owner, Alice());
  EXPECT_EQ(ParentIdText(r), run);
  EXPECT_EQ(r.parent, BitsOf(run));
  EXPECT_EQ(r.connection, BitsOf(conn));
  EXPECT_TRUE(r.lease.is_zero());
  ASSERT_NE(r.labels, nullptr);
  EXPECT_EQ(*r.labels, spec.labels);
  EXPECT_EQ(r.created_at, t1);
  EXPECT_EQ(r.end_reason, "");
  EXPECT_EQ(ParentIdText(DescribeOk(thread)), "");

  // Revisions increase with every change.
  const uint64_t rev_conn = c.revision;
  const uint64_t rev_thread = DescribeOk(thread).revision;
  const uint64_t rev_run = DescribeOk(run).revision;
  EXPECT_LT(rev_conn, rev_thread);
  EXPECT_LT(rev_thread, rev_run);
  EXPECT_LT(rev_run, r.revision);
  clock_.Advance(absl::Seconds(2));
  const absl::Time t2 = clock_.Now();
  CleanupIds(Alice(), {run}, "finished");
  const RecordView ended_run = DescribeOk(run);
  EXPECT_EQ(ended_run.state, State::kReleased);
  EXPECT_EQ(ended_run.ended_at, t2);
  EXPECT_EQ(ended_run.created_at, t1);
  EXPECT_EQ(ended_run.end_reason, "finished");
  EXPECT_GT(ended_run.revision, r.revision);
  EXPECT_GT(DescribeOk(request).revision, r.revision);
  EXPECT_NE(DescribeOk(request).revision, ended_run.revision);
}

TEST_F(RegistryTest, DescribeUnknownIsNotFoundAndMalformedIsInvalid) {
  const std::string thread = Issue1(Kind::kThread, Alice());
  for (const std::string& id :
       {MintedNotRecorded(Kind::kThread, Alice()), ForgedId(Kind::kRun),
        Relabel(thread, Kind::kRun), FlipTagBit(thread), Grant()}) {
    SCOPED_TRACE(id);
    EXPECT_THAT(registry_->Describe(id).status(),
                HasCode(absl::StatusCode::kNotFound));
  }
  for (const std::string& id :
       {std::string("garbage"), std::string(""), std::string("thread_"),
        std::string("user_a_ws_1_xyz"), std::string(10 * 1024, 'q')}) {
    SCOPED_TRACE(id.substr(0, 40));
    EXPECT_THAT(registry_->Describe(id).status(),
                IsFieldError(absl::StatusCode::kInvalidArgument, "id"));
  }
}

// ---------------------------------------------------------------------------
// Observer and Stats

TEST_F(RegistryTest, ObserverCountsByKindAndCause) {
  const std::string lease = Grant(absl::Seconds(10));
  const std::string lease2 = Grant(absl::Seconds(100));
  IssueN(Kind::kThread, Alice(), 3);  // thread 3
  const std::string c1 = Issue1(Kind::kConnection, Alice(), "", "", lease);
  const std::string c2 = Issue1(Kind::kConnection, Alice(), "", "", lease2);
  const std::string c3 = Issue1(Kind::kConnection, Alice());  // conn 3
  const OpenContextResult x1 = Open(Alice(), "", c1);         // t r q
  const OpenContextResult x2 = Open(Alice(), "", c2);         // t r q
  const OpenContextResult x3 = Open(Alice(), "", c3);         // t r q
  Open(Alice(), x3.thread_id);                                // r q
  const OpenContextResult b = Open(Bob());                    // t r q
  EXPECT_EQ(observer_->issued(Kind::kThread), 7u);
  EXPECT_EQ(observer_->issued(Kind::kRun), 5u);
  EXPECT_EQ(observer_->issued(Kind::kRequest), 5u);
  EXPECT_EQ(observer_->issued(Kind::kConnection), 3u);
  EXPECT_EQ(observer_->issued(Kind::kLease), 0u);
  EXPECT_EQ(observer_->granted(), 2u);

  CleanupIds(Bob(), {b.thread_id});
  EXPECT_EQ(observer_->ended(Kind::kThread, EndCause::kCleanupIds), 1u);
  EXPECT_EQ(observer_->ended(Kind::kRun, EndCause::kCleanupIds), 1u);
  EXPECT_EQ(observer_->ended(Kind::kRequest, EndCause::kCleanupIds), 1u);
  CleanupConnection(Alice(), c3);
  EXPECT_EQ(observer_->ended(Kind::kConnection, EndCause::kCleanupConnection),
            1u);
  EXPECT_EQ(observer_->ended(Kind::kRun, EndCause::kCleanupConnection), 1u);
  EXPECT_EQ(observer_->ended(Kind::kRequest, EndCause::kCleanupConnection), 1u);
  ASSERT_TRUE(registry_->RevokeLease(lease2).ok());
  EXPECT_EQ(observer_->ended(Kind::kConnection, EndCause::kLeaseRevoked), 1u);
  EXPECT_EQ(observer_->ended(Kind::kRun, EndCause::kLeaseRevoked), 1u);
  EXPECT_EQ(observer_->lease_ended(EndCause::kLeaseRevoked), 1u);
  clock_.Advance(absl::Seconds(10));
  registry_->Tick();
  EXPECT_EQ(observer_->ended(Kind::kConnection, EndCause::kLeaseExpired), 1u);
  EXPECT_EQ(observer_->ended(Kind::kRequest, EndCause::kLeaseExpired), 1u);
  EXPECT_EQ(observer_->lease_ended(EndCause::kLeaseExpired), 1u);
  CleanupAll(Alice());
  // Left for Alice: 3 + 3 threads and x3's second run and request.
  EXPECT_EQ(observer_->ended(Kind::kThread, EndCause::kCleanupOwner), 6u);
  EXPECT_EQ(observer_->ended(Kind::kRun, EndCause::kCleanupOwner), 1u);
  EXPECT_EQ(observer_->ended(Kind::kRequest, EndCause::kCleanupOwner), 1u);
  EXPECT_EQ(observer_->ended(Kind::kConnection, EndCause::kCleanupOwner), 0u);
  // Everything issued ended exactly once.
  EXPECT_EQ(observer_->ended_total(), observer_->issued_total());
  // No-ops report nothing.
  CleanupAll(Alice());
  CleanupIds(Bob(), {b.thread_id});
  EXPECT_EQ(observer_->ended_total(), observer_->issued_total());
  (void)x1;
  (void)x2;
}

TEST_F(RegistryTest, StatsCountsLiveRecordsPerKind) {
  const std::string lease = Grant();
  IssueN(Kind::kThread, Alice(), 4);
  const std::string conn = Issue1(Kind::kConnection, Bob(), "", "", lease);
  const OpenContextResult ctx = Open(Bob(), "", conn);
  IssueN(Kind::kRequest, AliceElsewhere(), 6);
  RegistryStats s = registry_->Stats();
  EXPECT_EQ(s.live_records[static_cast<int>(Kind::kThread)], 5u);
  EXPECT_EQ(s.live_records[static_cast<int>(Kind::kRun)], 1u);
  EXPECT_EQ(s.live_records[static_cast<int>(Kind::kRequest)], 7u);
  EXPECT_EQ(s.live_records[static_cast<int>(Kind::kConnection)], 1u);
  EXPECT_EQ(s.live_records[static_cast<int>(Kind::kLease)], 0u);
  EXPECT_EQ(s.tombstones, 0u);
  EXPECT_EQ(s.leases, 1u);
  CleanupConnection(Bob(), conn);
  s = registry_->Stats();
  EXPECT_EQ(s.live_records[static_cast<int>(Kind::kThread)], 5u);
  EXPECT_EQ(s.live_records[static_cast<int>(Kind::kRun)], 0u);
  EXPECT_EQ(s.live_records[static_cast<int>(Kind::kRequest)], 6u);
  EXPECT_EQ(s.live_records[static_cast<int>(Kind::kConnection)], 0u);
  EXPECT_EQ(s.tombstones, 3u);
  (void)ctx;
}

// ---------------------------------------------------------------------------
// Concurrency

struct OwnerModel {
  Owner owner;
  std::set<std::string> live;
  std::set<std::string> ended;
  std::vector<std::string> threads, runs, conns, all;
};

// Picks a random element (or "" when empty).
std::string Pick(const std::vector<std::string>& v, std::mt19937& rng) {
  if (v.empty()) return "";
  return v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng)];
}

// One worker: random operations on its own owners, checked against a model
// that trusts only what the registry reported for those owners.
void Work(Registry& registry, std::vector<OwnerModel>& owners, int seed,
          int ops, std::vector<std::string>& errors) {
  std::mt19937 rng(seed);
  auto fail = [&](const std::string& what) {
    if (errors.size() < 20) errors.push_back(what);
  };
  auto record_issued = [&](OwnerModel& m, Kind kind,
                           const std::vector<std::string>& ids) {
    for (const std::string& id : ids) {
      if (!m.live.insert(id).second) fail("issued twice: " + id);
      m.all.push_back(id);
      if (kind == Kind::kThread) m.threads.push_back(id);
      if (kind == Kind::kRun) m.runs.push_back(id);
      if (kind == Kind::kConnection) m.conns.push_back(id);
    }
  };
  auto record_cleanup = [&](OwnerModel& m, const CleanupResult& r) {
    for (const std::string& id : r.released) {
      if (m.live.erase(id) != 1) fail("released a non-live record: " + id);
      m.ended.insert(id);
    }
    for (const std::string& id : r.already_ended) {
      if (!m.ended.contains(id)) fail("already_ended but not ended: " + id);
    }
    if (!r.refused.empty()) fail("refused own record: " + r.refused[0]);
    if (!r.unknown.empty()) fail("unknown own record: " + r.unknown[0]);
  };
  for (int op = 0; op < ops; ++op) {
    OwnerModel& m = owners[rng() % owners.size()];
    const int what = static_cast<int>(rng() % 20);
    if (what < 4) {  // threads, maybe through a connection
      IssueSpec spec;
      spec.kind = Kind::kThread;
      spec.owner = m.owner;
      spec.count = 1 + rng() % 3;
      const std::string conn = rng() % 2 ? Pick(m.conns, rng) : "";
      spec.connection_id = conn;
      absl::StatusOr<std::vector<std::string>> ids = registry.Issue(spec);
      if (ids.ok() != (conn.empty() || m.live.contains(conn))) {
        fail("thread issue: " + ids.status().ToString());
      }
      if (ids.ok()) record_issued(m, spec.kind, *ids);
    } else if (what < 7) {  // connections
      IssueSpec spec;
      spec.kind = Kind::kConnection;
      spec.owner = m.owner;
      spec.count = 1 + rng() % 2;
      absl::StatusOr<std::vector<std::string>> ids = registry.Issue(spec);
      if (!ids.ok()) fail("connection issue: " + ids.status().ToString());
      if (ids.ok()) record_issued(m, spec.kind, *ids);
    } else if (what < 10) {  // run or request under a parent
      const bool run = rng() % 2;
      const std::string parent = Pick(run ? m.threads : m.runs, rng);
      const std::string conn = rng() % 2 ? Pick(m.conns, rng) : "";
      IssueSpec spec;
      spec.kind = run ? Kind::kRun : Kind::kRequest;
      spec.owner = m.owner;
      spec.parent_id = parent;
      spec.connection_id = conn;
      absl::StatusOr<std::vector<std::string>> ids = registry.Issue(spec);
      const bool usable = (parent.empty() || m.live.contains(parent)) &&
                          (conn.empty() || m.live.contains(conn));
      if (ids.ok() != usable) fail("child issue: " + ids.status().ToString());
      if (!ids.ok() &&
          ids.status().code() != absl::StatusCode::kFailedPrecondition) {
        fail("child issue code: " + ids.status().ToString());
      }
      if (ids.ok()) record_issued(m, spec.kind, *ids);
    } else if (what < 14) {  // the gateway's call
      const std::string thread = rng() % 3 ? Pick(m.threads, rng) : "";
      const std::string conn = rng() % 2 ? Pick(m.conns, rng) : "";
      OpenContextSpec spec;
      spec.owner = m.owner;
      spec.thread_id = thread;
      spec.connection_id = conn;
      absl::StatusOr<OpenContextResult> r = registry.OpenContext(spec);
      if (r.ok() != (conn.empty() || m.live.contains(conn))) {
        fail("open: " + r.status().ToString());
      }
      if (!r.ok()) continue;
      if (r->thread_reused != (!thread.empty() && m.live.contains(thread))) {
        fail("thread_reused wrong for " + thread);
      }
      if (!r->thread_reused) record_issued(m, Kind::kThread, {r->thread_id});
      record_issued(m, Kind::kRun, {r->run_id});
      record_issued(m, Kind::kRequest, {r->request_id});
    } else if (what < 17) {  // cleanup by ids
      std::vector<std::string> texts;
      for (int i = 0, n = 1 + static_cast<int>(rng() % 3); i < n; ++i) {
        const std::string id = Pick(m.all, rng);
        if (!id.empty()) texts.push_back(id);
      }
      CleanupTarget target;
      target.type = CleanupTarget::Type::kIds;
      for (const std::string& t : texts) target.ids.push_back(t);
      absl::StatusOr<CleanupResult> r = registry.Cleanup(m.owner, target, "");
      if (!r.ok()) {
        fail("cleanup ids: " + r.status().ToString());
        continue;
      }
      for (const std::string& t : texts) {
        if (m.live.contains(t) &&
            std::find(r->released.begin(), r->released.end(), t) ==
                r->released.end()) {
          fail("named live record not released: " + t);
        }
      }
      record_cleanup(m, *r);
    } else if (what < 19) {  // cleanup by connection
      const std::string conn = Pick(m.conns, rng);
      if (conn.empty()) continue;
      const bool was_live = m.live.contains(conn);
      CleanupTarget target;
      target.type = CleanupTarget::Type::kConnection;
      target.connection_id = conn;
      absl::StatusOr<CleanupResult> r = registry.Cleanup(m.owner, target, "");
      if (!r.ok()) {
        fail("cleanup connection: " + r.status().ToString());
        continue;
      }
      for (const std::string& id : r->released) {
        if (id.starts_with("thread_")) fail("connection released a thread");
      }
      if (was_live != !r->released.empty()) fail("connection not released");
      record_cleanup(m, *r);
    } else if (rng() % 8 == 0) {  // now and then, everything
      CleanupTarget target;
      target.type = CleanupTarget::Type::kAllOwned;
      absl::StatusOr<CleanupResult> r = registry.Cleanup(m.owner, target, "");
      if (!r.ok()) {
        fail("cleanup all: " + r.status().ToString());
        continue;
      }
      if (r->released.size() != m.live.size()) fail("all_owned count");
      record_cleanup(m, *r);
    }
  }
}

TEST_F(RegistryTest, ConcurrentIssueAndCleanupStayConsistent) {
  constexpr int kWorkers = 4;
  constexpr int kOwnersPerWorker = 6;
  constexpr int kOps = 3000;
  std::vector<std::vector<OwnerModel>> models(kWorkers);
  for (int w = 0; w < kWorkers; ++w) {
    for (int o = 0; o < kOwnersPerWorker; ++o) {
      // Lookalike names across workers: "u1" of "t1" vs "u1" of "t11" etc.
      OwnerModel m;
      m.owner = {"t" + std::to_string(o % 2) + std::to_string(w),
                 "u" + std::to_string(o)};
      models[w].push_back(std::move(m));
    }
  }
  std::vector<std::vector<std::string>> errors(kWorkers);
  std::atomic<bool> done{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWorkers; ++w) {
    threads.emplace_back(
        [&, w] { Work(*registry_, models[w], 1000 + w, kOps, errors[w]); });
  }
  // A reader alongside: Validate, ListOwned, Describe, Stats, Tick.
  std::thread reader([&] {
    std::mt19937 rng(7);
    while (!done.load()) {
      const Owner owner{"t0" + std::to_string(rng() % kWorkers),
                        "u" + std::to_string(rng() % kOwnersPerWorker)};
      ListOwnedSpec spec;
      spec.owner = owner;
      spec.page_size = 50;
      absl::StatusOr<ListOwnedResult> r = registry_->ListOwned(spec);
      if (r.ok()) {
        for (const RecordView& v : r->records) {
          registry_->Validate(TextOf(v), v.kind, owner, true);
          registry_->Validate(TextOf(v), v.kind, Bob(), false);
          (void)registry_->Describe(TextOf(v));
        }
      }
      registry_->Stats();
      registry_->Tick();
    }
  });
  for (std::thread& t : threads) t.join();
  done.store(true);
  reader.join();

  uint64_t live[kNumKinds] = {};
  uint64_t ended = 0;
  std::vector<std::string> all_ids;
  for (int w = 0; w < kWorkers; ++w) {
    EXPECT_THAT(errors[w], IsEmpty()) << "worker " << w;
    for (const OwnerModel& m : models[w]) {
      SCOPED_TRACE(testing::PrintToString(m.owner));
      for (const std::string& id : m.live) {
        ++live[static_cast<int>(ParseId(id)->kind)];
      }
      ended += m.ended.size();
      all_ids.insert(all_ids.end(), m.all.begin(), m.all.end());
      const std::vector<std::string> listed = ListAll(m.owner);
      EXPECT_EQ(std::set<std::string>(listed.begin(), listed.end()), m.live);
      EXPECT_EQ(listed.size(), m.live.size());
      const std::vector<std::string> with_ended =
          ListAll(m.owner, Kind::kUnspecified, true);
      EXPECT_EQ(with_ended.size(), m.all.size());
      for (const std::string& id : m.ended) {
        ASSERT_EQ(Check(id, m.owner), Verdict::kReleased) << id;
      }
    }
  }
  const RegistryStats stats = registry_->Stats();
  for (Kind kind : kRecordKinds) {
    EXPECT_EQ(stats.live_records[static_cast<int>(kind)],
              live[static_cast<int>(kind)])
        << KindName(kind);
  }
  EXPECT_EQ(stats.tombstones, ended);
  const size_t total = all_ids.size();
  EXPECT_GT(total, static_cast<size_t>(kWorkers * kOps / 2));
  std::sort(all_ids.begin(), all_ids.end());
  EXPECT_EQ(std::unique(all_ids.begin(), all_ids.end()), all_ids.end());
  // The observer saw the same totals.
  EXPECT_EQ(observer_->issued_total(), total);
  EXPECT_EQ(observer_->ended_total(), ended);
}

// Lease TTLs are durations: with min_lease_ttl lowered a test grants a
// 300 ms lease and steps the clock past it, to the millisecond.
TEST_F(RegistryTest, SubSecondLeaseTtlExpiresOnTheClock) {
  RegistryOptions options;
  options.min_lease_ttl = absl::Milliseconds(100);
  Reset(options);
  const absl::Duration ttl = absl::Milliseconds(300);
  const std::string lease = Grant(ttl);
  ASSERT_FALSE(lease.empty());
  IssueSpec spec;
  spec.kind = Kind::kConnection;
  spec.owner = Owner{"acme", "alice"};
  spec.lease_id = lease;
  absl::StatusOr<std::vector<std::string>> conn = registry_->Issue(spec);
  ASSERT_TRUE(conn.ok()) << conn.status();
  ASSERT_EQ(conn->size(), 1u);

  clock_.Advance(ttl - absl::Milliseconds(1));
  EXPECT_THAT(registry_->Tick(), IsEmpty());
  EXPECT_EQ(StateOf(conn->front()), State::kLive);
  clock_.Advance(absl::Milliseconds(1));
  EXPECT_THAT(registry_->Tick(), ::testing::ElementsAre(conn->front()));
  EXPECT_EQ(StateOf(conn->front()), State::kExpired);
  // Below the minimum is refused, as any TTL out of range.
  EXPECT_EQ(registry_->GrantLease("gw", absl::Milliseconds(99)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Connections issued on a lease while it is revoked or expires: each is
// either refused or ended with the lease; none stays live on it. The race is
// asserted to have happened: every issuer saw its issues accepted and then
// refused, and some issues ran while the end was under way.
class LeaseRaceTest : public RegistryTest,
                      public ::testing::WithParamInterface<bool> {};

TEST_P(LeaseRaceTest, NoLiveConnectionOutlivesItsLease) {
  const bool expire = GetParam();
  constexpr int kIssuers = 3;
  constexpr int kRounds = 15;
  // Each issuer goes on until refused (the lease ended); after this many
  // issues it waits for the end to begin (so it cannot finish first).
  constexpr int kPerIssuer = 120;
  int overlaps = 0;  // issues in flight while the revoke/expiry ran
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(round);
    const std::string lease = Grant(absl::Seconds(10));
    const Id128 lease_bits = BitsOf(lease);
    std::atomic<int> issued{0};
    std::vector<std::vector<std::string>> conns(kIssuers);
    std::vector<std::vector<std::string>> errors(kIssuers);
    std::vector<int> refused(kIssuers, 0);
    std::vector<int> in_flight_with_end(kIssuers, 0);
    // 0 before the end starts, 1 while it runs, 2 after.
    std::atomic<int> end_phase{0};
    std::array<std::atomic<int>, kIssuers> accepted{};
    std::atomic<int> unexpected{0};  // errors other than the refusal
    std::vector<Owner> owners;
    for (int i = 0; i < kIssuers; ++i) {
      owners.push_back(
          {"race" + std::to_string(round), "u" + std::to_string(i)});
    }
    std::vector<std::thread> threads;
    for (int i = 0; i < kIssuers; ++i) {
      threads.emplace_back([&, i] {
        // (The bound only stops a broken registry that never refuses.)
        for (int n = 0; refused[i] == 0 && n < 100 * kPerIssuer; ++n) {
          if (n == kPerIssuer) {
            while (end_phase.load() == 0) std::this_thread::yield();
          }
          IssueSpec spec;
          spec.kind = Kind::kConnection;
          spec.owner = owners[i];
          spec.lease_id = lease;
          spec.count = 1 + n % 2;
          const int phase_before = end_phase.load();
          absl::StatusOr<std::vector<std::string>> ids = registry_->Issue(spec);
          if (phase_before < 2 && end_phase.load() >= 1) {
            ++in_flight_with_end[i];
          }
          if (ids.ok()) {
            conns[i].insert(conns[i].end(), ids->begin(), ids->end());
            issued.fetch_add(1);
            accepted[i].fetch_add(1);
            // Something opened through it, to be cascaded.
            OpenContextSpec open;
            open.owner = owners[i];
            open.connection_id = ids->front();
            (void)registry_->OpenContext(open);
          } else if (ids.status().code() ==
                     absl::StatusCode::kFailedPrecondition) {
            ++refused[i];
          } else {
            errors[i].push_back(ids.status().ToString());
            unexpected.fetch_add(1);
          }
        }
      });
    }
    std::vector<std::string> ended;
    std::thread ender([&] {
      // Every issuer has been accepted (so each sees both orders).
      auto all_accepted = [&] {
        for (const std::atomic<int>& a : accepted) {
          if (a.load() == 0) return false;
        }
        return true;
      };
      // (Unexpected errors end the wait too: the test fails on them, and
      // an issuer stuck without an accepted issue must not hang it.)
      while ((issued.load() < 20 + round * 3 || !all_accepted()) &&
             unexpected.load() == 0) {
        std::this_thread::yield();
      }
      end_phase.store(1);
      if (expire) {
        clock_.Advance(absl::Seconds(10));
        ended = registry_->Tick();
      } else {
        absl::StatusOr<std::vector<std::string>> r =
            registry_->RevokeLease(lease);
        ASSERT_TRUE(r.ok()) << r.status();
        ended = *r;
      }
      end_phase.store(2);
    });
    for (std::thread& t : threads) t.join();
    ender.join();
    std::vector<std::string> late = registry_->Tick();  // no-op expected
    EXPECT_THAT(late, IsEmpty());

    std::set<std::string> all_conns;
    for (int i = 0; i < kIssuers; ++i) {
      EXPECT_THAT(errors[i], IsEmpty());
      // Both orders: accepted before the end, refused after it.
      EXPECT_GT(conns[i].size(), 0u) << "issuer " << i;
      EXPECT_EQ(refused[i], 1) << "issuer " << i << " never saw the end";
      overlaps += in_flight_with_end[i];
      all_conns.insert(conns[i].begin(), conns[i].end());
      for (const std::string& id : ListAll(owners[i])) {
        const RecordView r = DescribeOk(id);
        if (r.kind == Kind::kConnection) {
          EXPECT_NE(r.lease, lease_bits)
              << "live connection on ended lease " << id;
        }
        if (r.kind != Kind::kThread) {
          ADD_FAILURE() << "live " << id << " opened through an ended lease";
        }
      }
    }
    std::set<std::string> ended_conns;
    for (const std::string& id : ended) {
      if (id.starts_with("conn_")) ended_conns.insert(id);
    }
    EXPECT_EQ(ended_conns, all_conns);
    EXPECT_GT(all_conns.size(), 0u);
    const State want = expire ? State::kExpired : State::kReleased;
    for (const std::string& id : all_conns) {
      ASSERT_EQ(StateOf(id), want) << id;
    }
  }
  // Some issues ran while the lease was ending, or nothing raced.
  EXPECT_GT(overlaps, 0);
  RecordProperty("issues_overlapping_the_end", overlaps);
}

INSTANTIATE_TEST_SUITE_P(RevokeOrExpire, LeaseRaceTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Expire" : "Revoke";
                         });

}  // namespace
}  // namespace registrar
