// The data dir remembers which tag key signed its IDs (issue 14: a server
// restarted with another key served on, and every ID issued before turned
// FORGED). The real server, restarted on the same data dir: another key is
// refused with a message naming --key_file; a rotated key file that still
// holds the old key is taken, old IDs stay VALID.

#include <csignal>
#include <fstream>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/id/key_ring.h"
#include "tests/integration/data_dir.h"
#include "tests/integration/server_process.h"

namespace registrar {
namespace {

using ::testing::HasSubstr;
using testing::OptionsFor;
using testing::ServerProcess;
using testing::TestDir;

v1::Owner Alice() {
  v1::Owner owner;
  owner.set_tenant("acme");
  owner.set_user_id("alice");
  return owner;
}

v1::Verdict VerdictOf(const ServerProcess& server, const std::string& id) {
  ClientOptions options;
  options.target = server.grpc_address();
  Client client(options);
  v1::ValidateRequest req;
  *req.mutable_owner() = Alice();
  req.add_items()->set_id(id);
  auto resp = client.Validate(req);
  EXPECT_TRUE(resp.ok()) << resp.status();
  return resp.ok() && resp->results_size() == 1 ? resp->results(0).verdict()
                                                : v1::VERDICT_UNSPECIFIED;
}

void Stop(ServerProcess& server) {
  server.Signal(SIGTERM);
  EXPECT_EQ(server.WaitForExit(absl::Seconds(20)), 0) << server.Log();
}

TEST(TagKeyTest, AnotherKeyIsRefusedARotationIsTaken) {
  TestDir dir("tag-key");
  std::string id;
  {
    auto server = ServerProcess::Start(OptionsFor(dir));
    ASSERT_TRUE(server.ok()) << server.status();
    ClientOptions options;
    options.target = (*server)->grpc_address();
    Client client(options);
    auto ids = client.IssueIds(v1::KIND_THREAD, Alice(), 1);
    ASSERT_TRUE(ids.ok()) << ids.status();
    id = ids->front();
    Stop(**server);
  }
  absl::StatusOr<KeyRing> old_ring = KeyRing::LoadFile(dir.key_path());
  ASSERT_TRUE(old_ring.ok()) << old_ring.status();

  // Another key: the server refuses to start and says why.
  const std::string other_key = dir.path() + "/other.key";
  const KeyRing other = KeyRing::Generate();
  std::ofstream(other_key) << other.ToFileText();
  ServerProcess::Options options = OptionsFor(dir);
  options.key_path = other_key;
  auto refused = ServerProcess::Start(options);
  ASSERT_FALSE(refused.ok());
  const std::string message(refused.status().message());
  EXPECT_THAT(message, HasSubstr(old_ring->Fingerprint(0)));
  EXPECT_THAT(message, HasSubstr("FORGED"));
  EXPECT_THAT(message, HasSubstr("--key_file"));

  // A rotation (the old key kept, a new one signing): taken; the old ID
  // still validates.
  const std::string rotated_key = dir.path() + "/rotated.key";
  std::ofstream(rotated_key)
      << old_ring->ToFileText() << "1 " << std::string(32, 'e') << "\n";
  options.key_path = rotated_key;
  {
    auto server = ServerProcess::Start(options);
    ASSERT_TRUE(server.ok()) << server.status();
    EXPECT_EQ(VerdictOf(**server, id), v1::VERDICT_VALID);
    Stop(**server);
  }
  // The original key alone is now refused too: IDs signed by the new one
  // may exist.
  options.key_path = dir.key_path();
  EXPECT_FALSE(ServerProcess::Start(options).ok());
}

}  // namespace
}  // namespace registrar
