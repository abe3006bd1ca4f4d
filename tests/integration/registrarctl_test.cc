// The real registrarctl CLI against the real server: every command in text
// and --json form, exit status 0 / 1 (RPC error, code name on stderr) /
// 2 (usage error, message on stderr).

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_util.h"

namespace registrar {
namespace {

using ::registrar::testing::CliResult;
using ::registrar::testing::MakeOwner;
using ::registrar::testing::ShellQuote;
using ::registrar::testing::StatusText;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

// Non-empty lines of `text`.
std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!line.empty()) out.emplace_back(line);
  }
  return out;
}

// The string value of "key":"..." in compact JSON (first occurrence).
std::string JsonString(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":\"";
  const size_t at = json.find(needle);
  if (at == std::string::npos) return "";
  const size_t start = at + needle.size();
  const size_t end = json.find('"', start);
  return end == std::string::npos ? "" : json.substr(start, end - start);
}

// The strings of "key":["a","b"] in compact JSON.
std::vector<std::string> JsonStrings(const std::string& json,
                                     const std::string& key) {
  const std::string needle = "\"" + key + "\":[";
  const size_t at = json.find(needle);
  if (at == std::string::npos) return {};
  const size_t end = json.find(']', at);
  std::vector<std::string> out;
  size_t pos = at + needle.size();
  while (pos < end) {
    const size_t open = json.find('"', pos);
    if (open == std::string::npos || open > end) break;
    const size_t close = json.find('"', open + 1);
    out.push_back(json.substr(open + 1, close - open - 1));
    pos = close + 1;
  }
  return out;
}

