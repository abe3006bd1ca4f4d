// The real server on the RocksDB store when the store cannot write, and
// when its data dir is not its own:
//  - mid-run, the server process may no longer grow any file: its soft
//    RLIMIT_FSIZE is set to 0 with prlimit(2) (the kernel enforces it on
//    root too, so the WAL append fails with EFBIG; the server ignores
//    SIGXFSZ; no mount needed). Every change is refused with UNAVAILABLE
//    naming the store and leaves no trace; reads still answer; health goes
//    NOT_SERVING; a lease expiry that cannot be stored is not applied. Once
//    the limit is lifted the server recovers by itself (health SERVING,
//    changes work), and after a kill -9 and a restart exactly what was
//    acknowledged is there. A kill -9 during the fault loses nothing
//    either. Recovery attempts during the fault are throttled (about one a
//    second, as RocksDbStore::CheckWritable's contract says).
//  - a second server on a data dir in use, a data dir of another --node_id
//    and a foreign directory are refused at start, with a clear message and
//    a non-zero exit, and the foreign directory is left as it was.
// Note: the limit applies to every file of the server, so its own log
// (stdout, a file here) loses the lines written during the fault.

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "tests/integration/data_dir.h"
#include "tests/integration/metrics_scrape.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_util.h"

namespace registrar {
namespace {

namespace fs = std::filesystem;
using ::grpc::health::v1::Health;
using ::grpc::health::v1::HealthCheckRequest;
using ::grpc::health::v1::HealthCheckResponse;
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

constexpr char kService[] = "registrar.v1.Registrar";

std::unique_ptr<Client> NoRetryClient(const ServerProcess& server) {
  ClientOptions options;
  options.target = server.grpc_address();
  options.deadline = absl::Seconds(5);
  options.max_attempts = 1;  // a refused call must show as refused
  return std::make_unique<Client>(options);
}

// The serving status of kService, or UNKNOWN when the call failed.
HealthCheckResponse::ServingStatus HealthOf(Health::Stub& stub) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
  HealthCheckRequest request;
  request.set_service(kService);
  HealthCheckResponse response;
  if (!stub.Check(&ctx, request, &response).ok()) {
    return HealthCheckResponse::UNKNOWN;
  }
  return response.status();
}

// Polls (bounded, PollUntil) until the health of kService is `want`;
// whether it got there within `timeout`.
bool WaitForHealth(Health::Stub& stub, HealthCheckResponse::ServingStatus want,
                   absl::Duration timeout) {
  return testing::PollUntil([&] { return HealthOf(stub) == want; }, timeout);
}

constexpr char kRecoveryAttempts[] = "registrar_store_recovery_attempts_total";

// The server's count of store recovery attempts, from its /metrics (a
// scrape is a socket write, which the file-size limit does not stop); -1
// when the scrape fails.
double RecoveryAttempts(const ServerProcess& server) {
  return testing::ScrapeValue(server, kRecoveryAttempts).value_or(-1);
}

// Waits (bounded) until the server has made `n` more recovery attempts than
// `since`; whether it did.
bool WaitForRecoveryAttempts(const ServerProcess& server, double since, int n,
                             absl::Duration timeout) {
  return testing::PollUntil(
      [&] { return RecoveryAttempts(server) >= since + n; }, timeout);
}

// Sets the soft RLIMIT_FSIZE of process `pid`. Only the soft limit: the hard
// one stays (RLIM_INFINITY), since raising a hard limit again needs
// CAP_SYS_RESOURCE, which root in a container may lack (this one does), and
// the kernel enforces the soft limit alone.
bool SetFileSizeLimit(pid_t pid, rlim_t bytes) {
  rlimit limit{};
  if (::prlimit(pid, RLIMIT_FSIZE, nullptr, &limit) != 0) {
    ADD_FAILURE() << "prlimit(" << pid
                  << ", RLIMIT_FSIZE) read: " << std::strerror(errno);
    return false;
  }
  limit.rlim_cur = std::min(bytes, limit.rlim_max);
  if (::prlimit(pid, RLIMIT_FSIZE, &limit, nullptr) != 0) {
    ADD_FAILURE() << "prlimit(" << pid << ", RLIMIT_FSIZE, " << bytes
                  << "): " << std::strerror(errno);
    return false;
  }
  return true;
}

size_t FileCount(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    (void)e;
    ++n;
  }
  return n;
}

