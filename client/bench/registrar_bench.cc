// registrar-bench: a load generator for a running registrar.
//
// Uses the gRPC callback client API: `--concurrency` calls in flight (closed
// loop), or calls started on a fixed schedule (`--rate`, open loop: latency
// is measured from the scheduled start, so a server stall is not hidden by
// the generator waiting for it; "coordinated omission"). Calls whose start
// falls in the measurement window (after `--warmup`, for `--duration`) are
// counted; calls still in flight at the end are waited for and counted too.
//
// Workloads (one RPC per call):
//   issue         Issue, count 1, --kind (default thread)
//   issue-batch   Issue, count --batch (default 100)
//   validate      Validate of --batch (default 10) IDs of the call's owner,
//                 drawn from a pool issued during setup (all VALID)
//   cleanup       Cleanup of --batch (default 1) IDs issued during setup
//                 (--pool IDs in all; the run ends early when it runs out)
//   open-context  OpenContext; a fraction --reuse names the owner's last
//                 thread (reused), the rest mint a new one
//   lease         KeepAlive round-robin over --leases leases granted at setup
//   connection    Issue of one KIND_CONNECTION bound to one of --leases
//                 leases: the durable "connection registration"
// Calls spread round-robin over --owners owners (tenant --tenant, users
// "user-<n>"), so the registry's shards are all used.
//
// Output: a human-readable summary, then ONE JSON line for scripts.

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <sys/resource.h>
#include <unistd.h>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "client/bench/histogram.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "registrar/v1/registrar.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:50051", "registrar gRPC address");
ABSL_FLAG(std::string, workload, "issue",
          "issue | issue-batch | validate | cleanup | open-context | lease | "
          "connection");
ABSL_FLAG(int, concurrency, 16,
          "Calls in flight (closed loop). With --rate: the number of setup "
          "slots only; in-flight calls are bounded by --max_inflight");
ABSL_FLAG(int, channels, 1,
          "gRPC channels (each its own TCP connection); calls are spread "
          "round-robin");
ABSL_FLAG(int, batch, 0,
          "IDs per Issue for issue-batch (default 100), items per Validate "
          "(default 10), IDs per Cleanup (default 1)");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(10), "Measured time");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(2),
          "Time before the measurement window (calls not counted)");
ABSL_FLAG(int, owners, 1000, "Distinct owners the calls spread over");
ABSL_FLAG(double, rate, 0,
          "Open loop: calls per second on a fixed schedule, latency from the "
          "scheduled time. 0 = closed loop (--concurrency calls in flight)");
ABSL_FLAG(int, max_inflight, 20000,
          "Open loop: most calls in flight; beyond it the sender waits (the "
          "wait still counts in latency)");
ABSL_FLAG(std::string, kind, "thread",
          "Kind for issue / issue-batch: thread, run, request, connection");
ABSL_FLAG(std::string, tenant, "bench", "Tenant of every owner");
ABSL_FLAG(int, leases, 16, "Leases granted at setup (lease, connection)");
ABSL_FLAG(uint32_t, lease_ttl, 600, "TTL of the setup leases, seconds");
ABSL_FLAG(int, pool, 0,
          "validate: IDs per owner in the pool (default 100); cleanup: IDs in "
          "all (default: enough for the run at --rate, else 300000)");
ABSL_FLAG(double, reuse, 0.9,
          "open-context: fraction of calls that name the owner's last thread");
ABSL_FLAG(absl::Duration, deadline, absl::Seconds(10), "Per-call deadline");
ABSL_FLAG(std::string, label, "", "Free text copied into the JSON line");

namespace registrar::bench {
namespace {

namespace v1 = ::registrar::v1;
using SteadyClock = std::chrono::steady_clock;

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             SteadyClock::now().time_since_epoch())
      .count();
}

uint64_t SplitMix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

constexpr int kNumCodes = 17;
const char* CodeName(int code) {
  static const char* kNames[kNumCodes] = {
      "OK",        "CANCELLED",         "UNKNOWN",           "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",    "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",     "UNAVAILABLE",       "DATA_LOSS",
      "UNAUTHENTICATED"};
  return code >= 0 && code < kNumCodes ? kNames[code] : "CODE?";
}