int Count(const std::string& haystack, const std::string& needle) {
  int n = 0;
  for (size_t at = haystack.find(needle); at != std::string::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

// One server for the suite; a fresh client and owner per test.
class RegistrarctlTest : public testing::SharedServerTest {
 protected:
  static void SetUpTestSuite() { StartSharedServer(); }

  // Runs `registrarctl --target=<server> args...` (no --target when
  // `with_target` is false), with `env_prefix` (e.g. "VAR=x ") before it.
  CliResult Ctl(const std::vector<std::string>& args, bool with_target = true,
                const std::string& env_prefix = "") {
    std::vector<std::string> argv;
    if (with_target) argv.push_back("--target=" + server_->grpc_address());
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::RunCli(argv, server_->dir() + "/ctl.stderr", env_prefix);
  }

  // Runs and expects exit 0; the result.
  CliResult Ok(const std::vector<std::string>& args) {
    CliResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 0) << absl::StrJoin(args, " ") << "\nstdout:\n"
                              << r.out << "\nstderr:\n"
                              << r.err;
    return r;
  }

  std::vector<std::string> OwnerArgs() const {
    return {"--tenant=" + owner_.tenant(), "--user=" + owner_.user_id()};
  }

  std::vector<std::string> With(std::vector<std::string> head,
                                const std::vector<std::string>& tail) const {
    head.insert(head.end(), tail.begin(), tail.end());
    return head;
  }
};

constexpr char kIdRegex[] = "[0-7][0-9a-hjkmnp-tv-z]{25}";

TEST_F(RegistrarctlTest, IssuePrintsOneIdPerLine) {
  CliResult r = Ok(With({"issue", "--kind=thread", "--count=3"}, OwnerArgs()));
  const std::vector<std::string> ids = Lines(r.out);
  ASSERT_EQ(ids.size(), 3u) << r.out;
  for (const std::string& id : ids) {
    EXPECT_THAT(id, MatchesRegex(absl::StrCat("thread_", kIdRegex)));
    EXPECT_EQ(testing::VerdictOf(*client_, id, owner_, v1::KIND_THREAD),
              v1::VERDICT_VALID)
        << id;
  }
  EXPECT_TRUE(r.err.empty()) << r.err;
  // "--name value" form and the "-" spelling work too.
  CliResult r2 = Ok({"issue", "--kind", "run", "--tenant", owner_.tenant(),
                     "--user", owner_.user_id(), "--parent", ids[0]});
  ASSERT_EQ(Lines(r2.out).size(), 1u);
  EXPECT_THAT(Lines(r2.out)[0], MatchesRegex(absl::StrCat("run_", kIdRegex)));
}

TEST_F(RegistrarctlTest, IssueJson) {
  CliResult r = Ok(With({"--json", "issue", "--kind=connection",
                         "--label=pod=gw-1", "--label=zone=a"},
                        OwnerArgs()));
  ASSERT_EQ(Lines(r.out).size(), 1u) << r.out;
  const std::vector<std::string> ids = JsonStrings(r.out, "ids");
  ASSERT_EQ(ids.size(), 1u) << r.out;
  EXPECT_THAT(ids[0], MatchesRegex(absl::StrCat("conn_", kIdRegex)));
  v1::DescribeRequest describe;
  describe.set_id(ids[0]);
  auto record = client_->Describe(describe);
  ASSERT_TRUE(record.ok()) << StatusText(record.status());
  EXPECT_EQ(record->record().owner().user_id(), owner_.user_id());
  ASSERT_EQ(record->record().labels().count("pod"), 1u);
  EXPECT_EQ(record->record().labels().at("pod"), "gw-1");
  EXPECT_EQ(record->record().labels().at("zone"), "a");
}

TEST_F(RegistrarctlTest, OpenTextAndJson) {
  auto conn = client_->IssueIds(v1::KIND_CONNECTION, owner_);
  ASSERT_TRUE(conn.ok());
  CliResult r =
      Ok(With({"open", "--connection=" + conn->front()}, OwnerArgs()));
  const std::vector<std::string> fields = absl::StrSplit(
      std::string(absl::StripTrailingAsciiWhitespace(r.out)), ' ');
  ASSERT_EQ(fields.size(), 4u) << r.out;
  EXPECT_THAT(fields[0], MatchesRegex(absl::StrCat("thread_", kIdRegex)));
  EXPECT_THAT(fields[1], MatchesRegex(absl::StrCat("run_", kIdRegex)));
  EXPECT_THAT(fields[2], MatchesRegex(absl::StrCat("req_", kIdRegex)));
  EXPECT_EQ(fields[3], "false");
  v1::DescribeRequest describe;
  describe.set_id(fields[1]);
  auto run = client_->Describe(describe);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->record().parent_id(), fields[0]);
  EXPECT_EQ(run->record().connection_id(), conn->front());

  CliResult j =
      Ok(With({"--json", "open", "--thread=" + fields[0]}, OwnerArgs()));
  EXPECT_EQ(JsonString(j.out, "thread_id"), fields[0]) << j.out;
  EXPECT_THAT(j.out, HasSubstr("\"thread_reused\":true"));
  EXPECT_THAT(JsonString(j.out, "run_id"),
              MatchesRegex(absl::StrCat("run_", kIdRegex)));
}

TEST_F(RegistrarctlTest, ValidateTextAndJson) {
  auto thread = client_->IssueIds(v1::KIND_THREAD, owner_);
  ASSERT_TRUE(thread.ok());
  auto foreign = client_->IssueIds(v1::KIND_THREAD, MakeOwner("acme", "zed"));
  ASSERT_TRUE(foreign.ok());
  const std::string t = thread->front();
  CliResult r =
      Ok(With({"validate"},
              With(OwnerArgs(), {t, foreign->front(), "user_a_ws_1_xyz"})));
  EXPECT_THAT(Lines(r.out), ::testing::ElementsAre(
                                t + "\tVALID", foreign->front() + "\tNOT_OWNER",
                                "user_a_ws_1_xyz\tMALFORMED"))
      << r.out;

  CliResult wrong =
      Ok(With({"validate", "--kind=run"}, With(OwnerArgs(), {t})));
  EXPECT_EQ(wrong.out, t + "\tWRONG_KIND\n");

  CliResult records =
      Ok(With({"validate", "--records"}, With(OwnerArgs(), {t})));
  EXPECT_THAT(records.out, HasSubstr(t + "\tVALID\n"));
  EXPECT_THAT(records.out, HasSubstr("  kind: THREAD\n"));
  EXPECT_THAT(records.out, HasSubstr("  state: LIVE\n"));
  EXPECT_THAT(records.out, HasSubstr("  user_id: " + owner_.user_id() + "\n"));

  CliResult j = Ok(With({"--json", "validate"}, With(OwnerArgs(), {t})));
  EXPECT_EQ(JsonString(j.out, "id"), t) << j.out;
  EXPECT_EQ(JsonString(j.out, "verdict"), "VERDICT_VALID") << j.out;
}

