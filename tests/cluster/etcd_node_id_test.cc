// service/etcd's NodeIdClaimer against a real 3-member etcd: concurrent
// claimers on separate connections never hold the same id; a released id
// is claimed again; a lost lease is reported; and a claimer process paused
// (SIGSTOP) past its lease stops holding its id before another claimer can
// take it.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "service/etcd/kv.h"
#include "service/etcd/lease.h"
#include "service/etcd/node_id_claimer.h"
#include "tests/cluster/await.h"
#include "tests/cluster/cluster_fixture.h"

#ifndef CLAIMER_CHILD
#error "CLAIMER_CHILD must name the etcd_claimer_child binary"
#endif

namespace registrar::etcd {
namespace {

using ::registrar::testing::Call;
using ::registrar::testing::ClusterTest;
using ::registrar::testing::kAwait;

// The claimer child process, its stdin and stdout as pipes. Killed (and
// reaped) by the destructor.
class Child {
 public:
  explicit Child(std::vector<std::string> args) {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) return;
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      dup2(in[0], 0);
      dup2(out[1], 1);
      close(in[1]);
      close(out[0]);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    to_child_ = in[1];
    from_child_ = out[0];
  }
  ~Child() {
    if (pid_ > 0) {
      kill(pid_, SIGCONT);
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    if (to_child_ >= 0) close(to_child_);
    if (from_child_ >= 0) close(from_child_);
  }
  pid_t pid() const { return pid_; }

  // The next line the child prints, or "" after timeout (waiting on a real
  // child process: poll with a bound).
  std::string ReadLine(absl::Duration timeout = kAwait) {
    const absl::Time deadline = absl::Now() + timeout;
    while (true) {
      const size_t nl = buffer_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buffer_.substr(0, nl);
        buffer_.erase(0, nl + 1);
        return line;
      }
      const absl::Duration left = deadline - absl::Now();
      if (left <= absl::ZeroDuration()) return "";
      pollfd p{from_child_, POLLIN, 0};
      if (poll(&p, 1, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1) <=
          0) {
        continue;
      }
      char chunk[256];
      const ssize_t n = read(from_child_, chunk, sizeof(chunk));
      if (n <= 0) return "";
      buffer_.append(chunk, n);
    }
  }
  bool WriteLine(const std::string& line) {
    const std::string l = line + "\n";
    return write(to_child_, l.data(), l.size()) ==
           static_cast<ssize_t>(l.size());
  }
  // SIGSTOP / SIGCONT, returning once the kernel reports it done.
  bool Stop() {
    int status = 0;
    return kill(pid_, SIGSTOP) == 0 &&
           waitpid(pid_, &status, WUNTRACED) == pid_ && WIFSTOPPED(status);
  }
  bool Continue() {
    int status = 0;
    return kill(pid_, SIGCONT) == 0 &&
           waitpid(pid_, &status, WCONTINUED) == pid_ && WIFCONTINUED(status);
  }

 private:
  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  std::string buffer_;
};

class EtcdNodeIdTest : public ClusterTest {
 protected:
  absl::StatusOr<std::shared_ptr<NodeIdClaimer>> ClaimOn(
      std::shared_ptr<Connection> conn, NodeIdClaimerOptions o,
      std::function<void(const absl::Status&)> on_lost = nullptr) {
    return Call<std::shared_ptr<NodeIdClaimer>>(
        [&](auto cb) { NodeIdClaimer::Claim(conn, clock_, o, on_lost, cb); });
  }

  SystemClock clock_;
};

NodeIdClaimerOptions Options(const std::string& prefix, int max_ids) {
  NodeIdClaimerOptions o;
  o.prefix = prefix;
  o.max_ids = max_ids;
  o.ttl = absl::Seconds(5);
  o.margin = absl::Seconds(1);
  return o;
}

TEST_F(EtcdNodeIdTest, ConcurrentClaimersNeverHoldTheSameId) {
  // Two "replicas", each racing four claims at once.
  std::vector<std::shared_ptr<Connection>> conns = {Connect(), Connect()};
  ASSERT_NE(conns[0], nullptr);
  ASSERT_NE(conns[1], nullptr);
  constexpr int kClaimers = 8;
  std::vector<testing::Await<absl::StatusOr<std::shared_ptr<NodeIdClaimer>>>>
      waits(kClaimers);
  for (int i = 0; i < kClaimers; ++i) {
    NodeIdClaimerOptions o = Options("/ids/race/", kClaimers);
    o.holder = absl::StrCat("claimer-", i);
    NodeIdClaimer::Claim(conns[i % 2], clock_, o, nullptr, waits[i].Callback());
  }
  std::vector<std::shared_ptr<NodeIdClaimer>> claimers;
  for (auto& w : waits) {
    auto r = w.Wait();
    ASSERT_TRUE(r.has_value());
    ASSERT_TRUE(r->ok()) << r->status();
    claimers.push_back(**r);
  }
  ASSERT_EQ(claimers.size(), static_cast<size_t>(kClaimers));
  std::set<int> ids;
  for (const auto& c : claimers) {
    EXPECT_TRUE(c->Held());
    ids.insert(c->id());
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kClaimers)) << "an id twice";
  EXPECT_EQ(*ids.begin(), 0);
  EXPECT_EQ(*ids.rbegin(), kClaimers - 1);