// "call" labels of every record of `owner` (ended ones too).
std::multiset<std::string> CallLabels(Client& client, const v1::Owner& owner) {
  std::multiset<std::string> out;
  auto records = ListAll(client, owner, /*include_ended=*/true);
  if (!records.ok()) {
    ADD_FAILURE() << "ListOwned: " << StatusText(records.status());
    return out;
  }
  for (const v1::Record& r : *records) {
    auto it = r.labels().find("call");
    out.insert(it == r.labels().end() ? "" : it->second);
  }
  return out;
}

v1::IssueRequest IssueThreads(const v1::Owner& owner, int count,
                              const std::string& call) {
  v1::IssueRequest request;
  request.set_kind(v1::KIND_THREAD);
  *request.mutable_owner() = owner;
  request.set_count(count);
  (*request.mutable_labels())["call"] = call;
  return request;
}

// An UNAVAILABLE that names the store as the cause.
void ExpectStoreRefusal(const absl::Status& status, const std::string& what) {
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable)
      << what << ": " << StatusText(status);
  EXPECT_THAT(std::string(status.message()), HasSubstr("store"))
      << what << ": " << StatusText(status);
}

TEST(StoreFaultTest, WalWriteFailureRefusesChangesKeepsReadsThenRecovers) {
  TestDir dir("store-fault");
  std::unique_ptr<ServerProcess> server = StartOrFail(OptionsFor(dir));
  ASSERT_NE(server, nullptr);
  auto client = NoRetryClient(*server);
  auto health = Health::NewStub(grpc::CreateChannel(
      server->grpc_address(), grpc::InsecureChannelCredentials()));
  const v1::Owner alice = MakeOwner("fault", "alice");

  // --- Before the fault: everything acknowledged. -----------------------
  std::map<std::string, int> acked_calls;  // call label -> records
  auto threads = client->Issue(IssueThreads(alice, 5, "before"));
  ASSERT_TRUE(threads.ok()) << StatusText(threads);
  acked_calls["before"] = 5;
  const std::vector<std::string> before(threads->ids().begin(),
                                        threads->ids().end());
  std::string leases[2], conns[2];
  for (int i = 0; i < 2; ++i) {
    v1::GrantLeaseRequest grant;
    grant.set_holder(absl::StrCat("gw", i));
    grant.set_ttl_seconds(600);
    auto lease = client->GrantLease(grant);
    ASSERT_TRUE(lease.ok()) << StatusText(lease);
    leases[i] = lease->lease_id();
    v1::IssueRequest issue;
    issue.set_kind(v1::KIND_CONNECTION);
    *issue.mutable_owner() = alice;
    issue.set_lease_id(leases[i]);
    (*issue.mutable_labels())["call"] = absl::StrCat("conn", i);
    auto conn = client->Issue(issue);
    ASSERT_TRUE(conn.ok()) << StatusText(conn);
    conns[i] = conn->ids(0);
    acked_calls[absl::StrCat("conn", i)] = 1;
  }
  v1::OpenContextRequest open;
  *open.mutable_owner() = alice;
  open.set_connection_id(conns[0]);
  (*open.mutable_labels())["call"] = "open-before";
  auto context = client->OpenContext(open);
  ASSERT_TRUE(context.ok()) << StatusText(context);
  acked_calls["open-before"] = 3;
  // A lease that lapses during the fault: its expiry cannot be stored.
  v1::GrantLeaseRequest short_grant;
  short_grant.set_holder("short");
  short_grant.set_ttl_seconds(1);
  auto short_lease = client->GrantLease(short_grant);
  ASSERT_TRUE(short_lease.ok()) << StatusText(short_lease);
  v1::IssueRequest short_issue;
  short_issue.set_kind(v1::KIND_CONNECTION);
  *short_issue.mutable_owner() = alice;
  short_issue.set_lease_id(short_lease->lease_id());
  (*short_issue.mutable_labels())["call"] = "conn-short";
  auto short_conn = client->Issue(short_issue);
  ASSERT_TRUE(short_conn.ok()) << StatusText(short_conn);
  acked_calls["conn-short"] = 1;
  ASSERT_EQ(HealthOf(*health), HealthCheckResponse::SERVING);
  const size_t files_before = FileCount(dir.data_dir());

  // --- The fault: the server may not grow any file. ----------------------
  ASSERT_TRUE(SetFileSizeLimit(server->pid(), 0));
  absl::Status first_failure;
  int commits_during_limit = 0;
  for (int i = 0; i < 50 && first_failure.ok(); ++i) {
    const std::string call = absl::StrCat("probe", i);
    auto issued = client->Issue(IssueThreads(alice, 1, call));
    if (issued.ok()) {
      acked_calls[call] = 1;  // acknowledged: must survive
      ++commits_during_limit;
    } else {
      first_failure = issued.status();
    }
  }
  ASSERT_FALSE(first_failure.ok())
      << "50 commits succeeded under RLIMIT_FSIZE=0: the WAL never failed";
  ExpectStoreRefusal(first_failure, "first failed Issue");
  // The WAL append itself failed (EFBIG), not something else.
  EXPECT_THAT(std::string(first_failure.message()), HasSubstr("File too large"))
      << StatusText(first_failure);
  // fsync mode writes the WAL at every commit, so the very first fails.
  EXPECT_EQ(commits_during_limit, 0);

  // Every kind of change is refused, and says why.
  auto issue = client->Issue(IssueThreads(alice, 3, "refused-issue"));
  ASSERT_FALSE(issue.ok());
  ExpectStoreRefusal(issue.status(), "Issue");
  v1::OpenContextRequest reopen = open;
  reopen.set_thread_id(context->thread_id());
  (*reopen.mutable_labels())["call"] = "refused-open";
  auto opened = client->OpenContext(reopen);
  ASSERT_FALSE(opened.ok());
  ExpectStoreRefusal(opened.status(), "OpenContext");
  v1::CleanupRequest cleanup_ids;
  *cleanup_ids.mutable_owner() = alice;
  cleanup_ids.mutable_ids()->add_ids(before[0]);
  auto cleaned = client->Cleanup(cleanup_ids);
  ASSERT_FALSE(cleaned.ok());
  ExpectStoreRefusal(cleaned.status(), "Cleanup(ids)");
  v1::CleanupRequest cleanup_conn;
  *cleanup_conn.mutable_owner() = alice;
  cleanup_conn.set_connection_id(conns[0]);
  auto cleaned_conn = client->Cleanup(cleanup_conn);
  ASSERT_FALSE(cleaned_conn.ok());
  ExpectStoreRefusal(cleaned_conn.status(), "Cleanup(connection)");
  v1::GrantLeaseRequest grant;
  grant.set_holder("refused");
  grant.set_ttl_seconds(600);
  auto granted = client->GrantLease(grant);
  ASSERT_FALSE(granted.ok());
  ExpectStoreRefusal(granted.status(), "GrantLease");
  v1::RevokeLeaseRequest revoke;
  revoke.set_lease_id(leases[1]);
  auto revoked = client->RevokeLease(revoke);
  ASSERT_FALSE(revoked.ok());
  ExpectStoreRefusal(revoked.status(), "RevokeLease");

  // Health goes NOT_SERVING within a few seconds.
  ASSERT_TRUE(WaitForHealth(*health, HealthCheckResponse::NOT_SERVING,
                            absl::Seconds(5)))
      << "health still " << HealthOf(*health) << " with a broken store";

  // Reads keep working, and show nothing that was refused.
  auto check_reads = [&](const std::string& when) {
    SCOPED_TRACE(when);
    v1::ValidateRequest validate;
    *validate.mutable_owner() = alice;
    validate.set_include_records(true);
    for (const std::string& id : before) validate.add_items()->set_id(id);
    for (const std::string& id : conns) validate.add_items()->set_id(id);
    validate.add_items()->set_id(context->run_id());
    auto validated = client->Validate(validate);
    ASSERT_TRUE(validated.ok()) << StatusText(validated);
    ASSERT_EQ(validated->results_size(), validate.items_size());
    ASSERT_GT(validated->results_size(), 1);
    for (const v1::ValidateResult& r : validated->results()) {
      EXPECT_EQ(r.verdict(), v1::VERDICT_VALID)
          << r.id() << ": " << VerdictName(r.verdict());
      EXPECT_EQ(r.record().state(), v1::STATE_LIVE) << r.id();
    }
    v1::DescribeRequest describe;
    describe.set_id(before[0]);
    auto described = client->Describe(describe);
    ASSERT_TRUE(described.ok()) << StatusText(described);
    EXPECT_EQ(described->record().state(), v1::STATE_LIVE);
    EXPECT_EQ(described->record().labels().at("call"), "before");
    std::multiset<std::string> calls = CallLabels(*client, alice);
    ASSERT_FALSE(acked_calls.empty());
    std::multiset<std::string> want;
    for (const auto& [call, n] : acked_calls) {
      for (int i = 0; i < n; ++i) want.insert(call);
    }
    ASSERT_GT(want.size(), 0u);
    EXPECT_EQ(calls, want);
  };
  check_reads("while the store cannot write");
  ASSERT_TRUE(server->running());
  EXPECT_FALSE(server->WaitForExit(absl::ZeroDuration()).has_value())
      << "the server died under the file-size limit:\n"
      << server->Log();

  // Still refused after the server has tried to recover twice more (each
  // attempt fails under the limit).
  const double attempts = RecoveryAttempts(*server);
  ASSERT_GE(attempts, 1) << "no recovery attempt counted (or no scrape)";
  ASSERT_TRUE(WaitForRecoveryAttempts(*server, attempts, 2, absl::Seconds(10)))
      << "the server stopped trying to recover: " << RecoveryAttempts(*server)
      << " attempts";
  auto still = client->Issue(IssueThreads(alice, 1, "refused-later"));
  ASSERT_FALSE(still.ok());
  ExpectStoreRefusal(still.status(), "Issue after two more recovery attempts");
  EXPECT_EQ(HealthOf(*health), HealthCheckResponse::NOT_SERVING);
  // The short lease is past its deadline, but its expiry is a change that
  // could not be stored, so it is not applied: the connection reads live.
  v1::KeepAliveRequest keep_short;
  keep_short.set_lease_id(short_lease->lease_id());
  EXPECT_EQ(client->KeepAlive(keep_short).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(VerdictName(VerdictOf(*client, short_conn->ids(0), alice)),
            VerdictName(v1::VERDICT_VALID))
      << "an expiry that was not stored is visible";

  // --- Lift the limit: the server recovers by itself. --------------------
  // (RLIM_INFINITY is capped at the hard limit: back to no limit.)
  ASSERT_TRUE(SetFileSizeLimit(server->pid(), RLIM_INFINITY));
  ASSERT_TRUE(
      WaitForHealth(*health, HealthCheckResponse::SERVING, absl::Seconds(5)))
      << "health did not come back after the limit was lifted:\n"
      << server->Log();
  auto after = client->Issue(IssueThreads(alice, 2, "after"));
  ASSERT_TRUE(after.ok()) << StatusText(after);
  acked_calls["after"] = 2;
  EXPECT_THAT(server->Log(), HasSubstr("store can write again: SERVING"));
  // Failed recovery attempts must not litter the data dir.
  const size_t files_after = FileCount(dir.data_dir());
  EXPECT_LE(files_after, files_before + 10)
      << "data dir grew from " << files_before << " to " << files_after
      << " files during the fault";
  check_reads("after recovery");
  // The expiry that could not be stored is stored now.
  v1::Verdict short_verdict = v1::VERDICT_VALID;
  testing::PollUntil(
      [&] {
        short_verdict = VerdictOf(*client, short_conn->ids(0), alice);
        return short_verdict != v1::VERDICT_VALID;
      },
      absl::Seconds(3));
  EXPECT_EQ(VerdictName(short_verdict), VerdictName(v1::VERDICT_EXPIRED));

  // Changes after recovery: acknowledged ones.
  auto released = client->Cleanup(cleanup_ids);
  ASSERT_TRUE(released.ok()) << StatusText(released);
  EXPECT_EQ(released->released_size(), 1);
  auto revoked_now = client->RevokeLease(revoke);
  ASSERT_TRUE(revoked_now.ok()) << StatusText(revoked_now);
  EXPECT_EQ(testing::Sorted(revoked_now->released()),
            std::vector<std::string>{conns[1]});
  v1::DescribeRequest describe_before0;
  describe_before0.set_id(before[0]);
  auto rev_before_kill = client->Describe(describe_before0);
  ASSERT_TRUE(rev_before_kill.ok()) << StatusText(rev_before_kill);

  // --- kill -9 and restart on the same data dir. --------------------------
  ASSERT_NO_FATAL_FAILURE(KillNine(*server));
  const std::string first_log = server->Log();
  server.reset();
  server = StartOrFail(OptionsFor(dir));
  ASSERT_NE(server, nullptr);
  client = NoRetryClient(*server);

  ASSERT_FALSE(acked_calls.empty());
  std::multiset<std::string> want;
  for (const auto& [call, n] : acked_calls) {
    for (int i = 0; i < n; ++i) want.insert(call);
  }
  ASSERT_GT(want.size(), 0u);
  EXPECT_EQ(CallLabels(*client, alice), want)
      << "records after restart differ from what was acknowledged";
  EXPECT_EQ(VerdictName(VerdictOf(*client, before[0], alice)),
            VerdictName(v1::VERDICT_RELEASED));
  for (size_t i = 1; i < before.size(); ++i) {
    EXPECT_EQ(VerdictName(VerdictOf(*client, before[i], alice)),
              VerdictName(v1::VERDICT_VALID));
  }
  EXPECT_EQ(VerdictName(VerdictOf(*client, conns[0], alice)),
            VerdictName(v1::VERDICT_VALID));
  EXPECT_EQ(VerdictName(VerdictOf(*client, context->request_id(), alice)),
            VerdictName(v1::VERDICT_VALID));
  EXPECT_EQ(VerdictName(VerdictOf(*client, conns[1], alice)),
            VerdictName(v1::VERDICT_RELEASED));
  auto described = client->Describe(describe_before0);
  ASSERT_TRUE(described.ok()) << StatusText(described);
  EXPECT_EQ(described->record().revision(),
            rev_before_kill->record().revision());
  v1::KeepAliveRequest keep0;
  keep0.set_lease_id(leases[0]);
  EXPECT_TRUE(client->KeepAlive(keep0).ok());
  v1::KeepAliveRequest keep1;
  keep1.set_lease_id(leases[1]);
  EXPECT_EQ(client->KeepAlive(keep1).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client->KeepAlive(keep_short).status().code(),
            absl::StatusCode::kNotFound);
  const v1::Record short_record = [&] {
    v1::DescribeRequest d;
    d.set_id(short_conn->ids(0));
    auto r = client->Describe(d);
    EXPECT_TRUE(r.ok()) << StatusText(r);
    return r.ok() ? r->record() : v1::Record{};
  }();
  EXPECT_EQ(short_record.state(), v1::STATE_EXPIRED);
  EXPECT_EQ(short_record.end_reason(), "lease_expired");
  // Leases: the two granted before the fault; the refused grant left none.
  EXPECT_THAT(server->Log(), HasSubstr("tombstones, 1 leases"))
      << server->Log();
  // OpenContext refused under the fault reused no thread and made no run.
  auto runs = ListAll(*client, alice, /*include_ended=*/true);
  ASSERT_TRUE(runs.ok());
  ASSERT_GT(runs->size(), 0u);
  int run_count = 0;
  for (const v1::Record& r : *runs) run_count += r.kind() == v1::KIND_RUN;
  EXPECT_EQ(run_count, 1);
  auto final_issue = client->Issue(IssueThreads(alice, 1, "final"));
  EXPECT_TRUE(final_issue.ok()) << StatusText(final_issue);
  EXPECT_EQ(testing::StopServer(*server), 0) << server->Log();
  if (HasFailure()) ADD_FAILURE() << "first server's log:\n" << first_log;
}

// kill -9 while the store cannot write (after many failed reopen attempts
// under the limit): the data dir still opens, with exactly what was
// acknowledged.
TEST(StoreFaultTest, KillNineDuringTheFaultLosesNothingAcknowledged) {
  TestDir dir("store-fault-kill");
  std::unique_ptr<ServerProcess> server = StartOrFail(OptionsFor(dir));
  ASSERT_NE(server, nullptr);
  auto client = NoRetryClient(*server);
  const v1::Owner dave = MakeOwner("fault", "dave");
  auto ids = client->Issue(IssueThreads(dave, 4, "acked"));
  ASSERT_TRUE(ids.ok()) << StatusText(ids);
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = dave;
  cleanup.mutable_ids()->add_ids(ids->ids(0));
  ASSERT_TRUE(client->Cleanup(cleanup).ok());

  ASSERT_TRUE(SetFileSizeLimit(server->pid(), 0));
  auto refused = client->Issue(IssueThreads(dave, 2, "refused"));
  ASSERT_FALSE(refused.ok());
  ExpectStoreRefusal(refused.status(), "Issue");
  cleanup.mutable_ids()->Clear();
  cleanup.mutable_ids()->add_ids(ids->ids(1));
  auto refused_cleanup = client->Cleanup(cleanup);
  ASSERT_FALSE(refused_cleanup.ok());
  ExpectStoreRefusal(refused_cleanup.status(), "Cleanup");
  // Health goes NOT_SERVING once a recovery attempt (a reopen under the
  // limit) has failed: kill -9 after that.
  auto health = Health::NewStub(grpc::CreateChannel(
      server->grpc_address(), grpc::InsecureChannelCredentials()));
  ASSERT_TRUE(WaitForHealth(*health, HealthCheckResponse::NOT_SERVING,
                            absl::Seconds(5)))
      << server->Log();
  ASSERT_NO_FATAL_FAILURE(KillNine(*server));
  const std::string first_log = server->Log();
  server.reset();

  server = StartOrFail(OptionsFor(dir));
  ASSERT_NE(server, nullptr) << first_log;
  client = NoRetryClient(*server);
  EXPECT_THAT(server->Log(), HasSubstr("with 3 live records, 1 tombstones"));
  EXPECT_EQ(CallLabels(*client, dave),
            (std::multiset<std::string>{"acked", "acked", "acked", "acked"}));
  EXPECT_EQ(VerdictName(VerdictOf(*client, ids->ids(0), dave)),
            VerdictName(v1::VERDICT_RELEASED));
  for (int i = 1; i < 4; ++i) {
    EXPECT_EQ(VerdictName(VerdictOf(*client, ids->ids(i), dave)),
              VerdictName(v1::VERDICT_VALID));
  }
  auto more = client->Issue(IssueThreads(dave, 1, "after"));
  EXPECT_TRUE(more.ok()) << StatusText(more);
  EXPECT_EQ(testing::StopServer(*server), 0) << server->Log();
}

uint64_t WalBytes(const std::string& dir) {
  uint64_t total = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().extension() == ".log") total += e.file_size();
  }
  return total;
}

