// LeaseKeeper's renewal schedule on a FakeClock, against a real in-process
// gRPC server (FakeRegistrar): without its thread the test steps the clock
// and calls Tick(), so "not renewed before ttl/3" and "retried sooner after
// a failure" are checked exactly, with no sleeping and no timing bound.

#include "client/lease_keeper.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/clock.h"
#include "tests/unit/client/fake_registrar.h"

namespace registrar {
namespace {

using client_test::FakeServer;

class LeaseKeeperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(server_.started());
    ClientOptions options;
    options.target = server_.target();
    options.max_attempts = 1;  // a failure is reported, not retried
    client_ = std::make_unique<Client>(options);
  }

  // A keeper of a lease with `ttl_seconds`, without its thread.
  std::unique_ptr<LeaseKeeper> StartKeeper(
      uint32_t ttl_seconds, LeaseKeeper::LossCallback on_loss = nullptr) {
    LeaseKeeper::Options options;
    options.clock = &clock_;
    options.renewal_thread = false;
    options.on_loss = std::move(on_loss);
    auto keeper =
        LeaseKeeper::Start(*client_, "gw-1", ttl_seconds, std::move(options));
    EXPECT_TRUE(keeper.ok()) << keeper.status();
    return keeper.ok() ? *std::move(keeper) : nullptr;
  }

  size_t KeepAlives() { return server_.service().keep_alive_calls().size(); }

  FakeServer server_;
  std::unique_ptr<Client> client_;
  FakeClock clock_;
};

TEST_F(LeaseKeeperTest, RenewsEveryThirdOfTheTtlOnItsClock) {
  const absl::Time granted = clock_.Now();
  std::unique_ptr<LeaseKeeper> keeper = StartKeeper(3);
  ASSERT_NE(keeper, nullptr);
  EXPECT_EQ(keeper->renewed_until(), granted + absl::Seconds(3));
  EXPECT_EQ(keeper->next_renewal(), granted + absl::Seconds(1));

  EXPECT_FALSE(keeper->Tick());
  clock_.Advance(absl::Seconds(1) - absl::Milliseconds(1));
  EXPECT_FALSE(keeper->Tick()) << "renewed before a third of the TTL";
  EXPECT_EQ(KeepAlives(), 0u);

  clock_.Advance(absl::Milliseconds(1));
  EXPECT_TRUE(keeper->Tick());
  EXPECT_EQ(KeepAlives(), 1u);
  const absl::Time first = granted + absl::Seconds(1);
  EXPECT_EQ(keeper->renewed_until(), first + absl::Seconds(3));
  EXPECT_EQ(keeper->next_renewal(), first + absl::Seconds(1));
  EXPECT_FALSE(keeper->Tick()) << "renewed twice at one time";

  clock_.Advance(absl::Seconds(1));
  EXPECT_TRUE(keeper->Tick());
  EXPECT_EQ(KeepAlives(), 2u);
  EXPECT_EQ(keeper->renewed_until(), first + absl::Seconds(4));
  EXPECT_TRUE(keeper->healthy());
  EXPECT_EQ(keeper->ttl_seconds(), 3u);
}

TEST_F(LeaseKeeperTest, RenewalWaitsAsLongAsTheLeaseSurelyLives) {
  // A 30 s lease renewed at 10 s has 20 s left: the KeepAlive's deadline
  // is the client's (5 s), not the 10 s interval nor less.
  std::unique_ptr<LeaseKeeper> keeper = StartKeeper(30);
  ASSERT_NE(keeper, nullptr);
  clock_.Advance(absl::Seconds(10));
  const absl::Time sent = absl::Now();
  ASSERT_TRUE(keeper->Tick());
  const std::vector<client_test::ObservedCall> calls =
      server_.service().keep_alive_calls();
  ASSERT_EQ(calls.size(), 1u);
  // (gRPC carries it as a timeout, rounded: compare with half a second's
  // margin, far from the 10 s and 20 s it must not be.)
  EXPECT_GE(calls[0].deadline, sent + absl::Milliseconds(4500));
  EXPECT_LE(calls[0].deadline, absl::Now() + absl::Milliseconds(5500));
}

TEST_F(LeaseKeeperTest, TransientFailureRetriesSoonerAndStaysHealthy) {
  const absl::Time granted = clock_.Now();
  std::unique_ptr<LeaseKeeper> keeper = StartKeeper(3);
  ASSERT_NE(keeper, nullptr);
  server_.service().FailKeepAlive(grpc::StatusCode::UNAVAILABLE);
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(keeper->Tick());
  EXPECT_TRUE(keeper->healthy());
  // Not renewed: still the grant's TTL; retried after a third of the
  // interval instead of a whole one.
  EXPECT_EQ(keeper->renewed_until(), granted + absl::Seconds(3));
  const absl::Time retry_at = clock_.Now() + absl::Seconds(1) / 3;
  EXPECT_EQ(keeper->next_renewal(), retry_at);
  // (1/3 s is 333.33 ms: not due at 333 ms, due at 334 ms.)
  clock_.Advance(absl::Milliseconds(333));
  EXPECT_FALSE(keeper->Tick());
  server_.service().FailKeepAlive(grpc::StatusCode::OK);
  clock_.Advance(absl::Milliseconds(1));
  ASSERT_TRUE(keeper->Tick());
  EXPECT_EQ(KeepAlives(), 2u);
  EXPECT_EQ(keeper->renewed_until(), clock_.Now() + absl::Seconds(3));
}

TEST_F(LeaseKeeperTest, NotFoundIsALossReportedOnce) {
  std::vector<absl::Status> losses;
  std::unique_ptr<LeaseKeeper> keeper =
      StartKeeper(3, [&](const absl::Status& s) { losses.push_back(s); });
  ASSERT_NE(keeper, nullptr);
  server_.service().FailKeepAlive(grpc::StatusCode::NOT_FOUND);
  clock_.Advance(absl::Seconds(1));
  ASSERT_TRUE(keeper->Tick());
  ASSERT_EQ(losses.size(), 1u);
  EXPECT_EQ(losses[0].code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(keeper->healthy());
  EXPECT_EQ(keeper->status().code(), absl::StatusCode::kNotFound);
  // No more renewals once lost.
  clock_.Advance(absl::Seconds(10));
  EXPECT_FALSE(keeper->Tick());
  EXPECT_EQ(KeepAlives(), 1u);
  EXPECT_EQ(losses.size(), 1u);
  auto conn = keeper->OpenConnection(v1::Owner());
  EXPECT_EQ(conn.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(LeaseKeeperTest, StoppedKeeperDoesNotRenew) {
  std::unique_ptr<LeaseKeeper> keeper = StartKeeper(3);
  ASSERT_NE(keeper, nullptr);
  keeper->Stop();
  clock_.Advance(absl::Seconds(5));
  EXPECT_FALSE(keeper->Tick());
  EXPECT_EQ(KeepAlives(), 0u);
  EXPECT_TRUE(keeper->healthy()) << "Stop() does not end the lease";
}

}  // namespace
}  // namespace registrar
