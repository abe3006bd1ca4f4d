// Online backup through the real CLI and server: `registrarctl backup DIR`
// (registrar.v1.Admin/Backup, admin role only) while clients keep issuing,
// then `registrar --restore_from=DIR` on a fresh data dir: every record
// acknowledged before the backup was asked for is there, nothing newer than
// the backup's revision is, and revisions continue after it. (The store's
// own backup test: tests/unit/store/rocksdb_backup_test.cc.)

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/auth/callers_file.h"
#include "tests/integration/data_dir.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_util.h"

namespace registrar {
namespace {

namespace fs = std::filesystem;
using ::registrar::testing::ListAll;
using ::registrar::testing::MakeOwner;
using ::registrar::testing::OptionsFor;
using ::registrar::testing::RunCli;
using ::registrar::testing::ServerProcess;
using ::registrar::testing::StartOrFail;
using ::registrar::testing::StatusText;
using ::registrar::testing::TestDir;
using ::testing::HasSubstr;

// An admin and a gateway caller.
std::string WriteCallers(const std::string& dir) {
  const std::string path = dir + "/callers.json";
  std::ofstream(path) << absl::StrCat(
      "{\"callers\": [{\"name\": \"ops\", \"role\": \"ROLE_ADMIN\", "
      "\"tenants\": [\"*\"], \"token_sha256\": [\"",
      HashToken("token-ops"),
      "\"]}, {\"name\": \"gw\", \"role\": \"ROLE_GATEWAY\", \"tenants\": "
      "[\"backup\"], \"token_sha256\": [\"",
      HashToken("token-gw"), "\"]}]}");
  return path;
}

std::unique_ptr<Client> ClientFor(const ServerProcess& server,
                                  const std::string& token) {
  ClientOptions options;
  options.target = server.grpc_address();
  options.deadline = absl::Seconds(10);
  options.bearer_token = token;
  return std::make_unique<Client>(options);
}

uint64_t RevisionOf(Client& client, const std::string& id) {
  v1::DescribeRequest d;
  d.set_id(id);
  auto described = client.Describe(d);
  EXPECT_TRUE(described.ok()) << StatusText(described.status());
  return described.ok() ? described->record().revision() : 0;
}

TEST(BackupTest, BackupUnderLoadThenRestoreHasEverythingAcknowledged) {
  TestDir source("backup-source");
  const std::string callers = WriteCallers(source.path());
  auto server = StartOrFail(OptionsFor(source, {"--callers_file=" + callers}));
  ASSERT_NE(server, nullptr);
  const v1::Owner owner = MakeOwner("backup", "gina");

  std::mutex mu;
  std::vector<std::string> acked;
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  auto load = [&] {
    auto client = ClientFor(*server, "token-gw");
    while (!stop.load()) {
      v1::IssueRequest request;
      request.set_kind(v1::KIND_THREAD);
      *request.mutable_owner() = owner;
      request.set_count(5);
      auto issued = client->Issue(request);
      if (!issued.ok()) {
        ++failures;
        continue;
      }
      std::lock_guard<std::mutex> lock(mu);
      acked.insert(acked.end(), issued->ids().begin(), issued->ids().end());
    }
  };
  std::vector<std::thread> clients;
  for (int i = 0; i < 3; ++i) clients.emplace_back(load);
  auto acked_count = [&] {
    std::lock_guard<std::mutex> lock(mu);
    return acked.size();
  };
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (acked_count() < 500 && absl::Now() < deadline) {
    std::this_thread::yield();
  }
  std::set<std::string> before;
  {
    std::lock_guard<std::mutex> lock(mu);
    before.insert(acked.begin(), acked.end());
  }
  ASSERT_GE(before.size(), 500u);

  const std::string backup_dir = source.path() + "/backup-1";
  const std::string err = source.path() + "/cli.err";
  // A gateway may not take backups.
  auto refused = RunCli({"--target=" + server->grpc_address(),
                         "--token=token-gw", "backup", backup_dir},
                        err);
  EXPECT_EQ(refused.exit_code, 1) << refused.out << refused.err;
  EXPECT_THAT(refused.err, HasSubstr("PERMISSION_DENIED"));
  EXPECT_FALSE(fs::exists(backup_dir));
  // A relative path is refused: it would name a place on the server.
  auto relative = RunCli({"--target=" + server->grpc_address(),
                          "--token=token-ops", "backup", "relative/dir"},
                         err);
  EXPECT_EQ(relative.exit_code, 1);
  EXPECT_THAT(relative.err, HasSubstr("INVALID_ARGUMENT"));

  auto taken = RunCli({"--target=" + server->grpc_address(),
                       "--token=token-ops", "backup", backup_dir},
                      err);
  ASSERT_EQ(taken.exit_code, 0) << taken.out << taken.err;
  // "DIR revision N records R bytes B"
  std::vector<std::string> words =
      absl::StrSplit(taken.out, absl::ByAnyChar(" \n"), absl::SkipEmpty());
  ASSERT_EQ(words.size(), 7u) << taken.out;
  EXPECT_EQ(words[0], backup_dir);
  uint64_t revision = 0, records = 0;
  ASSERT_TRUE(absl::SimpleAtoi(words[2], &revision)) << taken.out;
  ASSERT_TRUE(absl::SimpleAtoi(words[4], &records)) << taken.out;
  // Commits continue after the backup.
  const size_t at_backup = acked_count();
  while (acked_count() < at_backup + 100 && absl::Now() < deadline) {
    std::this_thread::yield();
  }
  stop = true;
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(testing::StopServer(*server), 0) << server->Log();

  TestDir target("backup-target");
  fs::copy_file(source.key_path(), target.key_path(),
                fs::copy_options::overwrite_existing);
  auto restored = StartOrFail(OptionsFor(
      target, {"--callers_file=" + callers, "--restore_from=" + backup_dir}));
  ASSERT_NE(restored, nullptr);
  auto client = ClientFor(*restored, "token-ops");
  auto listed = ListAll(*client, owner, /*include_ended=*/true);
  ASSERT_TRUE(listed.ok()) << StatusText(listed.status());
  ASSERT_EQ(listed->size(), records);
  std::set<std::string> found;
  for (const v1::Record& r : *listed) {
    found.insert(r.id());
    EXPECT_LE(r.revision(), revision) << r.id() << " is newer than the backup";
  }
  for (const std::string& id : before) {
    EXPECT_EQ(found.count(id), 1u) << id
                                   << " was acknowledged before the "
                                      "backup but is not in it";
  }
  EXPECT_GT(found.size(), before.size() - 1);
  v1::IssueRequest more;
  more.set_kind(v1::KIND_THREAD);
  *more.mutable_owner() = owner;
  more.set_count(1);
  auto issued = client->Issue(more);
  ASSERT_TRUE(issued.ok()) << StatusText(issued.status());
  EXPECT_EQ(RevisionOf(*client, issued->ids(0)), revision + 1);
  EXPECT_EQ(testing::StopServer(*restored), 0) << restored->Log();
}

// `registrar --restore_from` from a stopped server's data dir, and refused
// on a data dir that is not empty.
TEST(RestoreTest, ServerStartsFromACopyAndContinuesRevisions) {
  TestDir source("restore-source");
  const v1::Owner owner = MakeOwner("restore", "frank");
  std::set<std::string> ids;
  uint64_t last = 0;
  {
    auto server = StartOrFail(OptionsFor(source));
    ASSERT_NE(server, nullptr);
    auto client = ClientFor(*server, "");
    for (int i = 0; i < 5; ++i) {
      v1::IssueRequest request;
      request.set_kind(v1::KIND_THREAD);
      *request.mutable_owner() = owner;
      request.set_count(20);
      auto issued = client->Issue(request);
      ASSERT_TRUE(issued.ok()) << StatusText(issued.status());
      ids.insert(issued->ids().begin(), issued->ids().end());
      last = RevisionOf(*client, issued->ids(0));
    }
    ASSERT_EQ(ids.size(), 100u);
    EXPECT_EQ(testing::StopServer(*server), 0) << server->Log();
  }

  TestDir target("restore-target");
  fs::copy_file(source.key_path(), target.key_path(),
                fs::copy_options::overwrite_existing);
  auto restored =
      StartOrFail(OptionsFor(target, {"--restore_from=" + source.data_dir()}));
  ASSERT_NE(restored, nullptr);
  EXPECT_THAT(restored->Log(), HasSubstr("restored the backup"));
  auto client = ClientFor(*restored, "");
  auto records = ListAll(*client, owner, /*include_ended=*/true);
  ASSERT_TRUE(records.ok()) << StatusText(records.status());
  std::set<std::string> found;
  for (const v1::Record& r : *records) found.insert(r.id());
  EXPECT_EQ(found, ids);
  v1::IssueRequest more;
  more.set_kind(v1::KIND_THREAD);
  *more.mutable_owner() = owner;
  more.set_count(1);
  auto issued = client->Issue(more);
  ASSERT_TRUE(issued.ok()) << StatusText(issued.status());
  EXPECT_GT(RevisionOf(*client, issued->ids(0)), last);
  EXPECT_EQ(testing::StopServer(*restored), 0) << restored->Log();

  // The target is not empty now: a second restore into it is refused, and
  // what is there stays.
  auto again = ServerProcess::Start(
      OptionsFor(target, {"--restore_from=" + source.data_dir()}));
  ASSERT_FALSE(again.ok());
  EXPECT_THAT(std::string(again.status().message()), HasSubstr("not empty"));
  auto plain = StartOrFail(OptionsFor(target));
  ASSERT_NE(plain, nullptr);
  auto after = ListAll(*ClientFor(*plain, ""), owner, /*include_ended=*/true);
  ASSERT_TRUE(after.ok()) << StatusText(after.status());
  EXPECT_EQ(after->size(), 101u);
  EXPECT_EQ(testing::StopServer(*plain), 0);
}

}  // namespace
}  // namespace registrar