// Bytes process `pid` has read so far (rchar of /proc/PID/io: every read(2)
// and pread(2), page cache or not).
uint64_t BytesRead(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/io"));
  std::string key;
  uint64_t value = 0;
  while (in >> key >> value) {
    if (key == "rchar:") return value;
  }
  ADD_FAILURE() << "no rchar in /proc/" << pid << "/io";
  return 0;
}

// While the store cannot write, the server retries recovery (close and
// reopen the database, replaying the whole WAL) -- but at most about once a
// second, as RocksDbStore::CheckWritable's contract says ("meant to be
// called after a failed Commit and then every second or so, not in a tight
// loop"), not at every tick: with a large WAL a reopen per tick keeps a
// core and the disk busy for as long as the fault lasts.
TEST(StoreFaultTest, RecoveryAttemptsUnderAFaultAreThrottled) {
  TestDir dir("store-fault-throttle");
  std::unique_ptr<ServerProcess> server = StartOrFail(OptionsFor(dir));
  ASSERT_NE(server, nullptr);
  auto client = NoRetryClient(*server);
  // A WAL of several MB: 1000 records with a 200-byte label per call.
  const std::string pad(200, 'p');
  int issued = 0;
  for (int i = 0; i < 40 && WalBytes(dir.data_dir()) < (6u << 20); ++i) {
    v1::IssueRequest request =
        IssueThreads(MakeOwner("fault", absl::StrCat("bulk", i)), 1000, "bulk");
    (*request.mutable_labels())["pad"] = pad;
    auto ids = client->Issue(request);
    ASSERT_TRUE(ids.ok()) << StatusText(ids);
    issued += ids->ids_size();
  }
  const uint64_t wal = WalBytes(dir.data_dir());
  ASSERT_GE(wal, 4u << 20) << "the WAL did not grow; memtables flushed?";

  ASSERT_TRUE(SetFileSizeLimit(server->pid(), 0));
  auto refused = client->Issue(IssueThreads(MakeOwner("fault", "x"), 1, "x"));
  ASSERT_FALSE(refused.ok());
  ExpectStoreRefusal(refused.status(), "Issue under the limit");
  // From the first attempt on, three more: at most one a second, so they
  // take at least 2 s (a busy machine only makes it longer); at every tick
  // they would take a few hundred ms.
  ASSERT_TRUE(WaitForRecoveryAttempts(*server, 0, 1, absl::Seconds(10)))
      << "no recovery attempt under the fault";
  const double attempts_before = RecoveryAttempts(*server);
  const uint64_t read_before = BytesRead(server->pid());
  const absl::Time start = absl::Now();
  ASSERT_TRUE(
      WaitForRecoveryAttempts(*server, attempts_before, 3, absl::Seconds(20)))
      << "the server stopped trying to recover";
  const absl::Duration took = absl::Now() - start;
  const double attempts = RecoveryAttempts(*server) - attempts_before;
  const uint64_t read = BytesRead(server->pid()) - read_before;
  EXPECT_GE(took, absl::Milliseconds(1900))
      << attempts << " recovery attempts in " << took
      << ": not throttled to one a second";
  // Each attempt replays the WAL at most once (plus one attempt for timing
  // and 4 MB for everything else).
  EXPECT_LE(read, static_cast<uint64_t>(attempts + 1) * wal + (4u << 20))
      << "the server read " << read << " bytes in " << attempts
      << " recovery attempts (the WAL is " << wal << " bytes)";

  // And it still recovers, with everything acknowledged.
  ASSERT_TRUE(SetFileSizeLimit(server->pid(), RLIM_INFINITY));
  auto health = Health::NewStub(grpc::CreateChannel(
      server->grpc_address(), grpc::InsecureChannelCredentials()));
  ASSERT_TRUE(
      WaitForHealth(*health, HealthCheckResponse::SERVING, absl::Seconds(5)))
      << server->Log();
  ASSERT_NO_FATAL_FAILURE(KillNine(*server));
  server.reset();
  server = StartOrFail(OptionsFor(dir));
  ASSERT_NE(server, nullptr);
  EXPECT_THAT(server->Log(),
              HasSubstr(absl::StrCat("with ", issued, " live records")));
  EXPECT_EQ(testing::StopServer(*server), 0);
}