TEST_F(RegistrarctlTest, DescribeTextAndJson) {
  auto thread = client_->IssueIds(v1::KIND_THREAD, owner_);
  ASSERT_TRUE(thread.ok());
  const std::string t = thread->front();
  CliResult r = Ok({"describe", t});
  EXPECT_THAT(r.out, HasSubstr("id: " + t + "\n"));
  EXPECT_THAT(r.out, HasSubstr("kind: THREAD\n"));
  EXPECT_THAT(r.out, HasSubstr("tenant: acme\n"));
  EXPECT_THAT(r.out, HasSubstr("user_id: " + owner_.user_id() + "\n"));
  EXPECT_THAT(r.out, HasSubstr("state: LIVE\n"));
  EXPECT_THAT(r.out, HasSubstr("parent_id: -\n"));
  EXPECT_THAT(r.out, HasSubstr("ended_at: -\n"));

  CliResult j = Ok({"--json", "describe", t});
  EXPECT_EQ(JsonString(j.out, "id"), t) << j.out;
  EXPECT_EQ(JsonString(j.out, "kind"), "KIND_THREAD") << j.out;
  EXPECT_EQ(JsonString(j.out, "state"), "STATE_LIVE") << j.out;
  EXPECT_EQ(JsonString(j.out, "user_id"), owner_.user_id()) << j.out;
}

TEST_F(RegistrarctlTest, ListTextJsonAndPages) {
  auto threads = client_->IssueIds(v1::KIND_THREAD, owner_, 3);
  ASSERT_TRUE(threads.ok());
  auto conn = client_->IssueIds(v1::KIND_CONNECTION, owner_);
  ASSERT_TRUE(conn.ok());
  CliResult r = Ok(With({"list"}, OwnerArgs()));
  const std::vector<std::string> lines = Lines(r.out);
  ASSERT_EQ(lines.size(), 5u) << r.out;  // header + 4 records
  EXPECT_THAT(lines[0], MatchesRegex("ID +KIND +STATE +CREATED +PARENT +"
                                     "CONNECTION +LABELS"));
  for (const std::string& id : *threads) EXPECT_THAT(r.out, HasSubstr(id));
  EXPECT_THAT(r.out, HasSubstr(conn->front()));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("next_page_token")));

  CliResult only_threads = Ok(With({"list", "--kind=thread"}, OwnerArgs()));
  EXPECT_EQ(Lines(only_threads.out).size(), 4u) << only_threads.out;

  CliResult page1 = Ok(With({"list", "--page_size=2"}, OwnerArgs()));
  const std::vector<std::string> p1 = Lines(page1.out);
  ASSERT_EQ(p1.size(), 4u) << page1.out;  // header, 2 rows, token
  ASSERT_TRUE(absl::StartsWith(p1.back(), "next_page_token: ")) << page1.out;
  const std::string token = p1.back().substr(strlen("next_page_token: "));
  CliResult page2 =
      Ok(With({"list", "--page_size=2", "--page_token=" + token}, OwnerArgs()));
  EXPECT_EQ(Lines(page2.out).size(), 3u) << page2.out;  // header + 2 rows
  EXPECT_THAT(page2.out, HasSubstr((*threads)[2]));
  EXPECT_THAT(page2.out, HasSubstr(conn->front()));

  CliResult j = Ok(With({"--json", "list", "--include_ended"}, OwnerArgs()));
  EXPECT_EQ(Count(j.out, "\"id\":\"thread_"), 3) << j.out;
  EXPECT_EQ(Count(j.out, "\"id\":\"conn_"), 1) << j.out;
  EXPECT_EQ(JsonString(j.out, "next_page_token"), "");
}

