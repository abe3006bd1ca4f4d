// The registrar backend: registrar.v1.Registrar over gRPC's callback client
// API. `--backend=echo` uses this same code against registrar-echo
// (echo_server.cc), which serves the same service and messages and answers
// at once: the ceiling of any gRPC service on the machine.
//
// Workloads (one RPC per operation unless said otherwise):
//   issue         Issue, count 1, of --kind (default thread)
//   issue-batch   Issue, count --batch (default 100)
//   validate      Validate of --batch (default 10) IDs of the call's owner,
//                 drawn from --pool IDs per owner issued at setup (all
//                 VALID); verdicts only (include_records unset)
//   cleanup       Cleanup of --batch (default 1) IDs issued at setup; with
//                 --children=N: Cleanup by connection_id of a connection
//                 opened at setup with N runs opened through it (N + 1
//                 released). The run ends early when the pool runs out.
//   open-context  OpenContext; a fraction --reuse names the owner's last
//                 thread (reused), the rest mint a new one
//   lease         KeepAlive round-robin over --leases leases granted at setup
//   connection    Issue of --batch (default 1) KIND_CONNECTION bound to one
//                 of --leases leases: the durable "connection registration"
//   gateway       one WebSocket session of a gateway, 3 + 2 * --messages
//                 RPCs in sequence: Issue a connection bound to the gateway's
//                 lease (one of --leases), KeepAlive that lease, then per
//                 message OpenContext (new thread first, then reuse it;
//                 through the connection) and Validate [thread, run], and
//                 Cleanup by connection_id at disconnect. With
//                 --session_reuse, that share of sessions starts with the
//                 owner's last thread instead of a new one.
// With --stalled_watchers=N, setup also opens N Watch streams (from the
// newest revision, each on a connection of its own) that are never read
// until Stop: the server must hold them at a flow-control window each, cut
// them off past --watch_max_lag, and not slow the measured calls.
// Calls spread round-robin over --owners owners (tenant --tenant, users
// "user-<n>") and over --channels channels.

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/programs/grpc_backend.h"
#include "bench/programs/grpc_unary.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "registrar/v1/registrar.pb.h"

namespace registrar::bench {
namespace {

namespace v1 = ::registrar::v1;
// Elaborated: Stub::async() (the method) hides the class's name.
using Async = class v1::Registrar::Stub::async;

v1::Kind ToProto(IdKind kind) {
  switch (kind) {
    case IdKind::kThread:
      return v1::KIND_THREAD;
    case IdKind::kRun:
      return v1::KIND_RUN;
    case IdKind::kRequest:
      return v1::KIND_REQUEST;
    case IdKind::kConnection:
      return v1::KIND_CONNECTION;
  }
  return v1::KIND_UNSPECIFIED;
}

class RegistrarBackend final : public GrpcBackend {
 public:
  explicit RegistrarBackend(const BenchOptions& opts)
      : GrpcBackend(opts), last_thread_(opts.owners) {}

  bool Setup(CompletionSink* sink) override;
  bool Fire(uint64_t k, const CallToken& token) override;
  void Stop() override;
  uint64_t setup_calls() const override { return setup_calls_.load(); }

 private:
  // gateway: one session.
  struct Session : GatewaySession {
    using GatewaySession::GatewaySession;
    const v1::Owner* owner = nullptr;
    int owner_index = 0;
    const std::string* lease = nullptr;
    std::string connection, thread, run;
  };

  Async* async(uint64_t k) { return stubs_[k % stubs_.size()]->async(); }

  bool IssueSync(v1::Kind kind, int owner, uint32_t count,
                 const std::string& connection, std::vector<std::string>* out);
  bool GrantLeases();
  bool FillOwnerPools(int64_t per_owner);
  bool FillConnections(int64_t n);
  bool OpenStalledWatchers(int n);

