// What a restart of the real server (kill -9, then start on the same data
// dir) recovers from the RocksDB store:
//  - leases, each with a fresh full TTL (a lease whose old deadline passed
//    while the server was down is still live), which then lapse normally;
//  - tombstones (RELEASED with ended_at and end_reason), and their
//    revisions; revisions continue above every earlier one;
//  - a generated tag key (no --key_file), kept in the data dir: IDs from
//    before still validate, and an ID whose record was dropped is UNKNOWN,
//    not FORGED;
//  - the start-up log line reports what was loaded.
// And `registrarctl inspect --data_dir=DIR`, offline: on a stopped server's
// data dir, on one a server has open (read-only open), and its refusals.

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/data_dir.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_util.h"

namespace registrar {
namespace {

namespace fs = std::filesystem;
using ::registrar::testing::CliResult;
using ::registrar::testing::KillNine;
using ::registrar::testing::ListAll;
using ::registrar::testing::MakeOwner;
using ::registrar::testing::OptionsFor;
using ::registrar::testing::ReadFile;
using ::registrar::testing::ServerProcess;
using ::registrar::testing::StartOrFail;
using ::registrar::testing::StatusText;
using ::registrar::testing::TestDir;
using ::registrar::testing::VerdictName;
using ::registrar::testing::VerdictOf;
using ::testing::HasSubstr;

std::string Grant(Client& client, uint32_t ttl) {
  v1::GrantLeaseRequest request;
  request.set_holder("gateway");
  request.set_ttl_seconds(ttl);
  auto response = client.GrantLease(request);
  EXPECT_TRUE(response.ok()) << StatusText(response);
  return response.ok() ? response->lease_id() : "";
}

std::string Connection(Client& client, const v1::Owner& owner,
                       const std::string& lease) {
  IssueOptions options;
  options.lease_id = lease;
  auto ids = client.IssueIds(v1::KIND_CONNECTION, owner, 1, options);
  EXPECT_TRUE(ids.ok()) << StatusText(ids);
  return ids.ok() ? ids->front() : "";
}

std::vector<std::string> Threads(Client& client, const v1::Owner& owner,
                                 int count) {
  auto ids = client.IssueIds(v1::KIND_THREAD, owner, count);
  EXPECT_TRUE(ids.ok()) << StatusText(ids);
  return ids.ok() ? *ids : std::vector<std::string>{};
}

v1::Record DescribeOrFail(Client& client, const std::string& id) {
  v1::DescribeRequest request;
  request.set_id(id);
  auto response = client.Describe(request);
  EXPECT_TRUE(response.ok()) << id << ": " << StatusText(response);
  return response.ok() ? response->record() : v1::Record{};
}

uint64_t MaxRevision(Client& client, const v1::Owner& owner) {
  auto records = ListAll(client, owner, /*include_ended=*/true);
  EXPECT_TRUE(records.ok()) << StatusText(records.status());
  uint64_t max = 0;
  if (records.ok()) {
    for (const v1::Record& r : *records) max = std::max(max, r.revision());
  }
  return max;
}

TEST(RecoveryTest, LeasesGetAFreshTtlAtRestartThenLapse) {
  // A 3 s TTL, longer in sanitizer builds (their restarts are slower).
  const int scale = testing::SanitizerTimeScale();
  const uint32_t ttl_s = 3 * scale;
  const absl::Duration ttl = absl::Seconds(ttl_s);
  TestDir dir("recovery-lease");
  auto server = StartOrFail(OptionsFor(dir));
  ASSERT_NE(server, nullptr);
  auto client = testing::MakeClient(*server);
  const v1::Owner owner = MakeOwner("recovery", "lease");
  const std::string lease = Grant(*client, ttl_s);
  const std::string conn = Connection(*client, owner, lease);
  ASSERT_FALSE(conn.empty());
  ASSERT_EQ(VerdictName(VerdictOf(*client, conn, owner)),
            VerdictName(v1::VERDICT_VALID));
  KillNine(*server);
  // Restarted with its clock an hour ahead: far past the lease's old
  // deadline at once, so no waiting for it. Recovery gives the lease a
  // fresh TTL from the restart, so it is still live.
  ServerProcess::Options later = OptionsFor(dir);
  later.args.push_back("--clock_offset=1h");
  server = StartOrFail(later);
  ASSERT_NE(server, nullptr);
  client = testing::MakeClient(*server);
  EXPECT_THAT(server->Log(), HasSubstr("with 1 live records, 0 tombstones, "
                                       "1 leases"));
  EXPECT_EQ(VerdictName(VerdictOf(*client, conn, owner)),
            VerdictName(v1::VERDICT_VALID))
      << "an hour past its old deadline the lease did not get a fresh TTL";
  v1::KeepAliveRequest keep;
  keep.set_lease_id(lease);
  const absl::Time sent = absl::Now();
  auto kept = client->KeepAlive(keep);
  ASSERT_TRUE(kept.ok()) << StatusText(kept) << "\n" << server->Log();
  EXPECT_EQ(kept->ttl_seconds(), ttl_s);
  const absl::Time renewed = absl::Now();

  // Not kept alive any more: it lapses one TTL after the KeepAlive, not
  // before (the server renewed it after `sent`), and soon after (its ticker
  // runs every 100 ms).
  ASSERT_TRUE(testing::PollUntil(
      [&] { return VerdictOf(*client, conn, owner) == v1::VERDICT_EXPIRED; },
      absl::Seconds(ttl_s + 5)));
  const absl::Time seen_expired = absl::Now();
  EXPECT_GE(seen_expired - sent, ttl) << "lapsed before its TTL";
  EXPECT_LE(seen_expired - renewed, ttl + absl::Seconds(2) * scale);
  const v1::Record record = DescribeOrFail(*client, conn);
  EXPECT_EQ(record.state(), v1::STATE_EXPIRED);
  EXPECT_EQ(record.end_reason(), "lease_expired");
  EXPECT_EQ(client->KeepAlive(keep).status().code(),
            absl::StatusCode::kNotFound);

  // The expiry is durable too (same clock as the run that expired it).
  KillNine(*server);
  server = StartOrFail(later);
  ASSERT_NE(server, nullptr);
  client = testing::MakeClient(*server);
  EXPECT_EQ(VerdictName(VerdictOf(*client, conn, owner)),
            VerdictName(v1::VERDICT_EXPIRED));
  EXPECT_EQ(client->KeepAlive(keep).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(server->Log(), HasSubstr("with 0 live records, 1 tombstones, "
                                       "0 leases"));
  EXPECT_EQ(testing::StopServer(*server), 0) << server->Log();
}

TEST(RecoveryTest, TombstonesAndRevisionsSurviveKillNine) {
  TestDir dir("recovery-tombstones");
  auto server = StartOrFail(OptionsFor(dir));
  ASSERT_NE(server, nullptr);
  auto client = testing::MakeClient(*server);
  const v1::Owner owner = MakeOwner("recovery", "tomb");
  const std::vector<std::string> threads = Threads(*client, owner, 4);
  ASSERT_EQ(threads.size(), 4u);
  const std::string lease = Grant(*client, 600);
  const std::string conn = Connection(*client, owner, lease);
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = owner;
  cleanup.mutable_ids()->add_ids(threads[0]);
  cleanup.mutable_ids()->add_ids(threads[1]);
  cleanup.set_reason("job finished");
  auto cleaned = client->Cleanup(cleanup);
  ASSERT_TRUE(cleaned.ok()) << StatusText(cleaned);
  ASSERT_EQ(cleaned->released_size(), 2);
  v1::RevokeLeaseRequest revoke;
  revoke.set_lease_id(lease);
  auto revoked = client->RevokeLease(revoke);
  ASSERT_TRUE(revoked.ok()) << StatusText(revoked);
  const v1::Record released_before = DescribeOrFail(*client, threads[0]);
  const v1::Record revoked_before = DescribeOrFail(*client, conn);
  const v1::Record live_before = DescribeOrFail(*client, threads[2]);
  const uint64_t max_revision = MaxRevision(*client, owner);
  ASSERT_GT(max_revision, 0u);

  KillNine(*server);
  server = StartOrFail(OptionsFor(dir));
  ASSERT_NE(server, nullptr);
  client = testing::MakeClient(*server);
  // 2 live threads; 2 released threads and the revoked connection.
  EXPECT_THAT(server->Log(), HasSubstr("with 2 live records, 3 tombstones, "
                                       "0 leases"))
      << server->Log();

  EXPECT_EQ(VerdictName(VerdictOf(*client, threads[0], owner)),
            VerdictName(v1::VERDICT_RELEASED));
  EXPECT_EQ(VerdictName(VerdictOf(*client, threads[1], owner)),
            VerdictName(v1::VERDICT_RELEASED));
  EXPECT_EQ(VerdictName(VerdictOf(*client, conn, owner)),
            VerdictName(v1::VERDICT_RELEASED));
  EXPECT_EQ(VerdictName(VerdictOf(*client, threads[2], owner)),
            VerdictName(v1::VERDICT_VALID));
  const v1::Record released = DescribeOrFail(*client, threads[0]);
  EXPECT_EQ(released.state(), v1::STATE_RELEASED);
  EXPECT_EQ(released.end_reason(), "job finished");
  EXPECT_EQ(released.ended_at().seconds(),
            released_before.ended_at().seconds());
  EXPECT_EQ(released.ended_at().nanos() / 1'000'000,
            released_before.ended_at().nanos() / 1'000'000);
  EXPECT_EQ(released.revision(), released_before.revision());
  const v1::Record revoked_after = DescribeOrFail(*client, conn);
  EXPECT_EQ(revoked_after.state(), v1::STATE_RELEASED);
  EXPECT_EQ(revoked_after.end_reason(), "lease_revoked");
  EXPECT_EQ(revoked_after.revision(), revoked_before.revision());
  EXPECT_EQ(DescribeOrFail(*client, threads[2]).revision(),
            live_before.revision());
  EXPECT_EQ(MaxRevision(*client, owner), max_revision);

  // Revisions continue above every earlier one, for new records and for
  // changes to old ones.
  const std::vector<std::string> fresh = Threads(*client, owner, 1);
  ASSERT_EQ(fresh.size(), 1u);
  const uint64_t fresh_revision = DescribeOrFail(*client, fresh[0]).revision();
  EXPECT_GT(fresh_revision, max_revision);
  v1::CleanupRequest cleanup2;
  *cleanup2.mutable_owner() = owner;
  cleanup2.mutable_ids()->add_ids(threads[2]);
  ASSERT_TRUE(client->Cleanup(cleanup2).ok());
  EXPECT_GT(DescribeOrFail(*client, threads[2]).revision(), fresh_revision);
  // Cleanup of the tombstone again: already ended, unchanged.
  auto again = client->Cleanup(cleanup);
  ASSERT_TRUE(again.ok()) << StatusText(again);
  EXPECT_EQ(again->released_size(), 0);
  EXPECT_EQ(again->already_ended_size(), 2);
  EXPECT_EQ(DescribeOrFail(*client, threads[0]).end_reason(), "job finished");
  EXPECT_EQ(testing::StopServer(*server), 0) << server->Log();
}

TEST(RecoveryTest, GeneratedKeyIsKeptInTheDataDir) {
  TestDir dir("recovery-key");
  ServerProcess::Options options =
      OptionsFor(dir, {"--tombstone_retention=0s"});
  options.key_file = false;
  options.key_path.clear();
  auto server = StartOrFail(options);
  ASSERT_NE(server, nullptr);
  EXPECT_THAT(server->Log(), HasSubstr("generated one and saved it"));
  const std::string key_file = dir.data_dir() + "/tag.key";
  struct stat st {};
  ASSERT_EQ(stat(key_file.c_str(), &st), 0) << key_file;
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto client = testing::MakeClient(*server);
  const v1::Owner owner = MakeOwner("recovery", "key");
  const v1::Owner other = MakeOwner("recovery", "someone-else");
  const std::vector<std::string> threads = Threads(*client, owner, 3);
  ASSERT_EQ(threads.size(), 3u);
  // threads[2] is released and, with zero retention, dropped at the next
  // tick: then only its tag speaks for it.
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = owner;
  cleanup.mutable_ids()->add_ids(threads[2]);
  ASSERT_TRUE(client->Cleanup(cleanup).ok());
  // The drop happens on the server's ticker, in its process: poll it
  // (bounded).
  v1::Verdict dropped = v1::VERDICT_RELEASED;
  testing::PollUntil(
      [&] {
        dropped = VerdictOf(*client, threads[2], owner);
        return dropped == v1::VERDICT_UNKNOWN;
      },
      absl::Seconds(5));
  ASSERT_EQ(VerdictName(dropped), VerdictName(v1::VERDICT_UNKNOWN));
  EXPECT_EQ(VerdictName(VerdictOf(*client, threads[2], other)),
            VerdictName(v1::VERDICT_FORGED));
  const std::string key_text = ReadFile(key_file);

  KillNine(*server);
  server = StartOrFail(options);
  ASSERT_NE(server, nullptr);
  client = testing::MakeClient(*server);
  EXPECT_THAT(server->Log(), HasSubstr("using the key generated earlier"));
  EXPECT_THAT(server->Log(), HasSubstr("with 2 live records, 0 tombstones"));
  EXPECT_EQ(ReadFile(key_file), key_text) << "the kept key was rewritten";
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(VerdictName(VerdictOf(*client, threads[i], owner)),
              VerdictName(v1::VERDICT_VALID));
  }
  // The same key: the dropped ID's tag still checks out for its owner.
  EXPECT_EQ(VerdictName(VerdictOf(*client, threads[2], owner)),
            VerdictName(v1::VERDICT_UNKNOWN));
  EXPECT_EQ(VerdictName(VerdictOf(*client, threads[2], other)),
            VerdictName(v1::VERDICT_FORGED));
  // A clean stop and start keeps it as well.
  EXPECT_EQ(testing::StopServer(*server), 0) << server->Log();
  server = StartOrFail(options);
  ASSERT_NE(server, nullptr);
  client = testing::MakeClient(*server);
  EXPECT_EQ(VerdictName(VerdictOf(*client, threads[0], owner)),
            VerdictName(v1::VERDICT_VALID));
  EXPECT_EQ(VerdictName(VerdictOf(*client, threads[2], owner)),
            VerdictName(v1::VERDICT_UNKNOWN));
  EXPECT_EQ(testing::StopServer(*server), 0) << server->Log();
}

// --- registrarctl inspect ----------------------------------------------------

// Runs `registrarctl args...` (stderr through a file in `dir`); its exit
// code, stdout and stderr.
CliResult Ctl(const TestDir& dir, const std::vector<std::string>& args) {
  return testing::RunCli(args, dir.path() + "/ctl.stderr");
}

// The value of "name: value" in inspect's text output.
std::string Field(const std::string& text, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (absl::StartsWith(line, name + ": ")) {
      return std::string(line.substr(name.size() + 2));
    }
  }
  return "<missing " + name + ">";
}

// The number after "key": in inspect's JSON output (first occurrence).
int64_t JsonNumber(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  const size_t at = json.find(needle);
  if (at == std::string::npos) return -1;
  size_t pos = at + needle.size();
  while (pos < json.size() && json[pos] == ' ') ++pos;
  size_t end = pos;
  while (end < json.size() && isdigit(static_cast<unsigned char>(json[end]))) {
    ++end;
  }
  int64_t value = -1;
  if (!absl::SimpleAtoi(json.substr(pos, end - pos), &value)) return -1;
  return value;
}

TEST(InspectTest, ShowsAStoppedAndARunningServersDataDir) {
  TestDir dir("recovery-inspect");
  auto server = StartOrFail(OptionsFor(dir, {"--node_id=42"}));
  ASSERT_NE(server, nullptr);
  auto client = testing::MakeClient(*server);
  const v1::Owner owner = MakeOwner("recovery", "inspect");
  const std::vector<std::string> threads = Threads(*client, owner, 5);
  ASSERT_EQ(threads.size(), 5u);
  const std::string lease = Grant(*client, 600);
  const std::string conn = Connection(*client, owner, lease);
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = owner;
  cleanup.mutable_ids()->add_ids(threads[0]);
  cleanup.mutable_ids()->add_ids(threads[1]);
  ASSERT_TRUE(client->Cleanup(cleanup).ok());
  const uint64_t last_revision = MaxRevision(*client, owner);

  auto expect_contents = [&](const CliResult& r, const std::string& when) {
    SCOPED_TRACE(when);
    ASSERT_EQ(r.exit_code, 0) << "stdout:\n" << r.out << "\nstderr:\n" << r.err;
    EXPECT_THAT(r.out, HasSubstr("data dir: "));
    EXPECT_EQ(Field(r.out, "node_id"), "42") << r.out;
    EXPECT_EQ(Field(r.out, "format version"), "1") << r.out;
    EXPECT_EQ(Field(r.out, "records"), "6") << r.out;
    EXPECT_EQ(Field(r.out, "  thread live"), "3") << r.out;
    EXPECT_EQ(Field(r.out, "  thread released"), "2") << r.out;
    EXPECT_EQ(Field(r.out, "  connection live"), "1") << r.out;
    EXPECT_EQ(Field(r.out, "leases"), "1") << r.out;
    EXPECT_EQ(Field(r.out, "last revision"), absl::StrCat(last_revision))
        << r.out;
    EXPECT_THAT(Field(r.out, "events"),
                HasSubstr(absl::StrCat("..", last_revision, ")")))
        << r.out;
  };

  // While the server has the dir open: a read-only open works.
  CliResult running = Ctl(dir, {"inspect", "--data_dir=" + dir.data_dir()});
  expect_contents(running, "while the server runs");
  // ...and the server did not notice.
  EXPECT_EQ(Threads(*client, owner, 1).size(), 1u);
  running = Ctl(dir, {"inspect", "--data_dir=" + dir.data_dir()});
  ASSERT_EQ(running.exit_code, 0) << running.err;
  EXPECT_EQ(Field(running.out, "records"), "7") << running.out;

  EXPECT_EQ(testing::StopServer(*server), 0) << server->Log();
  CliResult stopped = Ctl(dir, {"inspect", "--data_dir", dir.data_dir()});
  ASSERT_EQ(stopped.exit_code, 0) << stopped.err;
  EXPECT_EQ(Field(stopped.out, "records"), "7") << stopped.out;
  EXPECT_EQ(Field(stopped.out, "  thread live"), "4") << stopped.out;
  EXPECT_EQ(Field(stopped.out, "leases"), "1") << stopped.out;

  // --json (global or the command's own), one object.
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--json", "inspect",
                                 "--data_dir=" + dir.data_dir()},
        std::vector<std::string>{"inspect", "--data_dir=" + dir.data_dir(),
                                 "--json"}}) {
    CliResult json = Ctl(dir, args);
    ASSERT_EQ(json.exit_code, 0) << json.err;
    ASSERT_FALSE(json.out.empty());
    EXPECT_EQ(json.out.front(), '{') << json.out;
    EXPECT_EQ(json.out.substr(json.out.size() - 2), "}\n") << json.out;
    EXPECT_EQ(JsonNumber(json.out, "node_id"), 42) << json.out;
    EXPECT_EQ(JsonNumber(json.out, "records"), 7) << json.out;
    EXPECT_EQ(JsonNumber(json.out, "leases"), 1) << json.out;
    EXPECT_EQ(JsonNumber(json.out, "format_version"), 1) << json.out;
    EXPECT_GT(JsonNumber(json.out, "last_revision"),
              static_cast<int64_t>(last_revision))
        << json.out;
    EXPECT_GT(JsonNumber(json.out, "dir_bytes"), 0) << json.out;
    EXPECT_THAT(json.out, HasSubstr("\"thread\":{\"live\":4,\"released\":2}"))
        << json.out;
    EXPECT_THAT(json.out, HasSubstr(absl::StrCat("\"path\":\""))) << json.out;
  }

  // Inspect changed nothing: the server starts on the dir as before.
  server = StartOrFail(OptionsFor(dir, {"--node_id=42"}));
  ASSERT_NE(server, nullptr);
  EXPECT_THAT(server->Log(), HasSubstr("with 5 live records, 2 tombstones, "
                                       "1 leases"));
  EXPECT_EQ(testing::StopServer(*server), 0) << server->Log();
}