TEST_F(RegistrarctlTest, CleanupTextAndJson) {
  auto conn = client_->IssueIds(v1::KIND_CONNECTION, owner_);
  ASSERT_TRUE(conn.ok());
  v1::OpenContextRequest open;
  *open.mutable_owner() = owner_;
  open.set_connection_id(conn->front());
  auto ctx = client_->OpenContext(open);
  ASSERT_TRUE(ctx.ok());

  CliResult r =
      Ok(With({"cleanup", "--connection=" + conn->front()}, OwnerArgs()));
  EXPECT_THAT(r.out, HasSubstr("released: 3\n"));
  EXPECT_THAT(r.out, HasSubstr("  " + conn->front() + "\n"));
  EXPECT_THAT(r.out, HasSubstr("  " + ctx->run_id() + "\n"));
  EXPECT_THAT(r.out, HasSubstr("  " + ctx->request_id() + "\n"));
  EXPECT_THAT(r.out, HasSubstr("already_ended: 0\n"));
  EXPECT_THAT(r.out, HasSubstr("refused: 0\n"));
  EXPECT_THAT(r.out, HasSubstr("unknown: 0\n"));
  EXPECT_EQ(testing::VerdictOf(*client_, ctx->thread_id(), owner_),
            v1::VERDICT_VALID);

  // By IDs: own thread released, a foreign one refused, junk unknown.
  auto foreign = client_->IssueIds(v1::KIND_THREAD, MakeOwner("acme", "zed"));
  ASSERT_TRUE(foreign.ok());
  CliResult j = Ok(With({"--json", "cleanup", "--reason=test"},
                        With(OwnerArgs(), {ctx->thread_id(), foreign->front(),
                                           "user_b_thread_2_abc"})));
  EXPECT_THAT(JsonStrings(j.out, "released"),
              ::testing::ElementsAre(ctx->thread_id()))
      << j.out;
  EXPECT_THAT(JsonStrings(j.out, "refused"),
              ::testing::ElementsAre(foreign->front()));
  EXPECT_THAT(JsonStrings(j.out, "unknown"),
              ::testing::ElementsAre("user_b_thread_2_abc"));
  EXPECT_EQ(
      testing::VerdictOf(*client_, foreign->front(), MakeOwner("acme", "zed")),
      v1::VERDICT_VALID);

  // --all.
  auto more = client_->IssueIds(v1::KIND_THREAD, owner_, 2);
  ASSERT_TRUE(more.ok());
  CliResult all = Ok(With({"cleanup", "--all"}, OwnerArgs()));
  EXPECT_THAT(all.out, HasSubstr("released: 2\n"));
  auto live = testing::ListAll(*client_, owner_, /*include_ended=*/false);
  ASSERT_TRUE(live.ok());
  EXPECT_TRUE(live->empty());
}

TEST_F(RegistrarctlTest, LeaseGrantKeepAliveRevoke) {
  CliResult grant = Ok({"lease", "grant", "--holder=gw-1", "--ttl=30"});
  const std::vector<std::string> fields = absl::StrSplit(
      std::string(absl::StripTrailingAsciiWhitespace(grant.out)), ' ');
  ASSERT_EQ(fields.size(), 2u) << grant.out;
  EXPECT_THAT(fields[0], MatchesRegex(absl::StrCat("lease_", kIdRegex)));
  EXPECT_EQ(fields[1], "30");
  const std::string lease = fields[0];

  CliResult conn =
      Ok(With({"issue", "--kind=connection", "--lease=" + lease}, OwnerArgs()));
  const std::string conn_id = Lines(conn.out).at(0);

  CliResult keep = Ok({"lease", "keepalive", lease});
  EXPECT_EQ(keep.out, lease + " 30\n");
  CliResult keep_json = Ok({"--json", "lease", "keepalive", lease});
  EXPECT_EQ(JsonString(keep_json.out, "lease_id"), lease);
  EXPECT_THAT(keep_json.out, HasSubstr("\"ttl_seconds\":30"));

  CliResult revoke = Ok({"lease", "revoke", lease});
  EXPECT_EQ(revoke.out, "released: 1\n  " + conn_id + "\n");
  EXPECT_EQ(testing::VerdictOf(*client_, conn_id, owner_),
            v1::VERDICT_RELEASED);

  // Gone now: NOT_FOUND, exit 1.
  CliResult again = Ctl({"lease", "keepalive", lease});
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("NOT_FOUND"));

  CliResult grant_json =
      Ok({"--json", "lease", "grant", "--holder=gw-2", "--ttl=10"});
  EXPECT_THAT(JsonString(grant_json.out, "lease_id"),
              MatchesRegex(absl::StrCat("lease_", kIdRegex)));
  EXPECT_THAT(grant_json.out, HasSubstr("\"ttl_seconds\":10"));
  CliResult revoke_json =
      Ok({"--json", "lease", "revoke", JsonString(grant_json.out, "lease_id")});
  EXPECT_THAT(revoke_json.out, HasSubstr("\"released\":[]"));
}

