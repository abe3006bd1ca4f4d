// Watch against the real server binary:
//  - Issue / Cleanup / lease expiry arrive in revision order as ISSUED,
//    RELEASED, EXPIRED with the records' state;
//  - the tenant filter;
//  - a watcher that disconnects and resumes from last + 1 sees exactly
//    what one uninterrupted watch from revision 1 sees (no gap, no
//    duplicate);
//  - OUT_OF_RANGE below the retained history (tiny --event_history), with
//    the oldest available revision in the message, which then works;
//  - a watcher that stops reading is cut off with RESOURCE_EXHAUSTED (and
//    the advice in the message is exact), while an issuer keeps its pace
//    and the server's memory stays bounded;
//  - shutdown ends streams with UNAVAILABLE.

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_util.h"

namespace registrar {
namespace {

using ::registrar::testing::MakeOwner;
using ::registrar::testing::ServerProcess;
using ::registrar::testing::StatusText;
using ::testing::HasSubstr;

constexpr absl::Duration kWait = absl::Seconds(20);

// One Client::Watch running on its own thread, collecting events.
class BackgroundWatch {
 public:
  BackgroundWatch(Client& client, v1::WatchRequest request)
      : thread_([this, &client, request] {
          absl::Status status = client.Watch(
              request,
              [this](const v1::WatchEvent& event) {
                absl::MutexLock lock(&mu_);
                events_.push_back(event);
                return true;
              },
              &context_);
          absl::MutexLock lock(&mu_);
          status_ = status;
          done_ = true;
        }) {}

  ~BackgroundWatch() {
    context_.TryCancel();
    thread_.join();
  }

  // Waits until `n` events arrived (true) or the stream ended / timed out.
  bool WaitForEvents(size_t n, absl::Duration timeout = kWait) {
    absl::MutexLock lock(&mu_);
    auto ready = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return events_.size() >= n || done_;
    };
    mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
    return events_.size() >= n;
  }

  // Waits for the stream to end; its status (nullopt on timeout).
  std::optional<absl::Status> WaitForEnd(absl::Duration timeout = kWait) {
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&done), timeout)) {
      return std::nullopt;
    }
    return status_;
  }

  std::vector<v1::WatchEvent> events() const {
    absl::MutexLock lock(&mu_);
    return events_;
  }

 private:
  grpc::ClientContext context_;
  mutable absl::Mutex mu_;
  std::vector<v1::WatchEvent> events_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: starts once the rest is constructed
};

v1::WatchRequest From(uint64_t start, const std::string& tenant = "") {
  v1::WatchRequest request;
  request.set_start_revision(start);
  request.set_tenant(tenant);
  return request;
}

// "REV TYPE ID STATE" of an event, for readable comparisons.
std::string EventText(const v1::WatchEvent& e) {
  return absl::StrCat(e.revision(), " ", v1::EventType_Name(e.type()), " ",
                      e.record().id(), " ", v1::State_Name(e.record().state()));
}

std::vector<std::string> Texts(const std::vector<v1::WatchEvent>& events) {
  std::vector<std::string> out;
  for (const auto& e : events) out.push_back(EventText(e));
  return out;
}

// Revisions strictly increasing by one.
void ExpectConsecutive(const std::vector<v1::WatchEvent>& events) {
  for (size_t i = 1; i < events.size(); ++i) {
    ASSERT_EQ(events[i].revision(), events[i - 1].revision() + 1)
        << "at " << i << ": " << EventText(events[i - 1]) << " then "
        << EventText(events[i]);
  }
}

// The number N in "oldest available revision is N", or 0.
uint64_t OldestIn(const absl::Status& status) {
  std::smatch m;
  const std::string message(status.message());
  if (!std::regex_search(message, m,
                         std::regex("oldest available revision is ([0-9]+)"))) {
    return 0;
  }
  uint64_t n = 0;
  return absl::SimpleAtoi(m[1].str(), &n) ? n : 0;
}

// Resident memory of a process, bytes (0 if unreadable).
uint64_t RssBytes(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) {
      uint64_t kb = 0;
      std::string digits;
      for (char c : line) {
        if (c >= '0' && c <= '9') digits += c;
      }
      return absl::SimpleAtoi(digits, &kb) ? kb * 1024 : 0;
    }
  }
  return 0;
}

class WatchTest : public ::testing::Test {
 protected:
  void StartServer(std::vector<std::string> args) {
    ServerProcess::Options options;
    options.args = std::move(args);
    auto server = ServerProcess::Start(options);
    ASSERT_TRUE(server.ok()) << StatusText(server.status());
    server_ = *std::move(server);
    client_ = testing::MakeClient(*server_);
  }

