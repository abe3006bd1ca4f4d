// GroupCommitter: blocking Commit and queued Submit share one queue, one
// revision sequence and one writer; Submit's callbacks run on the writer
// thread, never on a thread blocked in Commit.

#include "service/store/group_commit.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace registrar {
namespace {

// A batch of `n` issued events (records only need distinct IDs here).
WriteBatch Batch(int n, uint64_t first_id) {
  WriteBatch b;
  for (int i = 0; i < n; ++i) {
    Event e;
    e.record.id = Id128{1, first_id + i};
    b.events.push_back(e);
  }
  return b;
}

// The writer thread takes the nice value it was given (a higher one here:
// raising it needs no privilege); the submitting thread keeps its own.
TEST(GroupCommitTest, WriterThreadRunsAtItsNiceValue) {
  const auto nice_here = [] {
    return getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
  };
  const int submitter = nice_here();
  const int wanted = std::min(submitter + 4, 19);
  std::atomic<int> writer{-100};
  GroupCommitter committer(
      0,
      [&](const std::vector<WriteBatch*>&) {
        writer = nice_here();
        return absl::OkStatus();
      },
      wanted);
  WriteBatch batch = Batch(1, 1);
  absl::Notification done;
  committer.Submit(&batch, [&](absl::Status s) {
    EXPECT_TRUE(s.ok()) << s;
    done.Notify();
  });
  done.WaitForNotification();
  EXPECT_EQ(writer.load(), wanted);
  EXPECT_EQ(nice_here(), submitter);
}

TEST(GroupCommitTest, SubmittedBatchesGetGapFreeRevisionsInQueueOrder) {
  std::atomic<int> writes{0};
  GroupCommitter committer(100, [&](const std::vector<WriteBatch*>&) {
    ++writes;
    return absl::OkStatus();
  });
  constexpr int kBatches = 200;
  std::vector<WriteBatch> batches;
  for (int i = 0; i < kBatches; ++i) batches.push_back(Batch(3, 10 * i));
  absl::Mutex mu;
  std::vector<uint64_t> first_revisions;  // in callback order
  std::vector<std::thread::id> callback_threads;
  for (int i = 0; i < kBatches; ++i) {
    committer.Submit(&batches[i], [&, i](absl::Status s) {
      ASSERT_TRUE(s.ok()) << s;
      absl::MutexLock lock(&mu);
      first_revisions.push_back(batches[i].events[0].revision);
      callback_threads.push_back(std::this_thread::get_id());
    });
  }
  committer.Stop();  // writes what is queued and runs every callback
  ASSERT_EQ(first_revisions.size(), size_t{kBatches});
  for (int i = 0; i < kBatches; ++i) {
    // Queue order, three revisions a batch, starting after 100.
    EXPECT_EQ(first_revisions[i], 101 + 3 * static_cast<uint64_t>(i));
    EXPECT_EQ(batches[i].events[2].revision, first_revisions[i] + 2);
    EXPECT_NE(callback_threads[i], std::this_thread::get_id());
  }
  EXPECT_EQ(committer.last_revision(), 100 + 3 * uint64_t{kBatches});
  EXPECT_LE(writes.load(), kBatches);
  EXPECT_EQ(committer.stats().batches, uint64_t{kBatches});
}

TEST(GroupCommitTest, FailedGroupConsumesNoRevisionAndReportsEveryBatch) {
  std::atomic<bool> fail{true};
  GroupCommitter committer(7, [&](const std::vector<WriteBatch*>&) {
    return fail.load() ? absl::UnavailableError("disk full") : absl::OkStatus();
  });
  WriteBatch failed = Batch(2, 1);
  absl::Notification failed_done;
  absl::Status failed_status;
  committer.Submit(&failed, [&](absl::Status s) {
    failed_status = s;
    failed_done.Notify();
  });
  failed_done.WaitForNotification();
  EXPECT_EQ(failed_status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(failed.events[0].revision, 0u);
  EXPECT_EQ(committer.last_revision(), 7u);

  WriteBatch blocking = Batch(1, 5);
  EXPECT_EQ(committer.Commit(&blocking).code(), absl::StatusCode::kUnavailable);
  fail = false;
  WriteBatch next = Batch(1, 9);
  ASSERT_TRUE(committer.Commit(&next).ok());
  EXPECT_EQ(next.events[0].revision, 8u);  // no gap after the failures
}

TEST(GroupCommitTest, BlockingLeaderLeavesCallbacksToTheWriterThread) {
  // The first write blocks until released, so the Submit and the Commit
  // behind it queue up together; whichever leads their group, the Submit's
  // callback must not run on the Commit's thread (a caller of Commit may
  // hold locks the callback takes).
  absl::Notification release;
  std::atomic<int> write_calls{0};
  std::atomic<size_t> second_group_size{0};
  GroupCommitter committer(0, [&](const std::vector<WriteBatch*>& group) {
    const int call = write_calls++;
    if (call == 0) release.WaitForNotification();
    if (call == 1) second_group_size = group.size();
    return absl::OkStatus();
  });
  WriteBatch first = Batch(1, 1), queued = Batch(1, 2), blocking = Batch(1, 3);
  absl::Notification first_done, queued_done;
  std::thread::id queued_thread;
  committer.Submit(&first, [&](absl::Status) { first_done.Notify(); });
  while (write_calls.load() == 0) std::this_thread::yield();
  committer.Submit(&queued, [&](absl::Status s) {
    EXPECT_TRUE(s.ok());
    queued_thread = std::this_thread::get_id();
    queued_done.Notify();
  });
  std::thread::id commit_thread;
  std::thread committing([&] {
    commit_thread = std::this_thread::get_id();
    EXPECT_TRUE(committer.Commit(&blocking).ok());
  });
  // Both queue behind the blocked first write before it is released.
  while (committer.queued() < 2) std::this_thread::yield();
  release.Notify();
  committing.join();
  first_done.WaitForNotification();
  queued_done.WaitForNotification();
  EXPECT_NE(queued_thread, commit_thread);
  // The Submit and the Commit were written as one group: the case named.
  EXPECT_EQ(write_calls.load(), 2);
  EXPECT_EQ(second_group_size.load(), 2u);
  EXPECT_LT(queued.events[0].revision, blocking.events[0].revision);
  EXPECT_LT(first.events[0].revision, queued.events[0].revision);
}

}  // namespace
}  // namespace registrar
