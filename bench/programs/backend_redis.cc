// The redis backend: the same workloads against a real redis-server through
// hiredis (synchronous API). Every closed-loop slot (--concurrency) is a
// worker thread with its own connection; operations are queued to the
// workers, so in open loop (--rate) at most --concurrency run at once and
// the queueing counts in the latency.
//
// A record is a key: the ID, made by the client in the registrar's text
// form (LocalIds), holding the owner ("<tenant>/user-<n>") with a TTL of
// --lease_ttl seconds. Redis has no leases: a key's TTL plays that role.
// With --redis_pipeline (default) the commands of one operation go in one
// round trip; without it, one round trip per command.
//   issue         SET id owner EX ttl
//   issue-batch   --batch SETs
//   validate      --batch GETs; VALID means the value is the call's owner
//   cleanup       --batch DELs; with --children=N: SMEMBERS children:<conn>
//                 then one DEL of the connection, its N children and the set
//                 (written at setup): 2 round trips
//   open-context  GET thread (when reusing) + SET run + SET request, then
//                 SET a new thread when the old one is not the owner's
//   lease         EXPIRE of one of --leases keys set at setup
//   connection    --batch SETs of connection IDs (EX ttl)
//   gateway       SET connection EX ttl; EXPIRE it (the keep-alive); per
//                 message GET thread + SET run + SET request + SADD
//                 children:<conn> (then SET a new thread on the first
//                 message) and GET thread + GET run; at disconnect the
//                 cleanup above.

#include "bench/programs/backend.h"

#ifdef REGISTRAR_BENCH_HAVE_HIREDIS

#include <hiredis/hiredis.h>
#include <sys/time.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <deque>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace registrar::bench {
namespace {

struct ReplyFree {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyFree>;

bool IsOk(const redisReply* r) {
  return r->type == REDIS_REPLY_STATUS &&
         absl::string_view(r->str, r->len) == "OK";
}
bool IsString(const redisReply* r, const std::string& value) {
  return r->type == REDIS_REPLY_STRING &&
         absl::string_view(r->str, r->len) == value;
}

// One connection: commands are added, then Flush() sends them and reads
// their replies (in one round trip when pipelined).
class RedisConn {
 public:
  RedisConn(bool pipelined) : pipelined_(pipelined) {}
  ~RedisConn() {
    if (c_ != nullptr) redisFree(c_);
  }

  bool Connect(const std::string& host, int port, std::string* error) {
    const timeval timeout = {10, 0};
    c_ = redisConnectWithTimeout(host.c_str(), port, timeout);
    if (c_ == nullptr || c_->err) {
      *error = c_ == nullptr ? "out of memory" : c_->errstr;
      return false;
    }
    return true;
  }

  void Cmd(std::initializer_list<absl::string_view> args) {
    const char* argv[8];
    size_t len[8];
    int n = 0;
    for (absl::string_view a : args) {
      argv[n] = a.data();
      len[n] = a.size();
      ++n;
    }
    CmdArgv(n, argv, len);
  }

  void CmdArgv(int argc, const char** argv, const size_t* len) {
    if (redisAppendCommandArgv(c_, argc, argv, len) != REDIS_OK) {
      broken_ = true;
      return;
    }
    ++queued_;
    if (!pipelined_) ReadReplies();
  }

  // Sends what was added and reads the replies into replies(). False when
  // the connection failed or a reply is an error (see Failure()).
  bool Flush() {
    ReadReplies();
    if (broken_) return false;
    for (const Reply& r : replies_) {
      if (r->type == REDIS_REPLY_ERROR) return false;
    }
    return true;
  }

  CallResult Failure() const {
    CallResult r;
    if (broken_) {
      r.code = kCodeUnavailable;
      r.message = c_->err ? c_->errstr : "redis connection failed";
      return r;
    }
    r.code = kCodeUnknown;
    for (const Reply& reply : replies_) {
      if (reply->type == REDIS_REPLY_ERROR) {
        r.message.assign(reply->str, reply->len);
        break;
      }
    }
    return r;
  }

  const std::vector<Reply>& replies() const { return replies_; }
  void Clear() { replies_.clear(); }
  uint32_t round_trips() const { return round_trips_; }
  void ResetRoundTrips() { round_trips_ = 0; }

 private:
  void ReadReplies() {
    if (queued_ == 0) return;
    if (!broken_) ++round_trips_;
    for (; queued_ > 0; --queued_) {
      if (broken_) continue;
      void* reply = nullptr;
      if (redisGetReply(c_, &reply) != REDIS_OK || reply == nullptr) {
        broken_ = true;
        continue;
      }
      replies_.emplace_back(static_cast<redisReply*>(reply));
    }
  }