  void TearDown() override {
    if (server_ != nullptr && server_->running()) {
      EXPECT_EQ(testing::StopServer(*server_), 0) << server_->Log();
    }
  }

  std::vector<std::string> Issue(v1::Kind kind, const v1::Owner& owner,
                                 uint32_t count = 1,
                                 const IssueOptions& options = {}) {
    auto ids = client_->IssueIds(kind, owner, count, options);
    EXPECT_TRUE(ids.ok()) << StatusText(ids.status());
    return ids.ok() ? *ids : std::vector<std::string>{};
  }

  // The store revision of a record's last change.
  uint64_t RevisionOf(const std::string& id) {
    v1::DescribeRequest request;
    request.set_id(id);
    auto response = client_->Describe(request);
    EXPECT_TRUE(response.ok()) << StatusText(response.status());
    return response.ok() ? response->record().revision() : 0;
  }

  // Watches from `start` until `n` events arrived (OK), or the stream's
  // error.
  absl::StatusOr<std::vector<v1::WatchEvent>> Take(uint64_t start, size_t n) {
    std::vector<v1::WatchEvent> events;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + kWait));
    absl::Status status = client_->Watch(
        From(start),
        [&](const v1::WatchEvent& e) {
          events.push_back(e);
          return events.size() < n;
        },
        &context);
    if (!status.ok()) return status;
    return events;
  }

  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<Client> client_;
};

TEST_F(WatchTest, IssueCleanupAndLeaseExpiryArriveInRevisionOrder) {
  StartServer({"--tick_interval=50ms"});
  BackgroundWatch all(*client_, From(1));
  const v1::Owner alice = MakeOwner("acme", "alice");

  const std::string thread = Issue(v1::KIND_THREAD, alice).at(0);
  const std::string doomed = Issue(v1::KIND_THREAD, alice).at(0);
  v1::GrantLeaseRequest grant;
  grant.set_holder("gateway-1");
  grant.set_ttl_seconds(1);
  auto lease = client_->GrantLease(grant);
  ASSERT_TRUE(lease.ok()) << StatusText(lease.status());
  IssueOptions bound;
  bound.lease_id = lease->lease_id();
  const std::string conn = Issue(v1::KIND_CONNECTION, alice, 1, bound).at(0);
  v1::OpenContextRequest open;
  *open.mutable_owner() = alice;
  open.set_thread_id(thread);
  open.set_connection_id(conn);
  auto context = client_->OpenContext(open);
  ASSERT_TRUE(context.ok()) << StatusText(context.status());
  ASSERT_TRUE(context->thread_reused());
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = alice;
  cleanup.mutable_ids()->add_ids(doomed);
  ASSERT_TRUE(client_->Cleanup(cleanup).ok());
  // The lease is not kept alive: it expires and ends conn, run, request.

  const std::vector<std::string> expected_order_issued = {
      thread, doomed, conn, context->run_id(), context->request_id()};
  ASSERT_TRUE(all.WaitForEvents(9))
      << ::testing::PrintToString(Texts(all.events()));
  const std::vector<v1::WatchEvent> events = all.events();
  ASSERT_EQ(events.size(), 9u) << ::testing::PrintToString(Texts(events));
  ExpectConsecutive(events);
  EXPECT_EQ(events[0].revision(), 1u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(events[i].type(), v1::EVENT_TYPE_ISSUED) << EventText(events[i]);
    EXPECT_EQ(events[i].record().id(), expected_order_issued[i]);
    EXPECT_EQ(events[i].record().state(), v1::STATE_LIVE);
    EXPECT_EQ(events[i].record().owner().tenant(), "acme");
    EXPECT_EQ(events[i].record().owner().user_id(), "alice");
    EXPECT_EQ(events[i].record().revision(), events[i].revision());
  }
  EXPECT_EQ(events[2].record().lease_id(), lease->lease_id());
  EXPECT_EQ(events[3].record().parent_id(), thread);
  EXPECT_EQ(events[3].record().connection_id(), conn);
  EXPECT_EQ(events[5].type(), v1::EVENT_TYPE_RELEASED);
  EXPECT_EQ(events[5].record().id(), doomed);
  EXPECT_EQ(events[5].record().state(), v1::STATE_RELEASED);
  std::set<std::string> expired;
  for (int i = 6; i < 9; ++i) {
    EXPECT_EQ(events[i].type(), v1::EVENT_TYPE_EXPIRED) << EventText(events[i]);
    EXPECT_EQ(events[i].record().state(), v1::STATE_EXPIRED);
    EXPECT_EQ(events[i].record().end_reason(), "lease_expired");
    expired.insert(events[i].record().id());
  }
  EXPECT_EQ(expired, (std::set<std::string>{conn, context->run_id(),
                                            context->request_id()}));
  // The record's revision is the one of its last event.
  EXPECT_EQ(RevisionOf(doomed), events[5].revision());

  // Shutdown ends the stream with UNAVAILABLE.
  EXPECT_EQ(testing::StopServer(*server_), 0) << server_->Log();
  std::optional<absl::Status> end = all.WaitForEnd();
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->code(), absl::StatusCode::kUnavailable) << StatusText(*end);
}

