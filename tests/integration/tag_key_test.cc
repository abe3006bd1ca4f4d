// The data dir remembers which tag key signed its IDs (issue 14: a server
// restarted with another key served on, and every ID issued before turned
// FORGED). The real server, restarted on the same data dir: another key is
// refused with a message naming --key_file; a rotated key file that still
// holds the old key is taken, old IDs stay VALID.

#include <csignal>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/id/id.h"
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

// The key version an ID was signed with.
int KeyVersionOf(const std::string& id) {
  absl::StatusOr<ParsedId> parsed = ParseId(id);
  EXPECT_TRUE(parsed.ok()) << id;
  return parsed.ok() ? static_cast<int>(UnpackId(parsed->bits).key_version)
                     : -1;
}

TEST(TagKeyTest, RotationWithoutARestart) {
  TestDir dir("tag-key-reload");
  auto server = ServerProcess::Start(OptionsFor(dir));
  ASSERT_TRUE(server.ok()) << server.status();
  ClientOptions options;
  options.target = (*server)->grpc_address();
  Client client(options);
  auto before = client.IssueIds(v1::KIND_THREAD, Alice(), 1);
  ASSERT_TRUE(before.ok()) << before.status();
  ASSERT_EQ(KeyVersionOf(before->front()), 0);
  absl::StatusOr<KeyRing> old_ring = KeyRing::LoadFile(dir.key_path());
  ASSERT_TRUE(old_ring.ok()) << old_ring.status();

  // Rotate in place: the old key kept, version 1 signing. The server picks
  // it up without a restart (it looks about once a second); wait, bounded,
  // for an ID signed with version 1.
  {
    std::ofstream out(dir.key_path() + ".tmp");
    out << old_ring->ToFileText() << "1 " << std::string(32, 'd') << "\n";
  }
  std::filesystem::rename(dir.key_path() + ".tmp", dir.key_path());
  std::string after;
  const absl::Time until = absl::Now() + absl::Seconds(20);
  while (absl::Now() < until) {
    auto ids = client.IssueIds(v1::KIND_THREAD, Alice(), 1);
    ASSERT_TRUE(ids.ok()) << ids.status();
    if (KeyVersionOf(ids->front()) == 1) {
      after = ids->front();
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));  // the child's reload check
  }
  ASSERT_FALSE(after.empty()) << (*server)->Log();
  EXPECT_EQ(VerdictOf(**server, before->front()), v1::VERDICT_VALID);
  EXPECT_EQ(VerdictOf(**server, after), v1::VERDICT_VALID);

  // A file without the key the data dir now remembers (version 1) is not
  // taken: logged, and IDs keep version 1.
  {
    std::ofstream out(dir.key_path() + ".tmp");
    out << KeyRing::Generate().ToFileText();
  }
  std::filesystem::rename(dir.key_path() + ".tmp", dir.key_path());
  const absl::Time log_until = absl::Now() + absl::Seconds(20);
  while (absl::Now() < log_until &&
         (*server)->Log().find("was not taken") == std::string::npos) {
    absl::SleepFor(absl::Milliseconds(50));  // the child's reload check
  }
  EXPECT_THAT((*server)->Log(), HasSubstr("was not taken"));
  auto still = client.IssueIds(v1::KIND_THREAD, Alice(), 1);
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(KeyVersionOf(still->front()), 1);
  EXPECT_EQ(VerdictOf(**server, before->front()), v1::VERDICT_VALID);
  Stop(**server);
}

}  // namespace
}  // namespace registrar