  const bool pipelined_;
  redisContext* c_ = nullptr;
  bool broken_ = false;
  int queued_ = 0;
  std::vector<Reply> replies_;
  uint32_t round_trips_ = 0;
};

std::string Children(const std::string& conn) {
  return absl::StrCat("children:", conn);
}

class RedisBackend final : public Backend {
 public:
  explicit RedisBackend(const BenchOptions& opts)
      : opts_(opts),
        last_thread_(opts.owners),
        ttl_(absl::StrCat(opts.lease_ttl)) {}
  ~RedisBackend() override { Stop(); }

  bool Setup(CompletionSink* sink) override;
  bool Fire(uint64_t k, const CallToken& token) override;
  void Stop() override;
  uint64_t setup_calls() const override { return setup_calls_.load(); }

 private:
  struct Job {
    uint64_t k;
    CallToken token;
  };

  bool Connect(RedisConn* conn);
  void Work(std::unique_ptr<RedisConn> conn);
  CallResult Execute(RedisConn& c, uint64_t k);
  // Releases a connection with its children: SMEMBERS, then one DEL.
  bool ReleaseConnection(RedisConn& c, const std::string& conn,
                         uint64_t* released);
  void Set(RedisConn& c, const std::string& key, const std::string& value) {
    c.Cmd({"SET", key, value, "EX", ttl_});
  }
  // Sends setup's commands (one setup call) and clears the replies; false
  // after printing why.
  bool FlushSetup(RedisConn& c);
  bool FillOwnerPools(int64_t per_owner);
  bool FillConnections(int64_t n);

  const BenchOptions opts_;
  CompletionSink* sink_ = nullptr;
  std::string host_;
  int port_ = 6379;
  LocalIds ids_;
  std::vector<std::string> owners_;
  std::vector<std::string> leases_;             // lease workload: keys
  std::vector<std::vector<std::string>> pool_;  // validate, cleanup
  std::vector<std::string> connections_;        // cleanup --children
  LastThreads last_thread_;
  const std::string ttl_;
  std::atomic<uint64_t> setup_calls_{0};

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

bool RedisBackend::Connect(RedisConn* conn) {
  std::string error;
  if (!conn->Connect(host_, port_, &error)) {
    std::fprintf(stderr, "cannot connect to redis at %s: %s\n",
                 opts_.target.c_str(), error.c_str());
    return false;
  }
  return true;
}

bool RedisBackend::FlushSetup(RedisConn& c) {
  setup_calls_.fetch_add(1, std::memory_order_relaxed);
  if (!c.Flush()) {
    std::fprintf(stderr, "setup failed: %s\n", c.Failure().message.c_str());
    return false;
  }
  c.Clear();
  return true;
}

bool RedisBackend::FillOwnerPools(int64_t per_owner) {
  pool_.resize(opts_.owners);
  return ParallelFor(opts_.owners, 4, [&](int b, int e) {
    RedisConn c(/*pipelined=*/true);
    if (!Connect(&c)) return false;
    for (int o = b; o < e; ++o) {
      for (int64_t i = 0; i < per_owner; ++i) {
        pool_[o].push_back(ids_.Next(IdKind::kThread));
        Set(c, pool_[o].back(), owners_[o]);
      }
      if (!FlushSetup(c)) return false;
    }
    return true;
  });
}

bool RedisBackend::FillConnections(int64_t n) {
  connections_.resize(n);
  return ParallelFor(static_cast<int>(n), 4, [&](int b, int e) {
    RedisConn c(/*pipelined=*/true);
    if (!Connect(&c)) return false;
    std::vector<std::string> children;
    for (int i = b; i < e; ++i) {
      const std::string& owner = owners_[i % opts_.owners];
      connections_[i] = ids_.Next(IdKind::kConnection);
      Set(c, connections_[i], owner);
      children.clear();
      for (int j = 0; j < opts_.children; ++j) {
        children.push_back(ids_.Next(IdKind::kRun));
        Set(c, children.back(), owner);
      }
      const std::string set = Children(connections_[i]);
      std::vector<const char*> argv = {"SADD", set.c_str()};
      std::vector<size_t> len = {4, set.size()};
      for (const std::string& child : children) {
        argv.push_back(child.c_str());
        len.push_back(child.size());
      }
      c.CmdArgv(static_cast<int>(argv.size()), argv.data(), len.data());
      if (!FlushSetup(c)) return false;
    }
    return true;
  });
}

bool RedisBackend::Setup(CompletionSink* sink) {
  sink_ = sink;
  const size_t colon = opts_.target.rfind(':');
  host_ = opts_.target.substr(0, colon);
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(opts_.target.substr(colon + 1), &port_)) {
    std::fprintf(stderr, "--target=%s: expected host:port\n",
                 opts_.target.c_str());
    return false;
  }
  for (int i = 0; i < opts_.owners; ++i) {
    owners_.push_back(OwnerValue(opts_.tenant, i));
  }
  const int64_t setup_start = NowNs();
  const Workload w = opts_.workload;
  if (w == Workload::kLease) {
    RedisConn c(true);
    if (!Connect(&c)) return false;
    for (int i = 0; i < std::max(1, opts_.leases); ++i) {
      leases_.push_back(
          absl::StrCat("lease:registrar-bench-", getpid(), "-", i));
      Set(c, leases_.back(), "holder");
    }
    if (!FlushSetup(c)) return false;
  }
  const SetupPools pools = PlanSetupPools(opts_);
  if (pools.ids_per_owner > 0 && !FillOwnerPools(pools.ids_per_owner)) {
    return false;
  }
  if (pools.connections > 0 && !FillConnections(pools.connections)) {
    return false;
  }
  PrintSetupLine({"keys", "connections", "lease keys"}, setup_start, pool_,
                 connections_.size(), leases_.size());
  // The workers, each with its connection.
  std::vector<std::unique_ptr<RedisConn>> conns;
  for (int i = 0; i < opts_.concurrency; ++i) {
    conns.push_back(std::make_unique<RedisConn>(opts_.redis_pipeline));
    if (!Connect(conns.back().get())) return false;
  }
  for (auto& conn : conns) {
    workers_.emplace_back(
        [this, c = conn.release()] { Work(std::unique_ptr<RedisConn>(c)); });
  }
  return true;
}

bool RedisBackend::Fire(uint64_t k, const CallToken& token) {
  if (opts_.workload == Workload::kCleanup) {
    if (opts_.children > 0) {
      if (k >= connections_.size()) return false;
    } else {
      const size_t pos = (k / static_cast<uint64_t>(opts_.owners)) *
                         static_cast<uint64_t>(opts_.batch);
      const size_t o = k % static_cast<uint64_t>(opts_.owners);
      if (pos + opts_.batch > pool_[o].size()) return false;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    jobs_.push_back(Job{k, token});
  }
  cv_.notify_one();
  return true;
}

void RedisBackend::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
}

void RedisBackend::Work(std::unique_ptr<RedisConn> conn) {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = jobs_.front();
      jobs_.pop_front();
    }
    conn->ResetRoundTrips();
    CallResult result = Execute(*conn, job.k);
    result.rpcs = std::max<uint32_t>(1, conn->round_trips());
    conn->Clear();
    sink_->Done(job.token, std::move(result));
  }
}

