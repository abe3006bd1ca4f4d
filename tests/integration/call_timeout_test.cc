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
  // behind each other's fsyncs (0.25 ms or more each), past a 1 ms timeout
  // (scaled in sanitizer builds); a batch still queued then is not written.
  // Each call is repeated until it is answered OK: the OK answer must then
  // list the record as released by it, not as already ended, which proves
  // the timed-out attempts before it did nothing. How many time out
  // depends on the machine; only that some did is asserted.
  ServerProcess::Options options;
  options.args = {"--durability=fsync",
                  absl::StrCat("--call_timeout=", SanitizerTimeScale(), "ms")};
  auto server = StartOrFail(options);
  ASSERT_NE(server, nullptr);

  constexpr int kThreads = 32;
  constexpr int kCallsEach = 20;
  constexpr int kMaxAttempts = 1000;
  std::atomic<int> ok{0}, exceeded{0}, other{0}, gave_up{0};
  std::string exceeded_message;
  std::string other_message;
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
      for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
        issued = client->IssueIds(v1::KIND_THREAD, owner, kCallsEach);
        if (issued.status().code() != absl::StatusCode::kDeadlineExceeded) {
          break;
        }
        ++exceeded;
      }
      if (!issued.ok() || static_cast<int>(issued->size()) != kCallsEach) {
        ++other;
        std::lock_guard<std::mutex> lock(mu);
        other_message = StatusText(issued.status());
        return;
      }
      for (int i = 0; i < kCallsEach; ++i) {
        v1::CleanupRequest request;
        *request.mutable_owner() = owner;
        request.mutable_ids()->add_ids((*issued)[i]);
        bool answered = false;
        for (int attempt = 0; attempt < kMaxAttempts && !answered; ++attempt) {
          auto cleaned = client->Cleanup(request);
          if (cleaned.ok()) {
            answered = true;
            ++ok;
            // Released by this call: no earlier, timed-out attempt did it.
            if (cleaned->released_size() != 1 ||
                cleaned->already_ended_size() != 0) {
              ++other;
              std::lock_guard<std::mutex> lock(mu);
              other_message = absl::StrCat("after timed-out attempts: ",
                                           cleaned->ShortDebugString());
            }
          } else if (cleaned.status().code() ==
                     absl::StatusCode::kDeadlineExceeded) {
            ++exceeded;
            std::lock_guard<std::mutex> lock(mu);
            exceeded_message = std::string(cleaned.status().message());
          } else {
            answered = true;
            ++other;
            std::lock_guard<std::mutex> lock(mu);
            other_message = StatusText(cleaned.status());
          }
        }
        if (!answered) ++gave_up;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_GT(exceeded.load(), 0) << "no call timed out: nothing was tested";
  EXPECT_EQ(ok.load(), kThreads * kCallsEach);
  EXPECT_EQ(other.load(), 0) << other_message;
  EXPECT_EQ(gave_up.load(), 0);
  EXPECT_NE(exceeded_message.find("--call_timeout"), std::string::npos)
      << exceeded_message;
  // Every record was released, once, by its acknowledged call.
  auto client = MakeClient(*server);
  for (int t = 0; t < kThreads; ++t) {
    auto all = ListAll(*client, MakeOwner("acme", absl::StrCat("caller-", t)),
                       /*include_ended=*/true);
    ASSERT_TRUE(all.ok()) << StatusText(all.status());
    ASSERT_EQ(static_cast<int>(all->size()), kCallsEach) << t;
    for (const v1::Record& r : *all) {
      EXPECT_EQ(v1::State_Name(r.state()), "STATE_RELEASED") << r.id();
    }
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