// The operator's lease commands: `leases` lists by holder (table, pages,
// JSON), `revoke-holder` revokes every lease of one holder with what is
// bound to them and leaves other holders' alone.
TEST_F(RegistrarctlTest, LeasesAndRevokeHolder) {
  std::vector<std::string> dead;
  for (int i = 0; i < 3; ++i) {
    CliResult grant = Ok({"lease", "grant", "--holder=ctl-dead", "--ttl=60"});
    dead.push_back(Lines(grant.out).at(0).substr(0, grant.out.find(' ')));
  }
  CliResult live = Ok({"lease", "grant", "--holder=ctl-live", "--ttl=60"});
  const std::string live_lease = live.out.substr(0, live.out.find(' '));
  const std::string conn =
      Lines(Ok(With({"issue", "--kind=connection", "--lease=" + dead[1]},
                    OwnerArgs()))
                .out)
          .at(0);
  const std::string kept =
      Lines(Ok(With({"issue", "--kind=connection", "--lease=" + live_lease},
                    OwnerArgs()))
                .out)
          .at(0);

  CliResult table = Ok({"leases", "--holder=ctl-dead"});
  std::vector<std::string> rows = Lines(table.out);
  ASSERT_EQ(rows.size(), 4u) << table.out;
  EXPECT_THAT(rows[0], MatchesRegex("LEASE_ID +HOLDER +TTL +REMAINING +"
                                    "CONNECTIONS +GRANTOR"));
  for (int i = 0; i < 3; ++i) {
    EXPECT_THAT(rows[i + 1], MatchesRegex(absl::StrCat(
                                 dead[i], " +ctl-dead +60s +[0-9.]+s +",
                                 i == 1 ? 1 : 0, " +-")));
  }
  CliResult page = Ok({"leases", "--holder=ctl-dead", "--page_size=2"});
  EXPECT_EQ(Lines(page.out).size(), 4u) << page.out;  // header, 2, token
  EXPECT_THAT(page.out, HasSubstr("next_page_token: "));
  CliResult json = Ok({"--json", "leases", "--holder=ctl-live"});
  EXPECT_EQ(JsonString(json.out, "lease_id"), live_lease);
  EXPECT_THAT(json.out, HasSubstr("\"connections\":\"1\""));

  CliResult revoked = Ok({"revoke-holder", "--holder=ctl-dead"});
  EXPECT_EQ(revoked.out,
            absl::StrCat("revoked: 3\n  ", dead[0], "\n  ", dead[1], "\n  ",
                         dead[2], "\nreleased: 1\n"));
  EXPECT_EQ(testing::VerdictOf(*client_, conn, owner_), v1::VERDICT_RELEASED);
  EXPECT_EQ(testing::VerdictOf(*client_, kept, owner_), v1::VERDICT_VALID);
  EXPECT_EQ(Lines(Ok({"leases", "--holder=ctl-dead"}).out).size(), 1u);
  EXPECT_THAT(Ok({"leases"}).out, HasSubstr(live_lease));

  CliResult again = Ok({"--json", "revoke-holder", "--holder=ctl-dead"});
  EXPECT_THAT(again.out, HasSubstr("\"revoked\":[]"));
  CliResult no_holder = Ctl({"revoke-holder"});
  EXPECT_EQ(no_holder.exit_code, 2);
  EXPECT_THAT(no_holder.err, HasSubstr("--holder is required"));
  CliResult too_long = Ctl({"leases", "--holder=" + std::string(300, 'x')});
  EXPECT_EQ(too_long.exit_code, 1);
  EXPECT_THAT(too_long.err, HasSubstr("INVALID_ARGUMENT: holder: is 300 bytes, "
                                      "limit is 256"));
}