  void GatewayConnect(Session* s);
  void GatewayKeepAlive(Session* s);
  void GatewayOpen(Session* s);
  void GatewayValidate(Session* s);
  void GatewayCleanup(Session* s);

  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::Registrar::Stub>> stubs_;
  std::vector<v1::Owner> owners_;
  std::vector<std::string> leases_;
  // validate, cleanup: IDs per owner.
  std::vector<std::vector<std::string>> pool_;
  // cleanup --children: connection IDs, connection i belongs to owner
  // i % owners.
  std::vector<std::string> connections_;
  LastThreads last_thread_;
  std::atomic<uint64_t> setup_calls_{0};
  // --stalled_watchers: streams nobody reads.
  struct StalledWatcher {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::Registrar::Stub> stub;
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1::WatchEvent>> reader;
  };
  std::vector<std::unique_ptr<StalledWatcher>> stalled_;
};

bool RegistrarBackend::OpenStalledWatchers(int n) {
  for (int i = 0; i < n; ++i) {
    auto w = std::make_unique<StalledWatcher>();
    // Its own connection: a full flow-control window then holds up only
    // this stream, as it would for a remote watcher that stopped reading.
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    if (opts_.stalled_window_kb > 0) {
      args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
      args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES,
                  opts_.stalled_window_kb * 1024);
    }
    w->channel = grpc::CreateCustomChannel(
        opts_.target, grpc::InsecureChannelCredentials(), args);
    w->stub = v1::Registrar::NewStub(w->channel);
    // The call starts here; the server answers with its first event.
    w->reader = w->stub->Watch(&w->context, v1::WatchRequest());
    setup_calls_.fetch_add(1, std::memory_order_relaxed);
    stalled_.push_back(std::move(w));
  }
  if (n > 0) std::fprintf(stderr, "setup: %d stalled watcher(s)\n", n);
  return true;
}

void RegistrarBackend::Stop() {
  // Cancelled without reading: reading would let the server send it
  // everything it held back, on the measured server's CPU.
  for (auto& w : stalled_) {
    w->context.TryCancel();
    w->reader->Finish();
  }
  stalled_.clear();
}

bool RegistrarBackend::IssueSync(v1::Kind kind, int owner, uint32_t count,
                                 const std::string& connection,
                                 std::vector<std::string>* out) {
  v1::IssueRequest req;
  req.set_kind(kind);
  *req.mutable_owner() = owners_[owner];
  req.set_count(count);
  if (!connection.empty()) req.set_connection_id(connection);
  v1::IssueResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::Status s = stubs_[0]->Issue(&ctx, req, &resp);
  setup_calls_.fetch_add(1, std::memory_order_relaxed);
  if (!s.ok()) {
    std::fprintf(stderr, "setup Issue failed: %s %s\n",
                 CodeName(s.error_code()).c_str(), s.error_message().c_str());
    return false;
  }
  for (const std::string& id : resp.ids()) out->push_back(id);
  return true;
}

bool RegistrarBackend::GrantLeases() {
  const int n = std::max(1, opts_.leases);
  for (int i = 0; i < n; ++i) {
    v1::GrantLeaseRequest req;
    req.set_holder(absl::StrCat("registrar-bench-", getpid(), "-", i));
    req.set_ttl_seconds(opts_.lease_ttl);
    v1::GrantLeaseResponse resp;
    grpc::ClientContext ctx;
    grpc::Status s = stubs_[0]->GrantLease(&ctx, req, &resp);
    setup_calls_.fetch_add(1, std::memory_order_relaxed);
    if (!s.ok()) {
      std::fprintf(stderr, "setup GrantLease failed: %s %s\n",
                   CodeName(s.error_code()).c_str(), s.error_message().c_str());
      return false;
    }
    leases_.push_back(resp.lease_id());
  }
  return true;
}

// Pools are issued by 8 threads at once: in fsync mode that is 8 calls per
// fsync instead of one.
constexpr int kSetupThreads = 8;

bool RegistrarBackend::FillOwnerPools(int64_t per_owner) {
  pool_.resize(opts_.owners);
  return ParallelFor(opts_.owners, kSetupThreads, [&](int b, int e) {
    for (int o = b; o < e; ++o) {
      for (int64_t left = per_owner; left > 0; left -= 1000) {
        if (!IssueSync(v1::KIND_THREAD, o,
                       static_cast<uint32_t>(std::min<int64_t>(left, 1000)), "",
                       &pool_[o])) {
          return false;
        }
      }
    }
    return true;
  });
}

bool RegistrarBackend::FillConnections(int64_t n) {
  connections_.resize(n);
  return ParallelFor(static_cast<int>(n), kSetupThreads, [&](int b, int e) {
    std::vector<std::string> ids;
    for (int i = b; i < e; ++i) {
      const int o = i % opts_.owners;
      ids.clear();
      if (!IssueSync(v1::KIND_CONNECTION, o, 1, "", &ids)) return false;
      connections_[i] = ids[0];
      if (!IssueSync(v1::KIND_RUN, o, static_cast<uint32_t>(opts_.children),
                     connections_[i], &ids)) {
        return false;
      }
    }
    return true;
  });
}

bool RegistrarBackend::Setup(CompletionSink* sink) {
  sink_ = sink;
  for (int i = 0; i < opts_.channels; ++i) {
    auto channel = ConnectChannel(opts_.target, i, absl::Seconds(10));
    if (channel == nullptr) {
      std::fprintf(stderr, "cannot connect to %s\n", opts_.target.c_str());
      return false;
    }
    stubs_.push_back(v1::Registrar::NewStub(channel));
    channels_.push_back(std::move(channel));
  }
  owners_.resize(opts_.owners);
  for (int i = 0; i < opts_.owners; ++i) {
    owners_[i].set_tenant(opts_.tenant);
    owners_[i].set_user_id(UserId(i));
  }

  const int64_t setup_start = NowNs();
  const Workload w = opts_.workload;
  if (w == Workload::kLease || w == Workload::kConnection ||
      w == Workload::kGateway) {
    if (!GrantLeases()) return false;
  }
  const SetupPools pools = PlanSetupPools(opts_);
  if (pools.ids_per_owner > 0 && !FillOwnerPools(pools.ids_per_owner)) {
    return false;
  }
  if (pools.connections > 0 && !FillConnections(pools.connections)) {
    return false;
  }
  PrintSetupLine({"IDs", "connections", "leases"}, setup_start, pool_,
                 connections_.size(), leases_.size());
  return OpenStalledWatchers(opts_.stalled_watchers);
}

bool RegistrarBackend::Fire(uint64_t k, const CallToken& token) {
  const int o = static_cast<int>(k % static_cast<uint64_t>(opts_.owners));
  const v1::Owner& owner = owners_[o];

  switch (opts_.workload) {
    case Workload::kIssue:
    case Workload::kIssueBatch:
    case Workload::kConnection: {
      auto rpc =
          std::make_unique<UnaryRpc<v1::IssueRequest, v1::IssueResponse>>();
      rpc->req.set_kind(opts_.workload == Workload::kConnection
                            ? v1::KIND_CONNECTION
                            : ToProto(opts_.kind));
      *rpc->req.mutable_owner() = owner;
      rpc->req.set_count(static_cast<uint32_t>(opts_.batch));
      if (opts_.workload == Workload::kConnection) {
        rpc->req.set_lease_id(leases_[k % leases_.size()]);
      }
      Call(async(k), token, std::move(rpc), &Async::Issue,
           [](const v1::IssueResponse& r, CallResult* out) {
             out->items = static_cast<uint64_t>(r.ids_size());
           });
      return true;
    }
    case Workload::kValidate: {
      auto rpc = std::make_unique<
          UnaryRpc<v1::ValidateRequest, v1::ValidateResponse>>();
      *rpc->req.mutable_owner() = owner;
      const std::vector<std::string>& ids = pool_[o];
      uint64_t r = SplitMix(k);
      for (int i = 0; i < opts_.batch; ++i) {
        v1::ValidateItem* item = rpc->req.add_items();
        item->set_id(ids[r % ids.size()]);
        item->set_expected_kind(v1::KIND_THREAD);
        r = SplitMix(r);
      }
      Call(async(k), token, std::move(rpc), &Async::Validate,
           [](const v1::ValidateResponse& r, CallResult* out) {
             out->items = static_cast<uint64_t>(r.results_size());
             for (const auto& res : r.results()) {
               if (res.verdict() != v1::VERDICT_VALID) ++out->unexpected;
             }
           });
      return true;
    }
    case Workload::kCleanup: {
      auto rpc =
          std::make_unique<UnaryRpc<v1::CleanupRequest, v1::CleanupResponse>>();
      rpc->req.set_reason("bench");
      uint64_t expected = opts_.batch;
      if (opts_.children > 0) {
        // Operation k releases connection k (and its children).
        if (k >= connections_.size()) return false;
        *rpc->req.mutable_owner() = owners_[k % opts_.owners];
        rpc->req.set_connection_id(connections_[k]);
        expected = static_cast<uint64_t>(opts_.children) + 1;
      } else {
        // Operation k takes the (k / owners)-th group of `batch` IDs of its
        // owner.
        const std::vector<std::string>& ids = pool_[o];
        const size_t pos = (k / static_cast<uint64_t>(opts_.owners)) *
                           static_cast<uint64_t>(opts_.batch);
        if (pos + opts_.batch > ids.size()) return false;
        *rpc->req.mutable_owner() = owner;
        for (int i = 0; i < opts_.batch; ++i) {
          rpc->req.mutable_ids()->add_ids(ids[pos + i]);
        }
      }
      Call(async(k), token, std::move(rpc), &Async::Cleanup,
           [expected](const v1::CleanupResponse& r, CallResult* out) {
             out->items = static_cast<uint64_t>(r.released_size());
             if (out->items != expected) {
               out->unexpected = out->items > expected ? out->items - expected
                                                       : expected - out->items;
             }
           });
      return true;
    }
    case Workload::kOpenContext: {
      auto rpc = std::make_unique<
          UnaryRpc<v1::OpenContextRequest, v1::OpenContextResponse>>();
      *rpc->req.mutable_owner() = owner;
      if (UnitRandom(k) < opts_.reuse) {
        std::string thread = last_thread_.Get(o);
        if (!thread.empty()) rpc->req.set_thread_id(std::move(thread));
      }
      Call(async(k), token, std::move(rpc), &Async::OpenContext,
           [this, o](const v1::OpenContextResponse& r, CallResult* out) {
             out->items = r.thread_reused() ? 2 : 3;
             if (!r.thread_reused()) last_thread_.Set(o, r.thread_id());
           });
      return true;
    }
    case Workload::kLease: {
      auto rpc = std::make_unique<
          UnaryRpc<v1::KeepAliveRequest, v1::KeepAliveResponse>>();
      rpc->req.set_lease_id(leases_[k % leases_.size()]);
      Call(async(k), token, std::move(rpc), &Async::KeepAlive,
           [](const v1::KeepAliveResponse&, CallResult* out) {
             out->items = 1;
           });
      return true;
    }
    case Workload::kGateway: {
      auto* s = new Session(k, token);
      s->owner = &owner;
      s->owner_index = o;
      s->lease = &leases_[k % leases_.size()];
      if (opts_.session_reuse > 0 && UnitRandom(k) < opts_.session_reuse) {
        s->thread = last_thread_.Get(o);
      }
      GatewayConnect(s);
      return true;
    }
  }
  return false;
}

void RegistrarBackend::GatewayConnect(Session* s) {
  auto rpc = std::make_unique<UnaryRpc<v1::IssueRequest, v1::IssueResponse>>();
  rpc->req.set_kind(v1::KIND_CONNECTION);
  *rpc->req.mutable_owner() = *s->owner;
  rpc->req.set_count(1);
  rpc->req.set_lease_id(*s->lease);
  ++s->rpcs;
  StartUnary(async(s->k), &Async::Issue, std::move(rpc), opts_.deadline,
             [this, s](const grpc::Status& st,
                       UnaryRpc<v1::IssueRequest, v1::IssueResponse>& r) {
               if (!st.ok()) return GatewayEnd(s, Failed(st));
               s->connection = r.resp.ids(0);
               GatewayKeepAlive(s);
             });
}

void RegistrarBackend::GatewayKeepAlive(Session* s) {
  auto rpc =
      std::make_unique<UnaryRpc<v1::KeepAliveRequest, v1::KeepAliveResponse>>();
  rpc->req.set_lease_id(*s->lease);
  ++s->rpcs;
  StartUnary(async(s->k), &Async::KeepAlive, std::move(rpc), opts_.deadline,
             [this, s](const grpc::Status& st,
                       UnaryRpc<v1::KeepAliveRequest, v1::KeepAliveResponse>&) {
               if (!st.ok()) return GatewayEnd(s, Failed(st));
               GatewayOpen(s);
             });
}

void RegistrarBackend::GatewayOpen(Session* s) {
  auto rpc = std::make_unique<
      UnaryRpc<v1::OpenContextRequest, v1::OpenContextResponse>>();
  *rpc->req.mutable_owner() = *s->owner;
  rpc->req.set_thread_id(s->thread);
  rpc->req.set_connection_id(s->connection);
  ++s->rpcs;
  StartUnary(
      async(s->k), &Async::OpenContext, std::move(rpc), opts_.deadline,
      [this, s](const grpc::Status& st,
                UnaryRpc<v1::OpenContextRequest, v1::OpenContextResponse>& r) {
        if (!st.ok()) return GatewayEnd(s, Failed(st));
        if (!s->thread.empty() && !r.resp.thread_reused()) ++s->unexpected;
        if (opts_.session_reuse > 0 && !r.resp.thread_reused()) {
          last_thread_.Set(s->owner_index, r.resp.thread_id());
        }
        s->thread = r.resp.thread_id();
        s->run = r.resp.run_id();
        GatewayValidate(s);
      });
}

void RegistrarBackend::GatewayValidate(Session* s) {
  auto rpc =
      std::make_unique<UnaryRpc<v1::ValidateRequest, v1::ValidateResponse>>();
  *rpc->req.mutable_owner() = *s->owner;
  v1::ValidateItem* item = rpc->req.add_items();
  item->set_id(s->thread);
  item->set_expected_kind(v1::KIND_THREAD);
  item = rpc->req.add_items();
  item->set_id(s->run);
  item->set_expected_kind(v1::KIND_RUN);
  ++s->rpcs;
  StartUnary(async(s->k), &Async::Validate, std::move(rpc), opts_.deadline,
             [this, s](const grpc::Status& st,
                       UnaryRpc<v1::ValidateRequest, v1::ValidateResponse>& r) {
               if (!st.ok()) return GatewayEnd(s, Failed(st));
               for (const auto& res : r.resp.results()) {
                 if (res.verdict() != v1::VERDICT_VALID) ++s->unexpected;
               }
               if (r.resp.results_size() != 2) ++s->unexpected;
               if (++s->message < opts_.messages) return GatewayOpen(s);
               GatewayCleanup(s);
             });
}

void RegistrarBackend::GatewayCleanup(Session* s) {
  auto rpc =
      std::make_unique<UnaryRpc<v1::CleanupRequest, v1::CleanupResponse>>();
  *rpc->req.mutable_owner() = *s->owner;
  rpc->req.set_connection_id(s->connection);
  rpc->req.set_reason("disconnect");
  ++s->rpcs;
  StartUnary(async(s->k), &Async::Cleanup, std::move(rpc), opts_.deadline,
             [this, s](const grpc::Status& st,
                       UnaryRpc<v1::CleanupRequest, v1::CleanupResponse>& r) {
               if (!st.ok()) return GatewayEnd(s, Failed(st));
               if (r.resp.released_size() == 0) ++s->unexpected;
               GatewayEnd(s, CallResult{});
             });
}

}  // namespace

std::unique_ptr<Backend> MakeRegistrarBackend(const BenchOptions& opts) {
  return std::make_unique<RegistrarBackend>(opts);
}

}  // namespace registrar::bench