enum class Workload {
  kIssue,
  kIssueBatch,
  kValidate,
  kCleanup,
  kOpenContext,
  kLease,
  kConnection
};

bool ParseWorkload(const std::string& s, Workload* w) {
  if (s == "issue") *w = Workload::kIssue;
  else if (s == "issue-batch") *w = Workload::kIssueBatch;
  else if (s == "validate") *w = Workload::kValidate;
  else if (s == "cleanup") *w = Workload::kCleanup;
  else if (s == "open-context") *w = Workload::kOpenContext;
  else if (s == "lease") *w = Workload::kLease;
  else if (s == "connection") *w = Workload::kConnection;
  else return false;
  return true;
}

bool ParseKind(const std::string& s, v1::Kind* k) {
  if (s == "thread") *k = v1::KIND_THREAD;
  else if (s == "run") *k = v1::KIND_RUN;
  else if (s == "request") *k = v1::KIND_REQUEST;
  else if (s == "connection") *k = v1::KIND_CONNECTION;
  else return false;
  return true;
}

// One call: context, request and response live until its callback ran.
struct CallBase {
  grpc::ClientContext ctx;
  int64_t start_ns = 0;  // scheduled (open loop) or actual (closed) start
  int slot = -1;         // closed loop: the slot that continues after it
  virtual ~CallBase() = default;
};
template <typename Req, typename Resp>
struct Call : CallBase {
  Req req;
  Resp resp;
};

class Bench {
 public:
  Bench() = default;

  bool Init();
  bool Setup();
  void Run();
  void Report() const;

 private:
  // Starts call number k on channel `channel` with start time start_ns.
  // False when the workload has nothing left to do (cleanup pool used up).
  bool Fire(uint64_t k, int channel, int64_t start_ns, int slot);
  // Common completion: counts the call, then continues the slot (closed
  // loop) or releases an in-flight unit (open loop).
  void Done(CallBase* call, const grpc::Status& status, uint64_t items,
            uint64_t unexpected);
  void SlotFinished();

  template <typename Req, typename Resp, typename Method, typename OnOk>
  void Start(Call<Req, Resp>* call, int channel, Method method, OnOk on_ok);

  bool IssueSync(v1::Kind kind, int owner, uint32_t count,
                 const std::string& lease, std::vector<std::string>* out);

  // Configuration.
  std::string target_;
  Workload workload_ = Workload::kIssue;
  std::string workload_name_;
  v1::Kind kind_ = v1::KIND_THREAD;
  int concurrency_ = 16;
  int channels_n_ = 1;
  int batch_ = 1;
  int owners_n_ = 1000;
  double rate_ = 0;
  int max_inflight_ = 20000;
  absl::Duration duration_, warmup_, deadline_;
  double reuse_ = 0.9;
  const char* item_name_ = "ids";

  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::Registrar::Stub>> stubs_;
  std::vector<v1::Owner> owners_;
  std::vector<std::string> leases_;
  // validate: IDs per owner; cleanup: IDs per owner, consumed in order.
  std::vector<std::vector<std::string>> pool_;
  size_t pool_total_ = 0;
  // open-context: last thread per owner, under a striped lock.
  std::vector<std::string> last_thread_;
  static constexpr int kStripes = 64;
  std::mutex stripes_[kStripes];

  // Run state.
  std::atomic<uint64_t> seq_{0};
  int64_t t0_ns_ = 0, window_start_ns_ = 0, window_end_ns_ = 0;
  std::atomic<int64_t> exhausted_ns_{0};
  std::atomic<int> active_slots_{0};
  std::atomic<int64_t> inflight_{0};
  std::mutex done_mu_;
  std::condition_variable done_cv_;