TEST_F(WatchTest, TenantFilter) {
  StartServer({});
  BackgroundWatch globex(*client_, From(1, "globex"));
  std::vector<std::string> globex_ids;
  for (int i = 0; i < 20; ++i) {
    Issue(v1::KIND_THREAD, MakeOwner("acme", "alice"), 3);
    for (const std::string& id :
         Issue(v1::KIND_RUN, MakeOwner("globex", "alice"), 1 + i % 2)) {
      globex_ids.push_back(id);
    }
    Issue(v1::KIND_CONNECTION, MakeOwner("globex-2", "bob"));  // not a prefix
  }
  ASSERT_TRUE(globex.WaitForEvents(globex_ids.size()));
  // Nothing else arrives: a last event of globex marks the end.
  const std::string last = Issue(v1::KIND_THREAD, MakeOwner("globex", "x"))[0];
  globex_ids.push_back(last);
  ASSERT_TRUE(globex.WaitForEvents(globex_ids.size()));
  const std::vector<v1::WatchEvent> events = globex.events();
  std::vector<std::string> got;
  for (size_t i = 0; i < events.size(); ++i) {
    got.push_back(events[i].record().id());
    EXPECT_EQ(events[i].record().owner().tenant(), "globex");
    if (i > 0) {
      EXPECT_GT(events[i].revision(), events[i - 1].revision());
    }
  }
  EXPECT_EQ(got, globex_ids);
}

TEST_F(WatchTest, ResumeFromLastPlusOneHasNoGapAndNoDuplicate) {
  StartServer({"--tick_interval=50ms"});
  BackgroundWatch full(*client_, From(1));
  std::atomic<bool> issuing{true};
  std::atomic<uint64_t> issued_events{0};
  auto issue_all = [&] {
    ClientOptions options;
    options.target = server_->grpc_address();
    Client client(options);
    for (int i = 0; i < 400; ++i) {
      const v1::Owner owner = MakeOwner(i % 2 ? "acme" : "globex", "u");
      auto ids = client.IssueIds(v1::KIND_THREAD, owner, 1 + i % 3);
      ASSERT_TRUE(ids.ok()) << StatusText(ids.status());
      issued_events += ids->size();
      if (i % 10 == 9) {
        v1::CleanupRequest cleanup;
        *cleanup.mutable_owner() = owner;
        cleanup.set_all_owned(true);
        auto released = client.Cleanup(cleanup);
        ASSERT_TRUE(released.ok()) << StatusText(released.status());
        issued_events += released->released_size();
      }
    }
  };
  std::thread issuer([&] {
    issue_all();
    issuing = false;
  });

  // Reads a few events at a time, disconnecting after each chunk, and
  // resumes from the last received revision + 1.
  std::vector<v1::WatchEvent> resumed;
  const size_t chunks[] = {1, 7, 64, 3, 200, 2};
  uint64_t next = 1;
  int reconnects = 0;
  const absl::Time give_up = absl::Now() + absl::Seconds(120);
  for (int round = 0; absl::Now() < give_up; ++round) {
    const bool was_issuing = issuing.load();
    const size_t want = chunks[round % std::size(chunks)];
    size_t got = 0;
    grpc::ClientContext context;
    // A round may wait for more than will come; the deadline ends it. Once
    // everything is issued, a round that times out has read everything.
    context.set_deadline(absl::ToChronoTime(
        absl::Now() +
        (was_issuing ? absl::Seconds(2) : absl::Milliseconds(500))));
    absl::Status status = client_->Watch(
        From(next),
        [&](const v1::WatchEvent& e) {
          resumed.push_back(e);
          return ++got < want;
        },
        &context);
    if (!resumed.empty()) next = resumed.back().revision() + 1;
    ++reconnects;
    if (status.code() == absl::StatusCode::kDeadlineExceeded) {
      if (!was_issuing) break;  // caught up with everything
      continue;
    }
    if (!status.ok()) {
      ADD_FAILURE() << StatusText(status);
      break;
    }
  }
  issuer.join();
  const uint64_t total = issued_events.load();
  ASSERT_TRUE(full.WaitForEvents(total));
  const std::vector<v1::WatchEvent> reference = full.events();
  EXPECT_GT(reconnects, 10);
  ASSERT_EQ(resumed.size(), total);
  EXPECT_EQ(Texts(resumed), Texts(reference));
  ExpectConsecutive(reference);
}

