// The server-side call deadline (--call_timeout): a call that waits in the
// commit queue past it ends DEADLINE_EXCEEDED and does nothing, so a backlog
// never turns into work done for callers that have long given up.
// (Cleanup, like GrantLease and RevokeLease, waits for a commit thread in
// fsync mode; Issue and OpenContext hold no thread while they wait for
// their fsync, so they never queue for one.)

#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/integration/test_util.h"

namespace registrar::testing {
namespace {

TEST(CallTimeoutTest, QueuedCallsPastTheTimeoutDoNothing) {
  // fsync mode: concurrent Cleanup calls queue for the group-commit writer
  // behind each other's fsyncs (0.25 ms or more each), past a 1 ms timeout;
  // a batch still queued then is not written.
  ServerProcess::Options options;
  options.args = {"--durability=fsync", "--call_timeout=1ms"};
  auto server = StartOrFail(options);
  ASSERT_NE(server, nullptr);

  constexpr int kThreads = 32;
  constexpr int kCallsEach = 20;
  std::atomic<int> ok{0}, exceeded{0}, other{0};
  std::vector<int> ok_by_thread(kThreads, 0);
  std::string exceeded_message;
  std::mutex mu;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto client = MakeClient(*server, absl::Seconds(10));
      const v1::Owner owner = MakeOwner("acme", absl::StrCat("caller-", t));
      // Every thread gets its records (an Issue past the timeout did
      // nothing, so it is simply asked again), then releases them one
      // Cleanup call each.
      absl::StatusOr<std::vector<std::string>> issued;
      for (int attempt = 0; attempt < 1000; ++attempt) {
        issued = client->IssueIds(v1::KIND_THREAD, owner, kCallsEach);
        if (issued.status().code() != absl::StatusCode::kDeadlineExceeded) {
          break;
        }
      }
      if (!issued.ok() || static_cast<int>(issued->size()) != kCallsEach) {
        ++other;
        return;
      }
      for (int i = 0; i < kCallsEach; ++i) {
        v1::CleanupRequest request;
        *request.mutable_owner() = owner;
        request.mutable_ids()->add_ids((*issued)[i]);
        auto ids = client->Cleanup(request);
        if (ids.ok()) {
          ++ok;
          ++ok_by_thread[t];
        } else if (ids.status().code() == absl::StatusCode::kDeadlineExceeded) {
          ++exceeded;
          std::lock_guard<std::mutex> lock(mu);
          exceeded_message = std::string(ids.status().message());
        } else {
          ++other;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_GT(exceeded.load(), 0);
  EXPECT_GT(ok.load(), 0);
  EXPECT_EQ(other.load(), 0);
  EXPECT_NE(exceeded_message.find("--call_timeout"), std::string::npos)
      << exceeded_message;
  // Exactly the acknowledged calls released a record.
  auto client = MakeClient(*server);
  for (int t = 0; t < kThreads; ++t) {
    auto live = ListAll(*client, MakeOwner("acme", absl::StrCat("caller-", t)),
                        /*include_ended=*/false);
    ASSERT_TRUE(live.ok()) << StatusText(live.status());
    EXPECT_EQ(static_cast<int>(live->size()), kCallsEach - ok_by_thread[t])
        << t;
  }
  EXPECT_EQ(StopServer(*server), 0);
}

TEST(CallTimeoutTest, NonPositiveTimeoutIsRefusedAtStart) {
  ServerProcess::Options options;
  options.args = {"--store=memory", "--call_timeout=0s"};
  auto server = ServerProcess::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_NE(std::string(server.status().message()).find("--call_timeout"),
            std::string::npos);
}

}  // namespace
}  // namespace registrar::testing