  // Results (calls started inside the window).
  LatencyHistogram hist_;
  std::atomic<uint64_t> calls_{0};
  std::atomic<uint64_t> ok_{0};
  std::atomic<uint64_t> items_{0};
  std::atomic<uint64_t> unexpected_{0};
  std::atomic<uint64_t> codes_[kNumCodes] = {};
  std::atomic<uint64_t> all_calls_{0};  // every call, setup included
  // Throughput: calls that completed inside the window, whenever started.
  std::atomic<uint64_t> done_in_window_{0};
  std::atomic<uint64_t> ok_in_window_{0};
  std::atomic<uint64_t> items_in_window_{0};
  std::atomic<int64_t> last_done_ns_{0};
  std::atomic<uint64_t> late_sends_{0};  // open loop: sent > 1 ms late
  mutable std::mutex msg_mu_;
  std::string first_error_[kNumCodes];
  int64_t end_ns_ = 0;  // when the last counted call finished
};

bool Bench::Init() {
  target_ = absl::GetFlag(FLAGS_target);
  workload_name_ = absl::GetFlag(FLAGS_workload);
  if (!ParseWorkload(workload_name_, &workload_)) {
    std::fprintf(stderr, "unknown --workload=%s\n", workload_name_.c_str());
    return false;
  }
  if (!ParseKind(absl::GetFlag(FLAGS_kind), &kind_)) {
    std::fprintf(stderr, "unknown --kind=%s\n",
                 absl::GetFlag(FLAGS_kind).c_str());
    return false;
  }
  concurrency_ = std::max(1, absl::GetFlag(FLAGS_concurrency));
  channels_n_ = std::max(1, absl::GetFlag(FLAGS_channels));
  owners_n_ = std::max(1, absl::GetFlag(FLAGS_owners));
  rate_ = absl::GetFlag(FLAGS_rate);
  max_inflight_ = std::max(1, absl::GetFlag(FLAGS_max_inflight));
  duration_ = absl::GetFlag(FLAGS_duration);
  warmup_ = absl::GetFlag(FLAGS_warmup);
  deadline_ = absl::GetFlag(FLAGS_deadline);
  reuse_ = absl::GetFlag(FLAGS_reuse);
  batch_ = absl::GetFlag(FLAGS_batch);
  if (batch_ <= 0) {
    batch_ = workload_ == Workload::kIssueBatch ? 100
             : workload_ == Workload::kValidate ? 10
                                                : 1;
  }
  switch (workload_) {
    case Workload::kValidate: item_name_ = "items"; break;
    case Workload::kCleanup: item_name_ = "released"; break;
    case Workload::kLease: item_name_ = "renewals"; break;
    default: item_name_ = "ids";
  }
  if (workload_ == Workload::kIssue) batch_ = 1;
  if (workload_ == Workload::kConnection) {
    batch_ = 1;
    kind_ = v1::KIND_CONNECTION;
  }

  const std::string tenant = absl::GetFlag(FLAGS_tenant);
  owners_.resize(owners_n_);
  for (int i = 0; i < owners_n_; ++i) {
    owners_[i].set_tenant(tenant);
    owners_[i].set_user_id(absl::StrFormat("user-%07d", i));
  }
  last_thread_.resize(owners_n_);

  for (int i = 0; i < channels_n_; ++i) {
    grpc::ChannelArguments args;
    // Distinct args and a local subchannel pool: one TCP connection each.
    args.SetInt("registrar.bench.channel", i);
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(64 << 20);
    auto channel = grpc::CreateCustomChannel(
        target_, grpc::InsecureChannelCredentials(), args);
    if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                   std::chrono::seconds(10))) {
      std::fprintf(stderr, "cannot connect to %s\n", target_.c_str());
      return false;
    }
    stubs_.push_back(v1::Registrar::NewStub(channel));
    channels_.push_back(std::move(channel));
  }
  return true;
}

bool Bench::IssueSync(v1::Kind kind, int owner, uint32_t count,
                      const std::string& lease, std::vector<std::string>* out) {
  v1::IssueRequest req;
  req.set_kind(kind);
  *req.mutable_owner() = owners_[owner];
  req.set_count(count);
  if (!lease.empty()) req.set_lease_id(lease);
  v1::IssueResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::Status s = stubs_[0]->Issue(&ctx, req, &resp);
  all_calls_.fetch_add(1, std::memory_order_relaxed);
  if (!s.ok()) {
    std::fprintf(stderr, "setup Issue failed: %s %s\n",
                 CodeName(s.error_code()), s.error_message().c_str());
    return false;
  }
  for (const std::string& id : resp.ids()) out->push_back(id);
  return true;
}

