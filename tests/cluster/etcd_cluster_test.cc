// The harness itself: a real cluster starts, names its leader, survives a
// leader kill, and a killed, restarted or paused member behaves as such.

#include "tests/cluster/etcd_cluster.h"

#include <signal.h>

#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace registrar::testing {
namespace {

// The state letter of /proc/<pid>/stat ('T': stopped).
char ProcessState(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  return paren == std::string::npos || paren + 2 >= stat.size()
             ? '?'
             : stat[paren + 2];
}

TEST(EtcdClusterTest, SingleMemberStartsAndLeadsItself) {
  auto cluster = EtcdCluster::StartSingle();
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  ASSERT_EQ((*cluster)->size(), 1);
  auto leader = (*cluster)->Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  EXPECT_EQ(*leader, 0);
}

TEST(EtcdClusterTest, ThreeMembersElectAnotherLeaderAfterKillAndRejoin) {
  auto started = EtcdCluster::Start();
  ASSERT_TRUE(started.ok()) << started.status();
  EtcdCluster& c = **started;
  ASSERT_EQ(c.size(), 3);
  std::set<uint64_t> ids;
  for (int i = 0; i < 3; ++i) ids.insert(c.member_id(i));
  EXPECT_EQ(ids.size(), 3u) << "every member has its own id";

  auto leader = c.Leader();
  ASSERT_TRUE(leader.ok()) << leader.status();
  const pid_t old_pid = c.pid(*leader);
  ASSERT_TRUE(c.Kill(*leader).ok());
  EXPECT_FALSE(c.running(*leader));
  EXPECT_NE(kill(old_pid, 0), 0) << "the killed member is gone";

  auto next = c.Leader();
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_NE(*next, *leader);

  ASSERT_TRUE(c.Restart(*leader).ok());
  EXPECT_TRUE(c.WaitHealthy(absl::Seconds(20)).ok());
}

TEST(EtcdClusterTest, PausedMemberIsStoppedUntilResumed) {
  auto started = EtcdCluster::StartSingle();
  ASSERT_TRUE(started.ok()) << started.status();
  EtcdCluster& c = **started;
  ASSERT_TRUE(c.Pause(0).ok());
  EXPECT_EQ(ProcessState(c.pid(0)), 'T');
  ASSERT_TRUE(c.Resume(0).ok());
  EXPECT_NE(ProcessState(c.pid(0)), 'T');
  EXPECT_TRUE(c.WaitHealthy(absl::Seconds(10)).ok());
}

TEST(EtcdClusterTest, DestructorLeavesNoProcess) {
  std::vector<pid_t> pids;
  {
    auto started = EtcdCluster::StartSingle();
    ASSERT_TRUE(started.ok()) << started.status();
    ASSERT_TRUE((*started)->Pause(0).ok());  // even a stopped one
    pids.push_back((*started)->pid(0));
  }
  ASSERT_EQ(pids.size(), 1u);
  EXPECT_NE(kill(pids[0], 0), 0);
}

}  // namespace
}  // namespace registrar::testing