TEST_F(WatchTest, StartBelowTheRetainedHistoryIsOutOfRange) {
  StartServer({"--event_history=100", "--tick_interval=50ms"});
  for (int i = 0; i < 3; ++i) {
    Issue(v1::KIND_THREAD, MakeOwner("acme", "alice"), 100);
  }
  // The registry compacts on its ticker, in steps (one may come between
  // the Issue calls): wait for its last step, to 300 - event_history, so
  // that nothing moves the oldest revision during the checks below.
  // The ticker runs in the server process: poll it (bounded).
  absl::Status status;
  testing::PollUntil(
      [&] {
        status = Take(1, 1).status();
        return !status.ok() && OldestIn(status) >= 200;
      },
      kWait);
  ASSERT_EQ(status.code(), absl::StatusCode::kOutOfRange) << StatusText(status);
  const uint64_t oldest = OldestIn(status);
  ASSERT_GE(oldest, 200u) << StatusText(status);
  EXPECT_LE(oldest, 201u) << "at most event_history + 10% kept";

  // The revision the message names is available; the one before is not.
  auto from_oldest = Take(oldest, 3);
  ASSERT_TRUE(from_oldest.ok()) << StatusText(from_oldest.status());
  EXPECT_EQ((*from_oldest)[0].revision(), oldest);
  ExpectConsecutive(*from_oldest);
  auto before = Take(oldest - 1, 1);
  EXPECT_EQ(before.status().code(), absl::StatusCode::kOutOfRange);
  EXPECT_EQ(OldestIn(before.status()), oldest);
}