bool Bench::Setup() {
  const int64_t setup_start = NowNs();
  if (workload_ == Workload::kLease || workload_ == Workload::kConnection) {
    const int n = std::max(1, absl::GetFlag(FLAGS_leases));
    for (int i = 0; i < n; ++i) {
      v1::GrantLeaseRequest req;
      req.set_holder(absl::StrCat("registrar-bench-", getpid(), "-", i));
      req.set_ttl_seconds(absl::GetFlag(FLAGS_lease_ttl));
      v1::GrantLeaseResponse resp;
      grpc::ClientContext ctx;
      grpc::Status s = stubs_[0]->GrantLease(&ctx, req, &resp);
      all_calls_.fetch_add(1, std::memory_order_relaxed);
      if (!s.ok()) {
        std::fprintf(stderr, "setup GrantLease failed: %s %s\n",
                     CodeName(s.error_code()), s.error_message().c_str());
        return false;
      }
      leases_.push_back(resp.lease_id());
    }
  }
  if (workload_ == Workload::kValidate) {
    int per_owner = absl::GetFlag(FLAGS_pool);
    if (per_owner <= 0) per_owner = 100;
    pool_.resize(owners_n_);
    for (int o = 0; o < owners_n_; ++o) {
      for (int left = per_owner; left > 0; left -= 1000) {
        if (!IssueSync(v1::KIND_THREAD, o, std::min(left, 1000), "",
                       &pool_[o])) {
          return false;
        }
      }
      pool_total_ += pool_[o].size();
    }
  }
  if (workload_ == Workload::kCleanup) {
    int64_t total = absl::GetFlag(FLAGS_pool);
    if (total <= 0) {
      total = rate_ > 0 ? static_cast<int64_t>(
                              rate_ * absl::ToDoubleSeconds(warmup_ + duration_) *
                              batch_ * 1.2) + owners_n_ * batch_
                        : 300000;
    }
    int64_t per_owner = (total + owners_n_ - 1) / owners_n_;
    per_owner = (per_owner + batch_ - 1) / batch_ * batch_;
    pool_.resize(owners_n_);
    for (int o = 0; o < owners_n_; ++o) {
      for (int64_t left = per_owner; left > 0; left -= 1000) {
        if (!IssueSync(v1::KIND_THREAD, o,
                       static_cast<uint32_t>(std::min<int64_t>(left, 1000)),
                       "", &pool_[o])) {
          return false;
        }
      }
      pool_total_ += pool_[o].size();
    }
  }
  if (pool_total_ > 0 || !leases_.empty()) {
    std::fprintf(stderr, "setup: %zu pool IDs, %zu leases in %.1f s\n",
                 pool_total_, leases_.size(),
                 static_cast<double>(NowNs() - setup_start) / 1e9);
  }
  return true;
}

template <typename Req, typename Resp, typename Method, typename OnOk>
void Bench::Start(Call<Req, Resp>* call, int channel, Method method,
                  OnOk on_ok) {
  call->ctx.set_deadline(std::chrono::system_clock::now() +
                         absl::ToChronoNanoseconds(deadline_));
  auto* async = stubs_[channel]->async();
  (async->*method)(&call->ctx, &call->req, &call->resp,
                   [this, call, on_ok](grpc::Status s) {
                     uint64_t items = 0, unexpected = 0;
                     if (s.ok()) on_ok(call->resp, &items, &unexpected);
                     Done(call, s, items, unexpected);
                   });
}

