// The smallest end-to-end check: the binary starts, answers, stops on
// SIGTERM with exit code 0.

#include <signal.h>

#include "client/client.h"
#include "gtest/gtest.h"
#include "tests/integration/server_process.h"

namespace registrar {
namespace {

using testing::ServerProcess;

TEST(SmokeTest, IssuesAndExitsCleanlyOnSigterm) {
  auto server = ServerProcess::Start();
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions options;
  options.target = (*server)->grpc_address();
  Client client(options);
  v1::Owner owner;
  owner.set_tenant("acme");
  owner.set_user_id("alice");
  auto ids = client.IssueIds(v1::KIND_THREAD, owner, 3);
  ASSERT_TRUE(ids.ok()) << ids.status();
  EXPECT_EQ(ids->size(), 3u);
  (*server)->Signal(SIGTERM);
  EXPECT_EQ((*server)->WaitForExit(absl::Seconds(20)), 0) << (*server)->Log();
}

}  // namespace
}  // namespace registrar