// The exit code in ServerProcess::Start's "registrar exited with N before
// serving" error, or -1.
int ExitCodeOf(const absl::Status& status) {
  const std::string text(status.message());
  const std::string prefix = "registrar exited with ";
  if (text.rfind(prefix, 0) != 0) return -1;
  return std::atoi(text.c_str() + prefix.size());
}

TEST(StoreFaultTest, SecondServerOnADataDirInUseIsRefused) {
  TestDir dir("store-in-use");
  std::unique_ptr<ServerProcess> first = StartOrFail(OptionsFor(dir));
  ASSERT_NE(first, nullptr);
  auto client = NoRetryClient(*first);
  const v1::Owner bob = MakeOwner("fault", "bob");
  auto ids = client->Issue(IssueThreads(bob, 2, "first"));
  ASSERT_TRUE(ids.ok()) << StatusText(ids);

  auto second = ServerProcess::Start(OptionsFor(dir));
  ASSERT_FALSE(second.ok()) << "a second server started on a dir in use";
  EXPECT_THAT(std::string(second.status().message()), HasSubstr("in use"));
  EXPECT_THAT(std::string(second.status().message()),
              HasSubstr(dir.data_dir()));
  const int code = ExitCodeOf(second.status());
  EXPECT_GT(code, 0) << StatusText(second.status());
  EXPECT_LT(code, 128) << "killed rather than refused: "
                       << StatusText(second.status());

  // The same dir under another spelling is the same dir.
  ServerProcess::Options other = OptionsFor(dir);
  other.data_dir = dir.path() + "/./data/";
  auto third = ServerProcess::Start(other);
  ASSERT_FALSE(third.ok()) << "a server started on " << other.data_dir;
  EXPECT_THAT(std::string(third.status().message()), HasSubstr("in use"));

  // The first server did not notice.
  auto more = client->Issue(IssueThreads(bob, 1, "first"));
  EXPECT_TRUE(more.ok()) << StatusText(more);
  EXPECT_EQ(CallLabels(*client, bob).size(), 3u);
  EXPECT_EQ(testing::StopServer(*first), 0) << first->Log();
}