bool Bench::Fire(uint64_t k, int channel, int64_t start_ns, int slot) {
  const int o = static_cast<int>(k % static_cast<uint64_t>(owners_n_));
  const v1::Owner& owner = owners_[o];
  auto* stub_async = stubs_[channel]->async();
  using AsyncT = std::remove_pointer_t<decltype(stub_async)>;

  switch (workload_) {
    case Workload::kIssue:
    case Workload::kIssueBatch:
    case Workload::kConnection: {
      auto* c = new Call<v1::IssueRequest, v1::IssueResponse>();
      c->start_ns = start_ns;
      c->slot = slot;
      c->req.set_kind(kind_);
      *c->req.mutable_owner() = owner;
      c->req.set_count(static_cast<uint32_t>(batch_));
      if (workload_ == Workload::kConnection) {
        c->req.set_lease_id(leases_[k % leases_.size()]);
      }
      Start(c, channel,
            static_cast<void (AsyncT::*)(grpc::ClientContext*,
                                         const v1::IssueRequest*,
                                         v1::IssueResponse*,
                                         std::function<void(grpc::Status)>)>(
                &AsyncT::Issue),
            [](const v1::IssueResponse& r, uint64_t* items, uint64_t*) {
              *items = static_cast<uint64_t>(r.ids_size());
            });
      return true;
    }
    case Workload::kValidate: {
      auto* c = new Call<v1::ValidateRequest, v1::ValidateResponse>();
      c->start_ns = start_ns;
      c->slot = slot;
      *c->req.mutable_owner() = owner;
      const std::vector<std::string>& ids = pool_[o];
      uint64_t r = SplitMix(k);
      for (int i = 0; i < batch_; ++i) {
        v1::ValidateItem* item = c->req.add_items();
        item->set_id(ids[r % ids.size()]);
        item->set_expected_kind(v1::KIND_THREAD);
        r = SplitMix(r);
      }
      Start(c, channel,
            static_cast<void (AsyncT::*)(grpc::ClientContext*,
                                         const v1::ValidateRequest*,
                                         v1::ValidateResponse*,
                                         std::function<void(grpc::Status)>)>(
                &AsyncT::Validate),
            [](const v1::ValidateResponse& r, uint64_t* items,
               uint64_t* unexpected) {
              *items = static_cast<uint64_t>(r.results_size());
              for (const auto& res : r.results()) {
                if (res.verdict() != v1::VERDICT_VALID) ++*unexpected;
              }
            });
      return true;
    }
    case Workload::kCleanup: {
      // Call k takes the (k / owners)-th group of `batch_` IDs of its owner.
      const std::vector<std::string>& ids = pool_[o];
      const size_t pos = (k / static_cast<uint64_t>(owners_n_)) * batch_;
      if (pos + batch_ > ids.size()) {
        int64_t expected = 0;
        exhausted_ns_.compare_exchange_strong(expected, NowNs());
        return false;
      }
      auto* c = new Call<v1::CleanupRequest, v1::CleanupResponse>();
      c->start_ns = start_ns;
      c->slot = slot;
      *c->req.mutable_owner() = owner;
      c->req.set_reason("bench");
      for (int i = 0; i < batch_; ++i) {
        c->req.mutable_ids()->add_ids(ids[pos + i]);
      }
      Start(c, channel,
            static_cast<void (AsyncT::*)(grpc::ClientContext*,
                                         const v1::CleanupRequest*,
                                         v1::CleanupResponse*,
                                         std::function<void(grpc::Status)>)>(
                &AsyncT::Cleanup),
            [](const v1::CleanupResponse& r, uint64_t* items,
               uint64_t* unexpected) {
              *items = static_cast<uint64_t>(r.released_size());
              *unexpected = static_cast<uint64_t>(
                  r.already_ended_size() + r.refused_size() + r.unknown_size());
            });
      return true;
    }
    case Workload::kOpenContext: {
      auto* c = new Call<v1::OpenContextRequest, v1::OpenContextResponse>();
      c->start_ns = start_ns;
      c->slot = slot;
      *c->req.mutable_owner() = owner;
      const bool reuse =
          static_cast<double>(SplitMix(k) >> 11) * 0x1.0p-53 < reuse_;
      if (reuse) {
        std::lock_guard<std::mutex> lock(stripes_[o % kStripes]);
        if (!last_thread_[o].empty()) c->req.set_thread_id(last_thread_[o]);
      }
      Start(c, channel,
            static_cast<void (AsyncT::*)(grpc::ClientContext*,
                                         const v1::OpenContextRequest*,
                                         v1::OpenContextResponse*,
                                         std::function<void(grpc::Status)>)>(
                &AsyncT::OpenContext),
            [this, o](const v1::OpenContextResponse& r, uint64_t* items,
                      uint64_t*) {
              *items = r.thread_reused() ? 2 : 3;
              if (!r.thread_reused()) {
                std::lock_guard<std::mutex> lock(stripes_[o % kStripes]);
                last_thread_[o] = r.thread_id();
              }
            });
      return true;
    }
    case Workload::kLease: {
      auto* c = new Call<v1::KeepAliveRequest, v1::KeepAliveResponse>();
      c->start_ns = start_ns;
      c->slot = slot;
      c->req.set_lease_id(leases_[k % leases_.size()]);
      Start(c, channel,
            static_cast<void (AsyncT::*)(grpc::ClientContext*,
                                         const v1::KeepAliveRequest*,
                                         v1::KeepAliveResponse*,
                                         std::function<void(grpc::Status)>)>(
                &AsyncT::KeepAlive),
            [](const v1::KeepAliveResponse&, uint64_t* items, uint64_t*) {
              *items = 1;
            });
      return true;
    }
  }
  return false;
}