bool RedisBackend::ReleaseConnection(RedisConn& c, const std::string& conn,
                                     uint64_t* released) {
  const std::string set = Children(conn);
  c.Cmd({"SMEMBERS", set});
  if (!c.Flush()) return false;
  std::vector<const char*> argv = {"DEL", conn.c_str(), set.c_str()};
  std::vector<size_t> len = {3, conn.size(), set.size()};
  const redisReply* members = c.replies().back().get();
  if (members->type == REDIS_REPLY_ARRAY) {
    for (size_t i = 0; i < members->elements; ++i) {
      argv.push_back(members->element[i]->str);
      len.push_back(members->element[i]->len);
    }
  }
  c.CmdArgv(static_cast<int>(argv.size()), argv.data(), len.data());
  if (!c.Flush()) return false;
  const redisReply* del = c.replies().back().get();
  // DEL counts the set too.
  *released = del->type == REDIS_REPLY_INTEGER && del->integer > 0
                  ? static_cast<uint64_t>(del->integer - 1)
                  : 0;
  return true;
}

CallResult RedisBackend::Execute(RedisConn& c, uint64_t k) {
  const int o = static_cast<int>(k % static_cast<uint64_t>(opts_.owners));
  const std::string& owner = owners_[o];
  CallResult out;
  switch (opts_.workload) {
    case Workload::kIssue:
    case Workload::kIssueBatch:
    case Workload::kConnection: {
      const IdKind kind = opts_.workload == Workload::kConnection
                              ? IdKind::kConnection
                              : opts_.kind;
      for (int i = 0; i < opts_.batch; ++i) Set(c, ids_.Next(kind), owner);
      if (!c.Flush()) return c.Failure();
      for (const Reply& r : c.replies()) {
        if (IsOk(r.get())) ++out.items;
      }
      out.unexpected = opts_.batch - out.items;
      return out;
    }
    case Workload::kValidate: {
      const std::vector<std::string>& ids = pool_[o];
      uint64_t r = SplitMix(k);
      for (int i = 0; i < opts_.batch; ++i) {
        c.Cmd({"GET", ids[r % ids.size()]});
        r = SplitMix(r);
      }
      if (!c.Flush()) return c.Failure();
      for (const Reply& reply : c.replies()) {
        ++out.items;
        if (!IsString(reply.get(), owner)) ++out.unexpected;
      }
      return out;
    }
    case Workload::kCleanup: {
      if (opts_.children > 0) {
        if (!ReleaseConnection(c, connections_[k], &out.items)) {
          return c.Failure();
        }
        if (out.items != static_cast<uint64_t>(opts_.children) + 1) {
          out.unexpected = 1;
        }
        return out;
      }
      const size_t pos = (k / static_cast<uint64_t>(opts_.owners)) *
                         static_cast<uint64_t>(opts_.batch);
      for (int i = 0; i < opts_.batch; ++i) c.Cmd({"DEL", pool_[o][pos + i]});
      if (!c.Flush()) return c.Failure();
      for (const Reply& r : c.replies()) {
        if (r->type == REDIS_REPLY_INTEGER) out.items += r->integer;
      }
      out.unexpected = opts_.batch - out.items;
      return out;
    }
    case Workload::kOpenContext: {
      std::string thread;
      if (UnitRandom(k) < opts_.reuse) thread = last_thread_.Get(o);
      if (!thread.empty()) c.Cmd({"GET", thread});
      Set(c, ids_.Next(IdKind::kRun), owner);
      Set(c, ids_.Next(IdKind::kRequest), owner);
      if (!c.Flush()) return c.Failure();
      if (!thread.empty() && IsString(c.replies()[0].get(), owner)) {
        out.items = 2;
        return out;
      }
      thread = ids_.Next(IdKind::kThread);
      Set(c, thread, owner);
      if (!c.Flush()) return c.Failure();
      last_thread_.Set(o, thread);
      out.items = 3;
      return out;
    }
    case Workload::kLease: {
      c.Cmd({"EXPIRE", leases_[k % leases_.size()], ttl_});
      if (!c.Flush()) return c.Failure();
      const redisReply* r = c.replies()[0].get();
      out.items = 1;
      if (r->type != REDIS_REPLY_INTEGER || r->integer != 1) ++out.unexpected;
      return out;
    }
    case Workload::kGateway: {
      const std::string conn = ids_.Next(IdKind::kConnection);
      const std::string set = Children(conn);
      Set(c, conn, owner);
      if (!c.Flush()) return c.Failure();
      c.Cmd({"EXPIRE", conn, ttl_});
      if (!c.Flush()) return c.Failure();
      std::string thread;
      for (int m = 0; m < opts_.messages; ++m) {
        // Open the context.
        c.Clear();
        const std::string run = ids_.Next(IdKind::kRun);
        const std::string req = ids_.Next(IdKind::kRequest);
        if (!thread.empty()) c.Cmd({"GET", thread});
        Set(c, run, owner);
        Set(c, req, owner);
        c.Cmd({"SADD", set, run, req});
        if (!c.Flush()) return c.Failure();
        if (thread.empty() || !IsString(c.replies()[0].get(), owner)) {
          if (!thread.empty()) ++out.unexpected;
          thread = ids_.Next(IdKind::kThread);
          Set(c, thread, owner);
          if (!c.Flush()) return c.Failure();
        }
        // Validate thread and run.
        c.Clear();
        c.Cmd({"GET", thread});
        c.Cmd({"GET", run});
        if (!c.Flush()) return c.Failure();
        for (const Reply& r : c.replies()) {
          if (!IsString(r.get(), owner)) ++out.unexpected;
        }
      }
      c.Clear();
      uint64_t released = 0;
      if (!ReleaseConnection(c, conn, &released)) return c.Failure();
      if (released != 1 + 2 * static_cast<uint64_t>(opts_.messages)) {
        ++out.unexpected;
      }
      out.items = c.round_trips();
      return out;
    }
  }
  return out;
}

}  // namespace

std::unique_ptr<Backend> MakeRedisBackend(const BenchOptions& opts) {
  return std::make_unique<RedisBackend>(opts);
}

}  // namespace registrar::bench

#else  // !REGISTRAR_BENCH_HAVE_HIREDIS

#include <cstdio>

namespace registrar::bench {

std::unique_ptr<Backend> MakeRedisBackend(const BenchOptions&) {
  std::fprintf(stderr,
               "registrar-bench was built without hiredis (install "
               "libhiredis-dev and reconfigure): no redis backend\n");
  return nullptr;
}

}  // namespace registrar::bench

#endif  // REGISTRAR_BENCH_HAVE_HIREDIS
