// The group-commit thread's nice value (--commit_thread_nice) on the real
// binary: read from /proc once a change has started the thread.

#include <dirent.h>
#include <sys/resource.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/common/thread_nice.h"
#include "service/metrics/process_metrics.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_util.h"

namespace registrar {
namespace {

using ::testing::HasSubstr;
using testing::ServerProcess;

// The nice value of the server's thread named `name`, if there is one.
std::optional<int> ThreadNice(pid_t pid, const std::string& name) {
  const std::string tasks = absl::StrCat("/proc/", pid, "/task");
  DIR* dir = opendir(tasks.c_str());
  if (dir == nullptr) return std::nullopt;
  std::optional<int> nice;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    const std::string task = absl::StrCat(tasks, "/", e->d_name);
    if (absl::StripTrailingAsciiWhitespace(testing::ReadFile(task + "/comm")) !=
        name) {
      continue;
    }
    if (std::optional<ProcStat> stat =
            ParseProcStat(testing::ReadFile(task + "/stat"), 100, 4096)) {
      nice = stat->nice;
    }
  }
  closedir(dir);
  return nice;
}

// Starts the server with `args`, issues one ID (which starts the writer
// thread) and returns the server.
std::unique_ptr<ServerProcess> StartAndIssue(std::vector<std::string> args) {
  ServerProcess::Options options;
  options.args = std::move(args);
  auto server = ServerProcess::Start(options);
  EXPECT_TRUE(server.ok()) << server.status();
  if (!server.ok()) return nullptr;
  auto ids = testing::MakeClient(**server)->IssueIds(
      v1::KIND_THREAD, testing::MakeOwner("acme", "alice"), 1);
  EXPECT_TRUE(ids.ok()) << ids.status();
  return *std::move(server);
}

// By default the thread runs at -5 where the process may lower it (CI runs
// as root), and otherwise stays at 0 with the reason in the log.
TEST(CommitThreadTest, DefaultNiceIsAppliedOrTheLogSaysWhyNot) {
  std::unique_ptr<ServerProcess> server = StartAndIssue({});
  ASSERT_NE(server, nullptr);
  const std::optional<int> nice = ThreadNice(server->pid(), "group-commit");
  ASSERT_TRUE(nice.has_value()) << "no group-commit thread";
  const absl::Status allowed = CheckThreadNice(-5);
  if (allowed.ok()) {
    EXPECT_EQ(*nice, -5);
    EXPECT_THAT(server->Log(), ::testing::Not(HasSubstr("not applied")));
  } else {
    EXPECT_EQ(*nice, 0);
    EXPECT_THAT(server->Log(),
                HasSubstr("--commit_thread_nice=-5 not applied"));
  }
  // The threads that take requests keep the value the server inherited.
  EXPECT_EQ(ThreadNice(server->pid(), "nexting_thread"),
            getpriority(PRIO_PROCESS, 0));
}

TEST(CommitThreadTest, FlagSetsTheValue) {
  // Raising needs no privilege: this holds on any machine.
  std::unique_ptr<ServerProcess> server =
      StartAndIssue({"--commit_thread_nice=4", "--durability=os"});
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(ThreadNice(server->pid(), "group-commit"), 4);
}

TEST(CommitThreadTest, OutOfRangeValueIsRefusedAtStart) {
  ServerProcess::Options options;
  options.args = {"--commit_thread_nice=-21"};
  auto server = ServerProcess::Start(options);
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(std::string(server.status().message()),
              HasSubstr("--commit_thread_nice must be within -20 and 19"));
}

}  // namespace
}  // namespace registrar
