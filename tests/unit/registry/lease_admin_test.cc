// The operator's lease calls of the registry: ListLeases (by holder, paged)
// and RevokeHolder (every lease of a holder, each ended as RevokeLease ends
// one, with its cascade).

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/clock.h"
#include "service/common/field_error.h"
#include "service/id/id_generator.h"
#include "service/id/key_ring.h"
#include "service/registry/registry.h"
#include "tests/unit/registry/test_store.h"

namespace registrar {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAreArray;

Owner Alice() { return {"acme", "alice"}; }
Owner Bob() { return {"acme", "bob"}; }

class LeaseAdminTest : public ::testing::Test {
 protected:
  // `remote_store`: the registry's store commits on a thread of its own.
  explicit LeaseAdminTest(bool remote_store = false)
      : keys_(KeyRing::Generate()), ids_(clock_, keys_, 0) {
    if (remote_store) {
      store_ = std::make_unique<testing::DelayStore>(absl::ZeroDuration());
    }
    RegistryOptions options;
    options.shards = 8;
    registry_ = std::make_unique<Registry>(options, clock_, ids_, nullptr,
                                           store_.get());
    EXPECT_TRUE(registry_->Recover().ok());
  }

  std::string Grant(std::string_view holder,
                    absl::Duration ttl = absl::Seconds(30)) {
    absl::StatusOr<LeaseGrant> g = registry_->GrantLease(holder, ttl, "gw");
    EXPECT_TRUE(g.ok()) << g.status();
    return g.ok() ? g->lease_id : "";
  }
  // A connection of `owner` on `lease` with a context opened through it:
  // the four IDs a revoke of the lease ends.
  std::vector<std::string> Bind(const std::string& lease, const Owner& owner) {
    IssueSpec spec;
    spec.kind = Kind::kConnection;
    spec.owner = owner;
    spec.lease_id = lease;
    absl::StatusOr<std::vector<std::string>> conn = registry_->Issue(spec);
    EXPECT_TRUE(conn.ok()) << conn.status();
    if (!conn.ok()) return {};
    OpenContextSpec open;
    open.owner = owner;
    open.connection_id = conn->front();
    absl::StatusOr<OpenContextResult> ctx = registry_->OpenContext(open);
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    if (!ctx.ok()) return {};
    // The thread outlives the connection; the run and request do not.
    threads_.push_back(ctx->thread_id);
    return {conn->front(), ctx->run_id, ctx->request_id};
  }
  State StateOf(const std::string& id) const {
    absl::StatusOr<RecordView> r = registry_->Describe(id);
    return r.ok() ? r->state : State::kUnspecified;
  }
  // Every lease of `holder` (nullopt: all), page by page of `page_size`.
  std::vector<std::string> ListAll(std::optional<std::string_view> holder,
                                   uint32_t page_size, int* pages = nullptr) {
    std::vector<std::string> out;
    std::string token;
    int n = 0;
    do {
      ListLeasesSpec spec;
      spec.holder = holder;
      spec.page_size = page_size;
      spec.page_token = token;
      absl::StatusOr<ListLeasesResult> page = registry_->ListLeases(spec);
      EXPECT_TRUE(page.ok()) << page.status();
      if (!page.ok() || ++n > 1000) break;
      for (const LeaseInfo& l : page->leases) out.push_back(l.lease_id);
      token = page->next_page_token;
    } while (!token.empty());
    if (pages != nullptr) *pages = n;
    return out;
  }