void Bench::Done(CallBase* call, const grpc::Status& status, uint64_t items,
                 uint64_t unexpected) {
  const int64_t now = NowNs();
  all_calls_.fetch_add(1, std::memory_order_relaxed);
  if (now >= window_start_ns_ && now < window_end_ns_) {
    done_in_window_.fetch_add(1, std::memory_order_relaxed);
    if (status.ok()) {
      ok_in_window_.fetch_add(1, std::memory_order_relaxed);
      items_in_window_.fetch_add(items, std::memory_order_relaxed);
    }
    int64_t last = last_done_ns_.load(std::memory_order_relaxed);
    while (now > last && !last_done_ns_.compare_exchange_weak(
                             last, now, std::memory_order_relaxed)) {
    }
  }
  if (call->start_ns >= window_start_ns_ && call->start_ns < window_end_ns_) {
    hist_.Record(static_cast<uint64_t>(std::max<int64_t>(0, now - call->start_ns)));
    calls_.fetch_add(1, std::memory_order_relaxed);
    const int code = static_cast<int>(status.error_code());
    codes_[std::clamp(code, 0, kNumCodes - 1)].fetch_add(
        1, std::memory_order_relaxed);
    if (status.ok()) {
      ok_.fetch_add(1, std::memory_order_relaxed);
      items_.fetch_add(items, std::memory_order_relaxed);
      unexpected_.fetch_add(unexpected, std::memory_order_relaxed);
    } else {
      std::lock_guard<std::mutex> lock(msg_mu_);
      std::string& msg = first_error_[std::clamp(code, 0, kNumCodes - 1)];
      if (msg.empty()) msg = status.error_message();
    }
  }
  const int slot = call->slot;
  delete call;
  if (slot >= 0) {
    // Closed loop: this slot starts its next call, until the window ends.
    const int64_t t = NowNs();
    if (t < window_end_ns_ &&
        Fire(seq_.fetch_add(1, std::memory_order_relaxed),
             slot % channels_n_, t, slot)) {
      return;
    }
    SlotFinished();
  } else {
    if (inflight_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(done_mu_);
      done_cv_.notify_all();
    }
  }
}

void Bench::SlotFinished() {
  if (active_slots_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    std::lock_guard<std::mutex> lock(done_mu_);
    done_cv_.notify_all();
  }
}