TEST(InspectTest, RefusesWhatIsNotADataDir) {
  TestDir dir("recovery-inspect-bad");
  // Missing.
  CliResult missing =
      Ctl(dir, {"inspect", "--data_dir=" + dir.path() + "/nope"});
  EXPECT_EQ(missing.exit_code, 1) << missing.out << missing.err;
  EXPECT_THAT(missing.err, HasSubstr("does not exist"));
  EXPECT_FALSE(fs::exists(dir.path() + "/nope")) << "inspect created it";
  // Foreign.
  const std::string foreign = dir.path() + "/foreign";
  fs::create_directories(foreign);
  std::ofstream(foreign + "/precious.txt") << "do not touch\n";
  CliResult refused = Ctl(dir, {"inspect", "--data_dir=" + foreign});
  EXPECT_EQ(refused.exit_code, 1) << refused.out << refused.err;
  EXPECT_THAT(refused.err, HasSubstr("is not a Registrar data directory"));
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(foreign)) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1u) << "inspect wrote into a foreign dir";
  // Empty: there is no database to show.
  const std::string empty = dir.path() + "/empty";
  fs::create_directories(empty);
  CliResult nothing = Ctl(dir, {"inspect", "--data_dir=" + empty});
  EXPECT_EQ(nothing.exit_code, 1) << nothing.out << nothing.err;
  EXPECT_THAT(nothing.err, HasSubstr("holds no database"));
  EXPECT_TRUE(fs::is_empty(empty));
  // Usage errors.
  CliResult usage = Ctl(dir, {"inspect"});
  EXPECT_EQ(usage.exit_code, 2) << usage.out << usage.err;
  EXPECT_THAT(usage.err, HasSubstr("--data_dir"));
  CliResult extra = Ctl(dir, {"inspect", "--data_dir=" + empty, "extra"});
  EXPECT_EQ(extra.exit_code, 2) << extra.out << extra.err;
}

}  // namespace
}  // namespace registrar