  FakeClock clock_;
  KeyRing keys_;
  IdGenerator ids_;
  std::unique_ptr<testing::DelayStore> store_;  // outlives the registry
  std::unique_ptr<Registry> registry_;
  std::vector<std::string> threads_;
};

TEST_F(LeaseAdminTest, ListsAHoldersLeasesWithTheirDetails) {
  const std::string a1 = Grant("gateway-a", absl::Seconds(30));
  const std::string b1 = Grant("gateway-b");
  const std::string a2 = Grant("gateway-a", absl::Seconds(60));
  Grant("gateway-aa");  // a prefix match is no match
  Bind(a1, Alice());
  Bind(a1, Bob());
  clock_.Advance(absl::Seconds(10));

  ListLeasesSpec spec;
  spec.holder = "gateway-a";
  absl::StatusOr<ListLeasesResult> page = registry_->ListLeases(spec);
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_TRUE(page->next_page_token.empty());
  ASSERT_EQ(page->leases.size(), 2u);
  // In lease ID order, which is grant order here.
  const LeaseInfo& first = page->leases[0];
  EXPECT_EQ(first.lease_id, a1);
  EXPECT_EQ(first.holder, "gateway-a");
  EXPECT_EQ(first.grantor, "gw");
  EXPECT_EQ(first.ttl, absl::Seconds(30));
  EXPECT_EQ(first.remaining, absl::Seconds(20));
  EXPECT_EQ(first.connections, 2u);
  EXPECT_EQ(page->leases[1].lease_id, a2);
  EXPECT_EQ(page->leases[1].remaining, absl::Seconds(50));
  EXPECT_EQ(page->leases[1].connections, 0u);

  EXPECT_EQ(ListAll("gateway-b", 100), std::vector<std::string>{b1});
  EXPECT_THAT(ListAll("nobody", 100), IsEmpty());
  EXPECT_EQ(ListAll(std::nullopt, 100).size(), 4u);

  // Past its deadline a lease is not listed, even before a tick reaps it.
  clock_.Advance(absl::Seconds(25));
  EXPECT_EQ(ListAll("gateway-a", 100), std::vector<std::string>{a2});
}

TEST_F(LeaseAdminTest, PagingReturnsEveryLeaseOnceInIdOrder) {
  std::vector<std::string> mine, all;
  for (int i = 0; i < 23; ++i) {
    mine.push_back(Grant("gateway-x"));
    all.push_back(mine.back());
    all.push_back(Grant(absl::StrCat("other-", i % 3)));
  }
  for (uint32_t page_size : {1u, 4u, 22u, 23u, 1000u}) {
    int pages = 0;
    EXPECT_THAT(ListAll("gateway-x", page_size, &pages), ElementsAreArray(mine))
        << page_size;
    EXPECT_EQ(pages, (23 + page_size - 1) / page_size) << page_size;
    EXPECT_THAT(ListAll(std::nullopt, page_size), ElementsAreArray(all))
        << page_size;
  }
  // A lease revoked between two pages is simply not on the next one.
  ListLeasesSpec spec;
  spec.holder = "gateway-x";
  spec.page_size = 5;
  absl::StatusOr<ListLeasesResult> page = registry_->ListLeases(spec);
  ASSERT_TRUE(page.ok());
  ASSERT_TRUE(registry_->RevokeLease(mine[5]).ok());
  spec.page_token = page->next_page_token;
  absl::StatusOr<ListLeasesResult> next = registry_->ListLeases(spec);
  ASSERT_TRUE(next.ok());
  ASSERT_FALSE(next->leases.empty());
  EXPECT_EQ(next->leases.front().lease_id, mine[6]);
}

TEST_F(LeaseAdminTest, PagesAreCutByBytesToo) {
  RegistryOptions options;
  options.max_page_bytes = 1000;  // about three leases of a 256-byte holder
  registry_ = std::make_unique<Registry>(options, clock_, ids_, nullptr);
  ASSERT_TRUE(registry_->Recover().ok());
  const std::string holder(256, 'h');
  std::vector<std::string> leases;
  for (int i = 0; i < 10; ++i) leases.push_back(Grant(holder));
  int pages = 0;
  EXPECT_THAT(ListAll(holder, 1000, &pages), ElementsAreArray(leases));
  EXPECT_GE(pages, 3);
}

TEST_F(LeaseAdminTest, RejectsATokenItDidNotIssue) {
  ListLeasesSpec spec;
  spec.page_token = "not-a-token";
  const absl::Status st = registry_->ListLeases(spec).status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorField(st), "page_token");
}