TEST(StoreFaultTest, DataDirOfAnotherNodeIsRefused) {
  TestDir dir("store-node");
  {
    auto server = StartOrFail(OptionsFor(dir, {"--node_id=7"}));
    ASSERT_NE(server, nullptr);
    auto client = NoRetryClient(*server);
    ASSERT_TRUE(
        client->Issue(IssueThreads(MakeOwner("fault", "carol"), 1, "x")).ok());
    EXPECT_EQ(testing::StopServer(*server), 0) << server->Log();
  }
  for (int node : {8, 0}) {
    const std::string flag = absl::StrCat("--node_id=", node);
    auto server = ServerProcess::Start(OptionsFor(dir, {flag}));
    ASSERT_FALSE(server.ok()) << "started with " << flag;
    const std::string message(server.status().message());
    EXPECT_THAT(message, HasSubstr("belongs to node_id 7")) << flag;
    EXPECT_THAT(message,
                HasSubstr(absl::StrCat("this server is node_id ", node, ";")))
        << flag;
    EXPECT_THAT(message, HasSubstr("(--node_id)")) << flag;
    const int code = ExitCodeOf(server.status());
    EXPECT_TRUE(code > 0 && code < 128) << flag << ": " << message;
  }
  // The refusals changed nothing: the right node still starts on it.
  auto server = StartOrFail(OptionsFor(dir, {"--node_id=7"}));
  ASSERT_NE(server, nullptr);
  EXPECT_THAT(server->Log(), HasSubstr("with 1 live records"));
  EXPECT_EQ(testing::StopServer(*server), 0) << server->Log();
}