// `watch --from=1 --idle=D` prints the history and returns once no event
// came for D (without --idle a watch never returns by itself).
TEST_F(RegistrarctlTest, WatchWithIdlePrintsTheHistoryThenReturns) {
  CliResult issued =
      Ok(With({"issue", "--kind=thread", "--count=3"}, OwnerArgs()));
  const std::vector<std::string> ids = Lines(issued.out);
  ASSERT_EQ(ids.size(), 3u) << issued.out;
  CliResult r =
      Ok({"watch", "--from=1", "--tenant=" + owner_.tenant(), "--idle=300ms"});
  // This test's events (a run of the whole suite in one process shares
  // the server and the tenant).
  std::vector<std::string> events;
  for (const std::string& line : Lines(r.out)) {
    if (absl::StrContains(line, " owner=acme/" + owner_.user_id() + " ")) {
      events.push_back(line);
    }
  }
  ASSERT_EQ(events.size(), 3u) << r.out;
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_THAT(events[i], HasSubstr(absl::StrCat(" ISSUED ", ids[i], " ")))
        << events[i];
  }
  EXPECT_TRUE(r.err.empty()) << r.err;
  // --limit still stops first when it is reached.
  CliResult one = Ok({"watch", "--from=1", "--tenant=" + owner_.tenant(),
                      "--limit=1", "--idle=1h"});
  EXPECT_EQ(Lines(one.out).size(), 1u) << one.out;
}

TEST_F(RegistrarctlTest, UsageErrorsExitTwoWithAMessage) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {With({"issue"}, OwnerArgs()), "--kind is required"},
      {{"issue", "--kind=thread", "--tenant=acme"}, "--user is required"},
      {With({"issue", "--kind=bogus"}, OwnerArgs()), "--kind=bogus"},
      {With({"issue", "--kind=thread", "--count=0"}, OwnerArgs()), "--count"},
      {With({"issue", "--kind=thread", "--no-such-flag"}, OwnerArgs()),
       "unknown option"},
      {{"frobnicate"}, "unknown command"},
      {With({"cleanup", "--all", "thread_x"}, OwnerArgs()), "exactly one of"},
      {With({"cleanup"}, OwnerArgs()), "exactly one of"},
      {With({"validate"}, OwnerArgs()), "at least one ID"},
      {{"describe"}, "exactly one ID"},
      {{"lease"}, "lease grant"},
      {{"lease", "grant", "--holder=gw"}, "--ttl"},
      {{"lease", "grant", "--holder=gw", "--ttl=soon"}, "ttl"},
      {{"lease", "keepalive"}, "LEASE_ID"},
      {{"--timeout=soon", "describe", "thread_x"}, "--timeout"},
      {{"watch", "--idle=0s"}, "--idle=0s"},
      {{"watch", "--idle=soon"}, "--idle=soon"},
  };
  for (const Case& c : cases) {
    const std::string what = absl::StrJoin(c.args, " ");
    CliResult r = Ctl(c.args);
    EXPECT_EQ(r.exit_code, 2) << what << "\nstderr: " << r.err;
    EXPECT_THAT(r.err, HasSubstr(c.message)) << what;
    EXPECT_TRUE(r.out.empty()) << what << "\nstdout: " << r.out;
  }
  // No command at all: usage on stderr, exit 2.
  CliResult none = Ctl({});
  EXPECT_EQ(none.exit_code, 2);
  EXPECT_THAT(none.err, HasSubstr("usage: registrarctl"));
}