  // etcd agrees: each key is held under its claimer's lease.
  Kv kv(conns[0]);
  for (const auto& c : claimers) {
    pb::RangeRequest req;
    req.set_key(c->key());
    auto r = Call<pb::RangeResponse>([&](auto cb) { kv.Range(req, cb); });
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->kvs_size(), 1);
    EXPECT_EQ(r->kvs(0).lease(), c->lease_id());
  }

  // Full: one more is refused.
  auto extra = ClaimOn(conns[1], Options("/ids/race/", kClaimers));
  EXPECT_TRUE(absl::IsResourceExhausted(extra.status())) << extra.status();

  // A released id is free at once and the next claim takes it.
  std::shared_ptr<NodeIdClaimer> third;
  for (auto& c : claimers) {
    if (c->id() == 3) third = c;
  }
  ASSERT_NE(third, nullptr);
  ASSERT_TRUE(Call<absl::Status>([&](auto cb) { third->Release(cb); })->ok());
  auto again = ClaimOn(conns[1], Options("/ids/race/", kClaimers));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ((*again)->id(), 3);
  for (auto& c : claimers) {
    if (c != third) c->Release([](absl::Status) {});
  }
  (*again)->Release([](absl::Status) {});
}

TEST_F(EtcdNodeIdTest, RevokedLeaseIsReportedAsLoss) {
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  testing::Await<absl::Status> lost;
  NodeIdClaimerOptions o = Options("/ids/revoke/", 4);
  o.keepalive_interval = absl::Milliseconds(100);
  auto claimer = ClaimOn(conn, o, lost.Callback());
  ASSERT_TRUE(claimer.ok()) << claimer.status();
  EXPECT_TRUE((*claimer)->Held());
  Lease lease(conn);
  ASSERT_TRUE(Call<pb::LeaseRevokeResponse>([&](auto cb) {
                lease.Revoke((*claimer)->lease_id(), cb);
              }).ok());
  auto why = lost.Wait();
  ASSERT_TRUE(why.has_value());
  EXPECT_TRUE(absl::IsNotFound(*why)) << *why;
  EXPECT_FALSE((*claimer)->Held());
}

// "status <held> <valid_until_ns> <lost>"
struct ChildStatus {
  bool held = false;
  absl::Time valid_until;
  bool lost = false;
};
std::optional<ChildStatus> ParseStatus(const std::string& line) {
  std::vector<std::string> f = absl::StrSplit(line, ' ');
  int64_t held = 0, ns = 0, lost = 0;
  if (f.size() != 4 || f[0] != "status" || !absl::SimpleAtoi(f[1], &held) ||
      !absl::SimpleAtoi(f[2], &ns) || !absl::SimpleAtoi(f[3], &lost)) {
    return std::nullopt;
  }
  return ChildStatus{held == 1, absl::FromUnixNanos(ns), lost == 1};
}

TEST_F(EtcdNodeIdTest, PausedClaimerStopsHoldingBeforeAnotherTakesItsId) {
  // One id only, so the second claimer can only ever get the first one's.
  constexpr int kTtlSeconds = 2;
  const std::string prefix = "/ids/pause/";
  Child a({CLAIMER_CHILD, absl::StrJoin(cluster_->client_endpoints(), ","),
           prefix, std::to_string(kTtlSeconds), "500", "1"});
  ASSERT_GT(a.pid(), 0);
  const std::string claimed = a.ReadLine();
  ASSERT_EQ(claimed.rfind("claimed 0 ", 0), 0u) << claimed;
  ASSERT_TRUE(a.WriteLine("status"));
  auto before = ParseStatus(a.ReadLine());
  ASSERT_TRUE(before.has_value());
  ASSERT_TRUE(before->held);

  // A stalls (as in a long GC pause or a frozen VM): no keep-alives.
  ASSERT_TRUE(a.Stop());

  // B tries for the id until etcd has expired A's lease and lets it in.
  // B's claim is sent after `b_started`: the earliest moment B can hold it.
  auto conn = Connect();
  ASSERT_NE(conn, nullptr);
  NodeIdClaimerOptions ob = Options(prefix, 1);
  absl::StatusOr<std::shared_ptr<NodeIdClaimer>> b =
      absl::UnknownError("not tried");
  absl::Time b_started;
  int attempts = 0;
  const absl::Time deadline = absl::Now() + kAwait;
  do {
    ++attempts;
    b_started = clock_.Now();
    b = ClaimOn(conn, ob);
  } while (absl::IsResourceExhausted(b.status()) && absl::Now() < deadline);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_GT(attempts, 1) << "B got the id while A's lease still ran";
  EXPECT_EQ((*b)->id(), 0);

  // A runs again. The first thing it is asked: may it still mint with id
  // 0? No — and its fencing deadline had passed before B even asked etcd.
  ASSERT_TRUE(a.Continue());
  ASSERT_TRUE(a.WriteLine("status"));
  auto after = ParseStatus(a.ReadLine());
  ASSERT_TRUE(after.has_value());
  EXPECT_FALSE(after->held);
  EXPECT_LT(after->valid_until, b_started)
      << "A's claim was valid until " << after->valid_until
      << ", B claimed from " << b_started;
  // A also reports the loss (its next tick or etcd's answer).
  bool reported = after->lost;
  const absl::Time report_deadline = absl::Now() + kAwait;
  while (!reported && absl::Now() < report_deadline) {
    ASSERT_TRUE(a.WriteLine("status"));
    auto s = ParseStatus(a.ReadLine());
    ASSERT_TRUE(s.has_value());
    EXPECT_FALSE(s->held);
    reported = s->lost;
  }
  EXPECT_TRUE(reported);
  (*b)->Release([](absl::Status) {});
}

}  // namespace
}  // namespace registrar::etcd