void Bench::Run() {
  t0_ns_ = NowNs() + 1'000'000;  // 1 ms from now
  window_start_ns_ = t0_ns_ + absl::ToInt64Nanoseconds(warmup_);
  window_end_ns_ = window_start_ns_ + absl::ToInt64Nanoseconds(duration_);

  if (rate_ <= 0) {
    active_slots_.store(concurrency_);
    std::this_thread::sleep_until(
        SteadyClock::time_point(std::chrono::nanoseconds(t0_ns_)));
    for (int s = 0; s < concurrency_; ++s) {
      if (!Fire(seq_.fetch_add(1), s % channels_n_, NowNs(), s)) {
        SlotFinished();
      }
    }
    std::unique_lock<std::mutex> lock(done_mu_);
    done_cv_.wait(lock, [this] { return active_slots_.load() == 0; });
  } else {
    // Open loop: call k is due at t0 + k / rate, whatever happened before.
    const double period_ns = 1e9 / rate_;
    inflight_.store(1);  // the sender's own unit, dropped when it is done
    for (uint64_t k = 0;; ++k) {
      const int64_t due = t0_ns_ + static_cast<int64_t>(period_ns * k);
      if (due >= window_end_ns_) break;
      int64_t now = NowNs();
      if (due > now) {
        std::this_thread::sleep_until(
            SteadyClock::time_point(std::chrono::nanoseconds(due)));
        now = NowNs();
      }
      if (now - due > 1'000'000 && due >= window_start_ns_) {
        late_sends_.fetch_add(1, std::memory_order_relaxed);
      }
      while (inflight_.load(std::memory_order_acquire) > max_inflight_) {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
      inflight_.fetch_add(1, std::memory_order_acq_rel);
      if (!Fire(k, static_cast<int>(k % channels_n_), due, -1)) {
        inflight_.fetch_sub(1, std::memory_order_acq_rel);
        break;
      }
    }
    if (inflight_.fetch_sub(1, std::memory_order_acq_rel) != 1) {
      std::unique_lock<std::mutex> lock(done_mu_);
      done_cv_.wait(lock, [this] { return inflight_.load() == 0; });
    }
  }
  end_ns_ = NowNs();
}

std::string Us(uint64_t ns) { return absl::StrFormat("%.1f", ns / 1000.0); }

void Bench::Report() const {
  // Throughput counts completions inside the window (so an overloaded open
  // loop reports what the server did, not what was offered); latency and
  // errors are of the calls that started (were due) inside the window.
  int64_t window_end = window_end_ns_;
  const int64_t exhausted = exhausted_ns_.load();
  if (exhausted > 0 && exhausted < window_end) {
    window_end = std::max(exhausted, last_done_ns_.load());
  }
  const double secs =
      std::max<double>(1e-9, static_cast<double>(window_end - window_start_ns_) / 1e9);
  const uint64_t calls = calls_.load();
  const uint64_t errors = calls - ok_.load();
  const double cps = static_cast<double>(done_in_window_.load()) / secs;
  const double ok_ps = static_cast<double>(ok_in_window_.load()) / secs;
  const double ips = static_cast<double>(items_in_window_.load()) / secs;
  const double offered =
      rate_ > 0 ? rate_ : 0.0;

  std::printf(
      "registrar-bench %s -> %s: %s, concurrency %d, channels %d, batch %d, "
      "owners %d, warmup %s, duration %s\n",
      workload_name_.c_str(), target_.c_str(),
      rate_ > 0 ? absl::StrFormat("open loop at %.0f calls/s", rate_).c_str()
                : "closed loop",
      concurrency_, channels_n_, batch_, owners_n_,
      absl::FormatDuration(warmup_).c_str(),
      absl::FormatDuration(duration_).c_str());
  if (exhausted > 0) {
    std::printf("  cleanup pool used up after %.2f s of the window\n", secs);
  }
  std::printf("  calls:    %.0f calls/s completed in the %.2f s window (%.0f/s "
              "OK)%s\n",
              cps, secs, ok_ps,
              rate_ > 0 ? absl::StrFormat(", offered %.0f/s", offered).c_str()
                        : "");
  std::printf("  %-9s %.0f/s\n", (std::string(item_name_) + ":").c_str(), ips);
  std::printf("  started in window: %llu calls, %llu errors\n",
              static_cast<unsigned long long>(calls),
              static_cast<unsigned long long>(errors));
  std::printf(
      "  latency:  p50 %s us, p90 %s us, p99 %s us, p99.9 %s us, max %s us, "
      "mean %s us\n",
      Us(hist_.Quantile(0.50)).c_str(), Us(hist_.Quantile(0.90)).c_str(),
      Us(hist_.Quantile(0.99)).c_str(), Us(hist_.Quantile(0.999)).c_str(),
      Us(hist_.max()).c_str(),
      absl::StrFormat("%.1f", hist_.mean() / 1000.0).c_str());
  if (rate_ > 0) {
    std::printf("  sender:   %llu calls sent more than 1 ms late\n",
                static_cast<unsigned long long>(late_sends_.load()));
  }
  if (unexpected_.load() > 0) {
    std::printf("  unexpected results (non-VALID verdicts, not-released ids): "
                "%llu\n",
                static_cast<unsigned long long>(unexpected_.load()));
  }
  std::string errors_json;
  for (int c = 1; c < kNumCodes; ++c) {
    const uint64_t n = codes_[c].load();
    if (n == 0) continue;
    std::lock_guard<std::mutex> lock(msg_mu_);
    std::printf("  error %s: %llu (first: %s)\n", CodeName(c),
                static_cast<unsigned long long>(n), first_error_[c].c_str());
    absl::StrAppend(&errors_json, errors_json.empty() ? "" : ",", "\"",
                    CodeName(c), "\":", n);
  }
  // This process's CPU time (all threads, setup included): for scripts that
  // tell the client's share of the machine from everyone else's.
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const double cpu_s = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                       ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
  std::printf("  client CPU: %.2f s (%.1f us per call)\n", cpu_s,
              all_calls_.load() ? cpu_s * 1e6 / all_calls_.load() : 0.0);
  std::string label_json;
  for (char ch : absl::GetFlag(FLAGS_label)) {
    if (ch == '"' || ch == '\\') label_json.push_back('\\');
    if (static_cast<unsigned char>(ch) >= 0x20) label_json.push_back(ch);
  }
  std::printf(
      "{\"workload\":\"%s\",\"label\":\"%s\",\"target\":\"%s\","
      "\"concurrency\":%d,\"channels\":%d,\"batch\":%d,\"owners\":%d,"
      "\"rate\":%.1f,\"duration_s\":%.3f,\"calls\":%llu,\"errors\":%llu,"
      "\"calls_per_s\":%.1f,\"ok_per_s\":%.1f,\"items_per_s\":%.1f,\"item\":\"%s\","
      "\"p50_us\":%s,\"p90_us\":%s,\"p99_us\":%s,\"p999_us\":%s,"
      "\"max_us\":%s,\"mean_us\":%.1f,\"unexpected\":%llu,"
      "\"late_sends\":%llu,\"all_calls\":%llu,\"client_cpu_s\":%.3f,"
      "\"errors_by_code\":{%s}}\n",
      workload_name_.c_str(), label_json.c_str(), target_.c_str(),
      concurrency_, channels_n_, batch_, owners_n_, rate_, secs,
      static_cast<unsigned long long>(calls),
      static_cast<unsigned long long>(errors), cps, ok_ps, ips, item_name_,
      Us(hist_.Quantile(0.50)).c_str(), Us(hist_.Quantile(0.90)).c_str(),
      Us(hist_.Quantile(0.99)).c_str(), Us(hist_.Quantile(0.999)).c_str(),
      Us(hist_.max()).c_str(), hist_.mean() / 1000.0,
      static_cast<unsigned long long>(unexpected_.load()),
      static_cast<unsigned long long>(late_sends_.load()),
      static_cast<unsigned long long>(all_calls_.load()), cpu_s,
      errors_json.c_str());
  std::fflush(stdout);
}

}  // namespace
}  // namespace registrar::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "registrar-bench: load generator for a running registrar (gRPC callback "
      "API). Prints calls/s, items/s, latency percentiles, errors by code, "
      "then one JSON line.");
  absl::ParseCommandLine(argc, argv);
  auto bench = std::make_unique<registrar::bench::Bench>();
  if (!bench->Init()) return 2;
  if (!bench->Setup()) return 2;
  bench->Run();
  bench->Report();
  return 0;
}
