// A thread's nice value, set on that thread alone, and refused with a
// message that says what is missing.

#include "service/common/thread_nice.h"

#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace registrar {
namespace {

using ::testing::HasSubstr;

int ThisThreadNice() {
  return getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
}

TEST(ThreadNiceTest, SetsTheCallingThreadOnly) {
  const int before = ThisThreadNice();
  const int raised = std::min(before + 3, 19);  // raising needs no privilege
  int inside = before;
  std::thread t([&inside, raised] {
    ASSERT_TRUE(SetThisThreadNice(raised).ok());
    inside = ThisThreadNice();
  });
  t.join();
  EXPECT_EQ(inside, raised);
  EXPECT_EQ(ThisThreadNice(), before);
}

TEST(ThreadNiceTest, CheckChangesNoThread) {
  const int before = ThisThreadNice();
  EXPECT_TRUE(CheckThreadNice(std::min(before + 2, 19)).ok());
  EXPECT_EQ(ThisThreadNice(), before);
}

// Without CAP_SYS_NICE and with RLIMIT_NICE at 0, a thread may not go below
// nice 0: the check says so, naming the value and the two ways to allow it.
// The capability is dropped on a thread of its own (capabilities are per
// thread; the probe thread inherits them from it).
TEST(ThreadNiceTest, LoweringWithoutThePrivilegeIsRefused) {
  rlimit old_limit{};
  ASSERT_EQ(getrlimit(RLIMIT_NICE, &old_limit), 0);
  rlimit zero = old_limit;
  zero.rlim_cur = 0;
  ASSERT_EQ(setrlimit(RLIMIT_NICE, &zero), 0);
  absl::Status refused;
  int probing_thread_nice = -100;
  std::thread t([&] {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    ASSERT_EQ(syscall(SYS_capget, &header, data), 0);
    data[CAP_SYS_NICE / 32].effective &= ~(1u << (CAP_SYS_NICE % 32));
    ASSERT_EQ(syscall(SYS_capset, &header, data), 0);
    probing_thread_nice = ThisThreadNice();
    refused = CheckThreadNice(probing_thread_nice - 5);
  });
  t.join();
  ASSERT_EQ(setrlimit(RLIMIT_NICE, &old_limit), 0);
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied) << refused;
  EXPECT_THAT(refused.message(),
              HasSubstr(std::to_string(probing_thread_nice - 5)));
  EXPECT_THAT(refused.message(), HasSubstr("CAP_SYS_NICE"));
  EXPECT_THAT(refused.message(), HasSubstr("RLIMIT_NICE"));
}

}  // namespace
}  // namespace registrar