// A watcher that stops reading costs the server a cursor and one batch, not
// a queue: issuers are never blocked or refused, memory stays flat, and once
// it is max_lag behind it is ended with RESOURCE_EXHAUSTED saying where to
// resume. (What it costs issuers in throughput is a speed figure, measured
// by bench/stalled_watcher.sh and reported in bench/RESULTS.md, not here.)
TEST_F(WatchTest, StalledWatcherIsCutOffWhileIssuersNeverBlock) {
  constexpr int kMaxLag = 20000;
  StartServer({"--store=memory", "--event_history=60000",
               absl::StrCat("--watch_max_lag=", kMaxLag),
               "--tombstone_retention=0s", "--tick_interval=50ms"});
  const v1::Owner bulk = MakeOwner("bulk", "loader");
  IssueOptions heavy;  // ~4 KB of labels per record (shared in the store)
  for (int i = 0; i < 16; ++i) {
    heavy.labels[absl::StrCat("label-", i)] = std::string(250, 'a' + i);
  }
  // Issues 500 heavy records and releases them: 1000 revisions.
  auto churn = [&](int rounds) {
    for (int i = 0; i < rounds; ++i) {
      ASSERT_EQ(Issue(v1::KIND_THREAD, bulk, 500, heavy).size(), 500u);
      v1::CleanupRequest cleanup;
      *cleanup.mutable_owner() = bulk;
      cleanup.set_all_owned(true);
      auto released = client_->Cleanup(cleanup);
      ASSERT_TRUE(released.ok()) << StatusText(released.status());
    }
  };

  // Warm up: the store's history fills to its cap, so from here on the
  // server's memory should not grow.
  churn(70);

  // The stalled watcher: its own connection (so its full flow-control
  // window cannot hold up anyone else), never reads until told.
  const uint64_t start = RevisionOf(Issue(v1::KIND_THREAD, bulk)[0]) + 1;
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  auto stub = v1::Registrar::NewStub(grpc::CreateCustomChannel(
      server_->grpc_address(), grpc::InsecureChannelCredentials(), args));
  grpc::ClientContext stalled_context;
  auto stalled = stub->Watch(&stalled_context, From(start));
  churn(2);  // enough to fill its flow-control window (it reads from start)

  // Issuers while it is stalled: every call answers, OK, within the
  // client's deadline (a blocked issuer would run into it).
  const v1::Owner pace = MakeOwner("pace", "issuer");
  constexpr int kCalls = 2000;
  for (int i = 0; i < kCalls; ++i) {
    auto ids = client_->IssueIds(v1::KIND_REQUEST, pace);
    ASSERT_TRUE(ids.ok()) << "call " << i << " while a watcher is stalled: "
                          << StatusText(ids.status());
  }
  // After those (live) records: what follows is only what the watcher does
  // not read.
  const uint64_t rss_before = RssBytes(server_->pid());

  // Past max_lag: ~30 MB of events the watcher did not take.
  churn(30);
  const uint64_t rss_after = RssBytes(server_->pid());
  std::cout << "server VmRSS: " << rss_before / 1024 << " kB -> "
            << rss_after / 1024 << " kB\n";
  ASSERT_GT(rss_before, 0u);
  EXPECT_LT(rss_after, rss_before + (24 << 20))
      << "memory must not grow with what a stalled watcher did not read";

  // Now it reads: what was in flight, in order, then the cut-off.
  std::vector<v1::WatchEvent> got;
  v1::WatchEvent event;
  while (stalled->Read(&event)) got.push_back(event);
  const grpc::Status cut = stalled->Finish();
  ASSERT_EQ(cut.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << cut.error_message();
  EXPECT_THAT(cut.error_message(), HasSubstr("watcher too slow: "));
  EXPECT_THAT(cut.error_message(),
              HasSubstr(absl::StrCat("(limit ", kMaxLag, ")")));
  ASSERT_FALSE(got.empty());
  // It really was stalled: the server held back all but a flow-control
  // window's worth.
  EXPECT_LT(got.size(), static_cast<size_t>(kMaxLag));
  EXPECT_EQ(got.front().revision(), start);
  ExpectConsecutive(got);
  const uint64_t resume = got.back().revision() + 1;
  EXPECT_THAT(cut.error_message(),
              HasSubstr(absl::StrCat("resume with start_revision=", resume)));

  // And the advice works: the stream goes on exactly where it stopped.
  auto resumed = Take(resume, 2);
  ASSERT_TRUE(resumed.ok()) << StatusText(resumed.status());
  EXPECT_EQ((*resumed)[0].revision(), resume);
}

// registrarctl watch: one line per event, or JSON lines; --limit ends it;
// an error is reported with its code.
TEST_F(WatchTest, RegistrarctlWatch) {
  StartServer({});
  const v1::Owner alice = MakeOwner("acme", "alice");
  const std::vector<std::string> ids = Issue(v1::KIND_THREAD, alice, 2);
  Issue(v1::KIND_CONNECTION, MakeOwner("globex", "bob"));
  v1::CleanupRequest cleanup;
  *cleanup.mutable_owner() = alice;
  cleanup.mutable_ids()->add_ids(ids[0]);
  ASSERT_TRUE(client_->Cleanup(cleanup).ok());

  // Runs `registrarctl --target=<server> args...`, stderr into stdout.
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "--target=" + server_->grpc_address());
    testing::CliResult r = testing::RunCli(args, /*err_file=*/"");
    return std::make_pair(r.exit_code, r.out);
  };

  auto [code, out] = run({"watch", "--from=1", "--limit=4"});
  EXPECT_EQ(code, 0) << out;
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u) << out;
  EXPECT_EQ(lines[0],
            absl::StrCat("1 ISSUED ", ids[0], " owner=acme/alice LIVE"));
  EXPECT_EQ(lines[1],
            absl::StrCat("2 ISSUED ", ids[1], " owner=acme/alice LIVE"));
  EXPECT_THAT(lines[2], ::testing::StartsWith("3 ISSUED conn_"));
  EXPECT_THAT(lines[2], ::testing::EndsWith(" owner=globex/bob LIVE"));
  EXPECT_EQ(lines[3],
            absl::StrCat("4 RELEASED ", ids[0], " owner=acme/alice RELEASED"));

  std::tie(code, out) =
      run({"--json", "watch", "--from=2", "--tenant=acme", "--limit=2"});
  EXPECT_EQ(code, 0) << out;
  lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << out;
  EXPECT_THAT(lines[0], HasSubstr("\"revision\":\"2\""));
  EXPECT_THAT(lines[0], HasSubstr("\"type\":\"EVENT_TYPE_ISSUED\""));
  EXPECT_THAT(lines[1], HasSubstr("\"revision\":\"4\""));
  EXPECT_THAT(lines[1], HasSubstr("\"type\":\"EVENT_TYPE_RELEASED\""));
  EXPECT_THAT(lines[1], HasSubstr(ids[0]));

  std::tie(code, out) = run({"watch", "--tenant=\x01"});  // a control character
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("watch: INVALID_ARGUMENT"));
  std::tie(code, out) = run({"watch", "--limit=0"});
  EXPECT_EQ(code, 2) << out;
}

}  // namespace
}  // namespace registrar