TEST_F(LeaseAdminTest, RevokeHolderEndsExactlyThatHoldersLeasesAndRecords) {
  const std::string dead1 = Grant("gateway-dead");
  const std::string dead2 = Grant("gateway-dead");
  const std::string dead3 = Grant("gateway-dead");  // nothing bound
  const std::string live = Grant("gateway-live");
  const std::string lookalike = Grant("gateway-dead ");
  std::vector<std::string> doomed = Bind(dead1, Alice());
  for (const std::string& id : Bind(dead1, Bob())) doomed.push_back(id);
  for (const std::string& id : Bind(dead2, Alice())) doomed.push_back(id);
  std::vector<std::string> kept = Bind(live, Alice());
  for (const std::string& id : Bind(lookalike, Bob())) kept.push_back(id);
  const std::vector<std::string> threads = threads_;

  absl::StatusOr<RevokeHolderResult> r =
      registry_->RevokeHolder("gateway-dead");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->revoked, ElementsAreArray({dead1, dead2, dead3}));
  EXPECT_EQ(r->released, doomed.size());
  EXPECT_FALSE(r->more);
  for (const std::string& id : doomed) {
    EXPECT_EQ(StateOf(id), State::kReleased) << id;
    EXPECT_EQ(registry_->Describe(id)->end_reason, "lease_revoked") << id;
  }
  for (const std::string& id : kept) EXPECT_EQ(StateOf(id), State::kLive) << id;
  for (const std::string& id : threads) {
    EXPECT_EQ(StateOf(id), State::kLive) << id;  // threads outlive them
  }
  EXPECT_THAT(ListAll("gateway-dead", 100), IsEmpty());
  EXPECT_THAT(ListAll(std::nullopt, 100),
              UnorderedElementsAreArray({live, lookalike}));
  EXPECT_EQ(registry_->KeepAlive(dead1).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_TRUE(registry_->KeepAlive(live).ok());

  // Again: nothing left to revoke.
  r = registry_->RevokeHolder("gateway-dead");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->revoked, IsEmpty());
  EXPECT_EQ(r->released, 0u);
  EXPECT_FALSE(r->more);
  // Revoked leases never expire later; the other holder's still do.
  clock_.Advance(absl::Hours(1));
  EXPECT_THAT(registry_->Tick(), UnorderedElementsAreArray(kept));
}

TEST_F(LeaseAdminTest, RevokeHolderNeedsAHolder) {
  const absl::Status st = registry_->RevokeHolder("").status();
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ErrorField(st), "holder");
}

TEST_F(LeaseAdminTest, RevokeHolderTakesABoundedNumberPerCall) {
  constexpr size_t kMax = Registry::kMaxLeasesPerRevoke;
  std::set<std::string> granted;
  for (size_t i = 0; i < kMax + 7; ++i) granted.insert(Grant("gateway-big"));
  const std::string other = Grant("gateway-small");

  absl::StatusOr<RevokeHolderResult> first =
      registry_->RevokeHolder("gateway-big");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->revoked.size(), kMax);
  EXPECT_TRUE(first->more);
  absl::StatusOr<RevokeHolderResult> second =
      registry_->RevokeHolder("gateway-big");
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->revoked.size(), 7u);
  EXPECT_FALSE(second->more);

  std::set<std::string> revoked(first->revoked.begin(), first->revoked.end());
  revoked.insert(second->revoked.begin(), second->revoked.end());
  EXPECT_EQ(revoked, granted);  // each once: 107 distinct, all of them
  EXPECT_EQ(ListAll(std::nullopt, 1000), std::vector<std::string>{other});
}

// With a store that commits on its own thread (as RocksDB and etcd do), the
// leases' ends are separate batches completing later; when the store fails
// them, nothing changes and the leases are back for the next call.
class LeaseAdminStoreTest : public LeaseAdminTest {
 protected:
  LeaseAdminStoreTest() : LeaseAdminTest(/*remote_store=*/true) {}
};

TEST_F(LeaseAdminStoreTest, AFailedRevokeChangesNothingAndCanBeRepeated) {
  const std::string l1 = Grant("gateway-dead");
  const std::string l2 = Grant("gateway-dead");
  std::vector<std::string> doomed = Bind(l1, Alice());
  for (const std::string& id : Bind(l2, Bob())) doomed.push_back(id);

  store_->FailCommits(true);
  absl::StatusOr<RevokeHolderResult> failed =
      registry_->RevokeHolder("gateway-dead");
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  // Nothing was revoked: the store's error as it came.
  EXPECT_THAT(std::string(failed.status().message()),
              ::testing::Not(HasSubstr("leases revoked")));
  for (const std::string& id : doomed) EXPECT_EQ(StateOf(id), State::kLive);
  EXPECT_THAT(ListAll("gateway-dead", 100), ElementsAreArray({l1, l2}));

  store_->FailCommits(false);
  absl::StatusOr<RevokeHolderResult> r =
      registry_->RevokeHolder("gateway-dead");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->revoked, ElementsAreArray({l1, l2}));
  EXPECT_EQ(r->released, doomed.size());
  for (const std::string& id : doomed) EXPECT_EQ(StateOf(id), State::kReleased);
}

}  // namespace
}  // namespace registrar