TEST_F(RegistrarctlTest, RpcErrorsExitOneWithTheCodeName) {
  auto thread = client_->IssueIds(v1::KIND_THREAD, owner_);
  ASSERT_TRUE(thread.ok());
  // Well formed, but no record: NOT_FOUND.
  std::string unknown = thread->front();
  unknown.back() = unknown.back() == '0' ? '1' : '0';
  for (bool json : {false, true}) {
    std::vector<std::string> args = {"describe", unknown};
    if (json) args.insert(args.begin(), "--json");
    CliResult r = Ctl(args);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr("registrarctl: describe: NOT_FOUND"));
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  // Malformed ID: the server's INVALID_ARGUMENT with its field violation.
  CliResult bad = Ctl({"describe", "user_a_ws_1_xyz"});
  EXPECT_EQ(bad.exit_code, 1) << bad.err;
  EXPECT_THAT(bad.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(bad.err, HasSubstr("  id: "));
  // An empty tenant passes the CLI and is refused by the server.
  CliResult empty_tenant =
      Ctl({"issue", "--kind=thread", "--tenant=", "--user=alice"});
  EXPECT_EQ(empty_tenant.exit_code, 1) << empty_tenant.err;
  EXPECT_THAT(empty_tenant.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(empty_tenant.err, HasSubstr("owner.tenant"));
  // Over the batch limit.
  CliResult too_many =
      Ctl(With({"issue", "--kind=thread", "--count=5000"}, OwnerArgs()));
  EXPECT_EQ(too_many.exit_code, 1);
  EXPECT_THAT(too_many.err, HasSubstr("RESOURCE_EXHAUSTED"));
  EXPECT_THAT(too_many.err, HasSubstr("count"));
}

TEST_F(RegistrarctlTest, UnreachableServerExitsOneWithUnavailable) {
  CliResult r = Ctl({"--target=127.0.0.1:1", "--timeout=2s", "describe",
                     "thread_01jf8x2k3m4n5p6q7r8s9t0v1w"},
                    /*with_target=*/false);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, ::testing::AnyOf(HasSubstr("UNAVAILABLE"),
                                      HasSubstr("DEADLINE_EXCEEDED")));
}

TEST_F(RegistrarctlTest, TargetFromTheEnvironment) {
  CliResult r =
      Ctl(With({"issue", "--kind=thread"}, OwnerArgs()),
          /*with_target=*/false,
          "REGISTRAR_TARGET=" + ShellQuote(server_->grpc_address()) + " ");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(Lines(r.out).size(), 1u);
  EXPECT_EQ(testing::VerdictOf(*client_, Lines(r.out)[0], owner_),
            v1::VERDICT_VALID);
}

// `registrarctl help` documents every command in the same shape as the
// first two ("  <command> <options>" at the start of a line).
TEST_F(RegistrarctlTest, HelpListsEveryCommand) {
  CliResult r = Ctl({"help"}, /*with_target=*/false);
  EXPECT_EQ(r.exit_code, 0);
  std::vector<std::string> missing;
  for (const char* line :
       {"\n  issue --kind=thread|run|request|connection --tenant=T --user=U",
        "\n  open --tenant=T --user=U", "\n  validate --tenant=T --user=U",
        "\n  cleanup --tenant=T --user=U", "\n  describe ID",
        "\n  list --tenant=T --user=U",
        "\n  lease grant --holder=H --ttl=SECONDS",
        "\n  lease keepalive LEASE_ID", "\n  lease revoke LEASE_ID",
        "\n  leases [--holder=H]", "\n  revoke-holder --holder=H",
        "\nExit status: 0 ok, 1 RPC error, 2 usage error."}) {
    if (!absl::StrContains(r.out, line)) missing.push_back(line + 1);
  }
  EXPECT_THAT(missing, ::testing::IsEmpty()) << "help text:\n" << r.out;
  EXPECT_FALSE(absl::StrContains(r.out, "-- tenant = T"))
      << "help text looks mangled (reformatted as code?)";
}

}  // namespace
}  // namespace registrar
