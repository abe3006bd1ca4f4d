// `registrar --restore_from`: the real server started from a copy of a data
// dir, and refused on a data dir that is not empty. (Taking a backup under
// load is tested on the store: tests/unit/store/rocksdb_backup_test.cc.)

#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/data_dir.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_util.h"

namespace registrar {
namespace {

namespace fs = std::filesystem;
using ::registrar::testing::ListAll;
using ::registrar::testing::MakeOwner;
using ::registrar::testing::OptionsFor;
using ::registrar::testing::ServerProcess;
using ::registrar::testing::StartOrFail;
using ::registrar::testing::StatusText;
using ::registrar::testing::TestDir;
using ::testing::HasSubstr;

std::unique_ptr<Client> ClientFor(const ServerProcess& server) {
  ClientOptions options;
  options.target = server.grpc_address();
  options.deadline = absl::Seconds(10);
  options.max_attempts = 1;
  return std::make_unique<Client>(options);
}

// Revision of the first ID of `issued`, through Describe.
uint64_t RevisionOf(Client& client, const std::string& id) {
  v1::DescribeRequest d;
  d.set_id(id);
  auto described = client.Describe(d);
  EXPECT_TRUE(described.ok()) << StatusText(described.status());
  return described.ok() ? described->record().revision() : 0;
}

TEST(RestoreTest, ServerStartsFromACopyAndContinuesRevisions) {
  TestDir source("restore-source");
  const v1::Owner owner = MakeOwner("restore", "frank");
  std::set<std::string> ids;
  uint64_t last = 0;
  {
    auto server = StartOrFail(OptionsFor(source));
    ASSERT_NE(server, nullptr);
    auto client = ClientFor(*server);
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
  auto client = ClientFor(*restored);
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
  auto after = ListAll(*ClientFor(*plain), owner, /*include_ended=*/true);
  ASSERT_TRUE(after.ok()) << StatusText(after.status());
  EXPECT_EQ(after->size(), 101u);
  EXPECT_EQ(testing::StopServer(*plain), 0);
}

}  // namespace
}  // namespace registrar