TEST(StoreFaultTest, ForeignDirectoryIsRefusedAndLeftIntact) {
  TestDir dir("store-foreign");
  const std::string foreign = dir.data_dir();
  fs::create_directories(foreign + "/sub");
  std::mt19937_64 rng(std::random_device{}());
  std::string bytes(4096, '\0');
  for (char& c : bytes) c = static_cast<char>(rng());
  std::ofstream(foreign + "/notes.bin", std::ios::binary) << bytes;
  std::ofstream(foreign + "/sub/keep.txt") << "keep me\n";
  auto listing = [&] {
    std::map<std::string, std::string> out;
    for (const auto& e : fs::recursive_directory_iterator(foreign)) {
      out[e.path().string()] =
          e.is_regular_file() ? ReadFile(e.path().string()) : "";
    }
    return out;
  };
  const auto before = listing();

  // With a key file, and without one (a generated key would be written
  // into the data dir: it must not be, for a dir that is refused).
  for (bool key_file : {true, false}) {
    ServerProcess::Options options = OptionsFor(dir);
    options.key_file = key_file;
    if (!key_file) options.key_path.clear();
    auto server = ServerProcess::Start(options);
    ASSERT_FALSE(server.ok()) << "started on a foreign dir";
    const std::string message(server.status().message());
    EXPECT_THAT(message, HasSubstr("is not a Registrar data directory"));
    EXPECT_THAT(message, HasSubstr("notes.bin"));
    const int code = ExitCodeOf(server.status());
    EXPECT_TRUE(code > 0 && code < 128) << message;
    EXPECT_EQ(listing(), before) << "the foreign dir was changed";
  }
}

}  // namespace
}  // namespace registrar
