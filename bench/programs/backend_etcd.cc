// The etcd backend: the same workloads against a real etcd through etcd's
// own v3 gRPC API (services KV and Lease, generated from the vendored
// bench/proto/etcd/etcdserverpb/rpc.proto), with gRPC's callback client API.
//
// A record is a key: the ID, made by the client in the registrar's text
// form (LocalIds); its value is the owner ("<tenant>/user-<n>"). What a
// registrar operation becomes:
//   issue         Put(key = new ID, value = owner)
//   issue-batch   Txn of --batch Puts (etcd's --max-txn-ops must allow it)
//   validate      Range(key) (--batch 1) or a Txn of --batch Ranges; VALID
//                 means one key whose value is the call's owner. Reads are
//                 linearizable (etcd's default) unless --etcd_serializable.
//   cleanup       DeleteRange(key) or a Txn of --batch DeleteRanges; with
//                 --children=N: LeaseRevoke of the connection's lease, to
//                 which the connection and its N children were attached at
//                 setup (etcd deletes them all)
//   open-context  one Txn: when reusing a thread, compare value(thread) ==
//                 owner, then Put run + request, else Put a new thread +
//                 run + request
//   lease         LeaseKeepAlive (one request and its reply on a bidi
//                 stream; one stream per closed-loop slot, at most 256) over
//                 --leases leases granted at setup
//   connection    LeaseGrant + Put(key = connection ID, value = owner, lease)
//                 per connection: a lease per connection is how etcd gives a
//                 connection's records a common end (revoke = cascade).
//                 With --batch N: N LeaseGrants in parallel, then one Txn of
//                 N Puts. 2 (N + 1) RPCs.
//   gateway       LeaseGrant + Put of the connection (as above),
//                 LeaseKeepAlive of its lease, per message the open-context
//                 Txn (run and request attached to the connection's lease,
//                 the thread not) and a Txn of 2 Ranges (thread, run), and
//                 LeaseRevoke at disconnect: 4 + 2 * --messages RPCs.
// Setup pools are written with Txns of up to --etcd_max_txn_ops Puts.

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "bench/programs/grpc_backend.h"
#include "bench/programs/grpc_unary.h"
#include "etcdserverpb/rpc.grpc.pb.h"
#include "etcdserverpb/rpc.pb.h"

namespace registrar::bench {
namespace {

namespace pb = ::etcdserverpb;
// Elaborated: Stub::async() (the method) hides the class's name.
using KvAsync = class pb::KV::Stub::async;
using LeaseAsync = class pb::Lease::Stub::async;
using Ops = google::protobuf::RepeatedPtrField<pb::RequestOp>;

void AddPut(Ops* ops, const std::string& key, const std::string& value,
            int64_t lease) {
  pb::PutRequest* put = ops->Add()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  if (lease != 0) put->set_lease(lease);
}

void AddRange(Ops* ops, const std::string& key, bool serializable) {
  pb::RangeRequest* range = ops->Add()->mutable_request_range();
  range->set_key(key);
  range->set_serializable(serializable);
}

// Keys found with the expected value, and the rest.
void CountValid(const pb::RangeResponse& r, const std::string& owner,
                CallResult* out) {
  ++out->items;
  if (r.kvs_size() != 1 || r.kvs(0).value() != owner) ++out->unexpected;
}

// One LeaseKeepAlive stream. KeepAlive() may be called from any thread; the
// requests are written one after another and etcd answers each, in order,
// on the same stream.
class KeepAliveStream final
    : public grpc::ClientBidiReactor<pb::LeaseKeepAliveRequest,
                                     pb::LeaseKeepAliveResponse> {
 public:
  // ttl is etcd's new TTL (0: the lease does not exist).
  using Callback = std::function<void(const grpc::Status&, int64_t ttl)>;

  explicit KeepAliveStream(LeaseAsync* async) {
    async->LeaseKeepAlive(&ctx_, this);
    StartRead(&resp_);
    StartCall();
  }

  void KeepAlive(int64_t lease, Callback cb) {
    std::unique_lock<std::mutex> lock(mu_);
    if (done_) {
      lock.unlock();
      cb(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "LeaseKeepAlive stream ended"),
         0);
      return;
    }
    pending_.push_back(std::move(cb));
    to_write_.push_back(lease);
    if (writing_) return;
    writing_ = true;
    req_.set_id(to_write_.front());
    to_write_.pop_front();
    lock.unlock();
    StartWrite(&req_);
  }

  // Cancels the stream and waits until gRPC is done with it.
  void Stop() {
    ctx_.TryCancel();
    std::unique_lock<std::mutex> lock(mu_);
    finished_cv_.wait(lock, [this] { return finished_; });
  }

 private:
  void OnWriteDone(bool ok) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (!ok || to_write_.empty()) {
      writing_ = false;
      return;
    }
    req_.set_id(to_write_.front());
    to_write_.pop_front();
    lock.unlock();
    StartWrite(&req_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // OnDone follows and fails what is pending
    const int64_t ttl = resp_.ttl();
    Callback cb;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!pending_.empty()) {
        cb = std::move(pending_.front());
        pending_.pop_front();
      }
    }
    StartRead(&resp_);
    if (cb) cb(grpc::Status::OK, ttl);
  }

  void OnDone(const grpc::Status& s) override {
    std::deque<Callback> left;
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
      left.swap(pending_);
    }
    const grpc::Status status =
        s.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                              "LeaseKeepAlive stream ended")
               : s;
    for (Callback& cb : left) cb(status, 0);
    std::lock_guard<std::mutex> lock(mu_);
    finished_ = true;
    finished_cv_.notify_all();
  }

  grpc::ClientContext ctx_;
  pb::LeaseKeepAliveRequest req_;
  pb::LeaseKeepAliveResponse resp_;
  std::mutex mu_;
  std::deque<int64_t> to_write_;
  std::deque<Callback> pending_;  // in write order
  bool writing_ = false;
  bool done_ = false;
  bool finished_ = false;
  std::condition_variable finished_cv_;
};

class EtcdBackend final : public GrpcBackend {
 public:
  explicit EtcdBackend(const BenchOptions& opts)
      : GrpcBackend(opts), last_thread_(opts.owners) {}

  ~EtcdBackend() override { Stop(); }

  bool Setup(CompletionSink* sink) override;
  bool Fire(uint64_t k, const CallToken& token) override;
  void Stop() override {
    for (auto& s : streams_) s->Stop();
  }
  uint64_t setup_calls() const override { return setup_calls_.load(); }

 private:
  // connection: `batch` LeaseGrants in parallel, then the Puts.
  struct Connect {
    uint64_t k = 0;
    CallToken token;
    int owner = 0;
    std::vector<int64_t> leases;
    std::atomic<int> left{0};
    std::mutex mu;
    grpc::Status failure;  // first failed grant
  };
  // gateway: one session.
  struct Session : GatewaySession {
    using GatewaySession::GatewaySession;
    const std::string* owner = nullptr;
    int64_t lease = 0;
    std::string thread, run;
  };

  KvAsync* kv(uint64_t k) { return kv_[k % kv_.size()]->async(); }
  LeaseAsync* lease(uint64_t k) { return lease_[k % lease_.size()]->async(); }

  // Synchronous, for setup.
  bool TxnSync(const pb::TxnRequest& req);
  bool GrantSync(int64_t* id);
  bool FillOwnerPools(int64_t per_owner);
  bool FillConnections(int64_t n);

  // The open-context Txn: fills `txn`; *new_thread is the thread it
  // creates unless `thread` (non-empty) is still the owner's.
  void OpenContextTxn(const std::string& thread, const std::string& owner,
                      int64_t lease, pb::TxnRequest* txn,
                      std::string* new_thread);

  void ConnectPut(Connect* c);
  void GatewayGrant(Session* s);
  void GatewayPut(Session* s);
  void GatewayKeepAlive(Session* s);
  void GatewayOpen(Session* s);
  void GatewayValidate(Session* s);
  void GatewayRevoke(Session* s);

  LocalIds ids_;
  std::vector<std::string> owners_;  // values
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<pb::KV::Stub>> kv_;
  std::vector<std::unique_ptr<pb::Lease::Stub>> lease_;
  std::vector<std::unique_ptr<KeepAliveStream>> streams_;
  std::vector<int64_t> leases_;                 // lease workload
  std::vector<std::vector<std::string>> pool_;  // validate, cleanup
  std::vector<int64_t> connections_;            // cleanup --children: leases
  LastThreads last_thread_;
  std::atomic<uint64_t> setup_calls_{0};
};

bool EtcdBackend::TxnSync(const pb::TxnRequest& req) {
  pb::TxnResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  const grpc::Status s = kv_[0]->Txn(&ctx, req, &resp);
  setup_calls_.fetch_add(1, std::memory_order_relaxed);
  if (!s.ok()) {
    std::fprintf(stderr, "setup Txn failed: %s %s\n",
                 CodeName(s.error_code()).c_str(), s.error_message().c_str());
  }
  return s.ok();
}

bool EtcdBackend::GrantSync(int64_t* id) {
  pb::LeaseGrantRequest req;
  req.set_ttl(opts_.lease_ttl);
  pb::LeaseGrantResponse resp;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  const grpc::Status s = lease_[0]->LeaseGrant(&ctx, req, &resp);
  setup_calls_.fetch_add(1, std::memory_order_relaxed);
  if (!s.ok() || !resp.error().empty()) {
    std::fprintf(stderr, "setup LeaseGrant failed: %s %s%s\n",
                 CodeName(s.error_code()).c_str(), s.error_message().c_str(),
                 resp.error().c_str());
    return false;
  }
  *id = resp.id();
  return true;
}

bool EtcdBackend::FillOwnerPools(int64_t per_owner) {
  pool_.resize(opts_.owners);
  const int max_ops = std::max(1, opts_.etcd_max_txn_ops);
  return ParallelFor(opts_.owners, 8, [&](int b, int e) {
    for (int o = b; o < e; ++o) {
      for (int64_t left = per_owner; left > 0; left -= max_ops) {
        pb::TxnRequest txn;
        for (int64_t i = 0; i < std::min<int64_t>(left, max_ops); ++i) {
          pool_[o].push_back(ids_.Next(IdKind::kThread));
          AddPut(txn.mutable_success(), pool_[o].back(), owners_[o], 0);
        }
        if (!TxnSync(txn)) return false;
      }
    }
    return true;
  });
}

bool EtcdBackend::FillConnections(int64_t n) {
  if (opts_.children + 1 > opts_.etcd_max_txn_ops) {
    std::fprintf(stderr,
                 "--children=%d needs --etcd_max_txn_ops (and etcd's "
                 "--max-txn-ops) of at least %d\n",
                 opts_.children, opts_.children + 1);
    return false;
  }
  connections_.resize(n);
  return ParallelFor(static_cast<int>(n), 8, [&](int b, int e) {
    for (int i = b; i < e; ++i) {
      int64_t lease = 0;
      if (!GrantSync(&lease)) return false;
      const std::string& owner = owners_[i % opts_.owners];
      pb::TxnRequest txn;
      AddPut(txn.mutable_success(), ids_.Next(IdKind::kConnection), owner,
             lease);
      for (int c = 0; c < opts_.children; ++c) {
        AddPut(txn.mutable_success(), ids_.Next(IdKind::kRun), owner, lease);
      }
      if (!TxnSync(txn)) return false;
      connections_[i] = lease;
    }
    return true;
  });
}

bool EtcdBackend::Setup(CompletionSink* sink) {
  sink_ = sink;
  for (int i = 0; i < opts_.channels; ++i) {
    auto channel = ConnectChannel(opts_.target, i, absl::Seconds(10));
    if (channel == nullptr) {
      std::fprintf(stderr, "cannot connect to etcd at %s\n",
                   opts_.target.c_str());
      return false;
    }
    kv_.push_back(pb::KV::NewStub(channel));
    lease_.push_back(pb::Lease::NewStub(channel));
    channels_.push_back(std::move(channel));
  }
  for (int i = 0; i < opts_.owners; ++i) {
    owners_.push_back(OwnerValue(opts_.tenant, i));
  }
  const int64_t setup_start = NowNs();
  const Workload w = opts_.workload;
  if (!(w == Workload::kCleanup && opts_.children > 0) &&
      opts_.batch > opts_.etcd_max_txn_ops) {
    std::fprintf(stderr,
                 "--batch=%d needs --etcd_max_txn_ops (and etcd's "
                 "--max-txn-ops) of at least %d\n",
                 opts_.batch, opts_.batch);
    return false;
  }
  if (w == Workload::kLease) {
    for (int i = 0; i < std::max(1, opts_.leases); ++i) {
      int64_t id = 0;
      if (!GrantSync(&id)) return false;
      leases_.push_back(id);
    }
  }
  if (w == Workload::kLease || w == Workload::kGateway) {
    const int n = std::clamp(opts_.concurrency, 1, 256);
    for (int i = 0; i < n; ++i) {
      streams_.push_back(std::make_unique<KeepAliveStream>(lease(i)));
    }
  }
  const SetupPools pools = PlanSetupPools(opts_);
  if (pools.ids_per_owner > 0 && !FillOwnerPools(pools.ids_per_owner)) {
    return false;
  }
  if (pools.connections > 0 && !FillConnections(pools.connections)) {
    return false;
  }
  PrintSetupLine({"keys", "connection leases", "leases"}, setup_start, pool_,
                 connections_.size(), leases_.size());
  return true;
}

void EtcdBackend::OpenContextTxn(const std::string& thread,
                                 const std::string& owner, int64_t lease,
                                 pb::TxnRequest* txn, std::string* new_thread) {
  *new_thread = ids_.Next(IdKind::kThread);
  const std::string run = ids_.Next(IdKind::kRun);
  const std::string req = ids_.Next(IdKind::kRequest);
  if (thread.empty()) {
    // No compare: the success branch runs.
    AddPut(txn->mutable_success(), *new_thread, owner, 0);
    AddPut(txn->mutable_success(), run, owner, lease);
    AddPut(txn->mutable_success(), req, owner, lease);
    return;
  }
  pb::Compare* cmp = txn->add_compare();
  cmp->set_result(pb::Compare::EQUAL);
  cmp->set_target(pb::Compare::VALUE);
  cmp->set_key(thread);
  cmp->set_value(owner);
  AddPut(txn->mutable_success(), run, owner, lease);
  AddPut(txn->mutable_success(), req, owner, lease);
  AddPut(txn->mutable_failure(), *new_thread, owner, 0);
  AddPut(txn->mutable_failure(), run, owner, lease);
  AddPut(txn->mutable_failure(), req, owner, lease);
}

void EtcdBackend::ConnectPut(Connect* c) {
  std::unique_ptr<Connect> owned(c);
  if (!c->failure.ok()) {
    CallResult r = Failed(c->failure);
    r.rpcs = static_cast<uint32_t>(c->leases.size());
    return sink_->Done(c->token, std::move(r));
  }
  const uint32_t rpcs = static_cast<uint32_t>(c->leases.size()) + 1;
  const std::string& owner = owners_[c->owner];
  auto done = [this, token = c->token, rpcs](const grpc::Status& s) {
    CallResult r;
    if (s.ok()) {
      r.items = rpcs - 1;
    } else {
      r = Failed(s);
    }
    r.rpcs = rpcs;
    sink_->Done(token, std::move(r));
  };
  if (c->leases.size() == 1) {
    auto rpc = std::make_unique<UnaryRpc<pb::PutRequest, pb::PutResponse>>();
    rpc->req.set_key(ids_.Next(IdKind::kConnection));
    rpc->req.set_value(owner);
    rpc->req.set_lease(c->leases[0]);
    StartUnary(kv(c->k), &KvAsync::Put, std::move(rpc), opts_.deadline,
               [done](const grpc::Status& s,
                      UnaryRpc<pb::PutRequest, pb::PutResponse>&) { done(s); });
    return;
  }
  auto rpc = std::make_unique<UnaryRpc<pb::TxnRequest, pb::TxnResponse>>();
  for (int64_t lease : c->leases) {
    AddPut(rpc->req.mutable_success(), ids_.Next(IdKind::kConnection), owner,
           lease);
  }
  StartUnary(kv(c->k), &KvAsync::Txn, std::move(rpc), opts_.deadline,
             [done](const grpc::Status& s,
                    UnaryRpc<pb::TxnRequest, pb::TxnResponse>&) { done(s); });
}

bool EtcdBackend::Fire(uint64_t k, const CallToken& token) {
  const int o = static_cast<int>(k % static_cast<uint64_t>(opts_.owners));
  const std::string& owner = owners_[o];
  const IdKind kind = opts_.workload == Workload::kConnection
                          ? IdKind::kConnection
                          : opts_.kind;

  switch (opts_.workload) {
    case Workload::kIssue:
    case Workload::kIssueBatch: {
      if (opts_.batch == 1) {
        auto rpc =
            std::make_unique<UnaryRpc<pb::PutRequest, pb::PutResponse>>();
        rpc->req.set_key(ids_.Next(kind));
        rpc->req.set_value(owner);
        Call(kv(k), token, std::move(rpc), &KvAsync::Put,
             [](const pb::PutResponse&, CallResult* out) { out->items = 1; });
        return true;
      }
      auto rpc = std::make_unique<UnaryRpc<pb::TxnRequest, pb::TxnResponse>>();
      for (int i = 0; i < opts_.batch; ++i) {
        AddPut(rpc->req.mutable_success(), ids_.Next(kind), owner, 0);
      }
      Call(kv(k), token, std::move(rpc), &KvAsync::Txn,
           [](const pb::TxnResponse& r, CallResult* out) {
             out->items = static_cast<uint64_t>(r.responses_size());
           });
      return true;
    }
    case Workload::kConnection: {
      auto* c = new Connect;
      c->k = k;
      c->token = token;
      c->owner = o;
      c->leases.resize(opts_.batch);
      c->left.store(opts_.batch);
      for (int i = 0; i < opts_.batch; ++i) {
        auto rpc = std::make_unique<
            UnaryRpc<pb::LeaseGrantRequest, pb::LeaseGrantResponse>>();
        rpc->req.set_ttl(opts_.lease_ttl);
        StartUnary(
            lease(k), &LeaseAsync::LeaseGrant, std::move(rpc), opts_.deadline,
            [this, c, i](
                const grpc::Status& s,
                UnaryRpc<pb::LeaseGrantRequest, pb::LeaseGrantResponse>& r) {
              grpc::Status st = s;
              if (st.ok() && !r.resp.error().empty()) {
                st = grpc::Status(grpc::StatusCode::UNKNOWN, r.resp.error());
              }
              if (st.ok()) {
                c->leases[i] = r.resp.id();
              } else {
                std::lock_guard<std::mutex> lock(c->mu);
                if (c->failure.ok()) c->failure = st;
              }
              if (c->left.fetch_sub(1, std::memory_order_acq_rel) == 1) {
                ConnectPut(c);
              }
            });
      }
      return true;
    }
    case Workload::kValidate: {
      const std::vector<std::string>& ids = pool_[o];
      uint64_t r = SplitMix(k);
      const bool ser = opts_.etcd_serializable;
      if (opts_.batch == 1) {
        auto rpc =
            std::make_unique<UnaryRpc<pb::RangeRequest, pb::RangeResponse>>();
        rpc->req.set_key(ids[r % ids.size()]);
        rpc->req.set_serializable(ser);
        Call(kv(k), token, std::move(rpc), &KvAsync::Range,
             [&owner](const pb::RangeResponse& resp, CallResult* out) {
               CountValid(resp, owner, out);
             });
        return true;
      }
      auto rpc = std::make_unique<UnaryRpc<pb::TxnRequest, pb::TxnResponse>>();
      for (int i = 0; i < opts_.batch; ++i) {
        AddRange(rpc->req.mutable_success(), ids[r % ids.size()], ser);
        r = SplitMix(r);
      }
      Call(kv(k), token, std::move(rpc), &KvAsync::Txn,
           [&owner](const pb::TxnResponse& resp, CallResult* out) {
             for (const pb::ResponseOp& op : resp.responses()) {
               CountValid(op.response_range(), owner, out);
             }
           });
      return true;
    }
    case Workload::kCleanup: {
      if (opts_.children > 0) {
        if (k >= connections_.size()) return false;
        auto rpc = std::make_unique<
            UnaryRpc<pb::LeaseRevokeRequest, pb::LeaseRevokeResponse>>();
        rpc->req.set_id(connections_[k]);
        const uint64_t n = static_cast<uint64_t>(opts_.children) + 1;
        Call(lease(k), token, std::move(rpc), &LeaseAsync::LeaseRevoke,
             [n](const pb::LeaseRevokeResponse&, CallResult* out) {
               out->items = n;  // etcd does not say how many keys it deleted
             });
        return true;
      }
      const std::vector<std::string>& ids = pool_[o];
      const size_t pos = (k / static_cast<uint64_t>(opts_.owners)) *
                         static_cast<uint64_t>(opts_.batch);
      if (pos + opts_.batch > ids.size()) return false;
      if (opts_.batch == 1) {
        auto del = std::make_unique<
            UnaryRpc<pb::DeleteRangeRequest, pb::DeleteRangeResponse>>();
        del->req.set_key(ids[pos]);
        Call(kv(k), token, std::move(del), &KvAsync::DeleteRange,
             [](const pb::DeleteRangeResponse& r, CallResult* out) {
               out->items = static_cast<uint64_t>(r.deleted());
               if (r.deleted() != 1) ++out->unexpected;
             });
        return true;
      }
      const uint64_t expected = opts_.batch;
      auto rpc = std::make_unique<UnaryRpc<pb::TxnRequest, pb::TxnResponse>>();
      for (int i = 0; i < opts_.batch; ++i) {
        rpc->req.add_success()->mutable_request_delete_range()->set_key(
            ids[pos + i]);
      }
      Call(kv(k), token, std::move(rpc), &KvAsync::Txn,
           [expected](const pb::TxnResponse& r, CallResult* out) {
             for (const pb::ResponseOp& op : r.responses()) {
               out->items +=
                   static_cast<uint64_t>(op.response_delete_range().deleted());
             }
             if (out->items != expected) ++out->unexpected;
           });
      return true;
    }
    case Workload::kOpenContext: {
      std::string thread;
      if (UnitRandom(k) < opts_.reuse) thread = last_thread_.Get(o);
      auto rpc = std::make_unique<UnaryRpc<pb::TxnRequest, pb::TxnResponse>>();
      std::string new_thread;
      OpenContextTxn(thread, owner, 0, &rpc->req, &new_thread);
      const bool reusing = !thread.empty();
      Call(kv(k), token, std::move(rpc), &KvAsync::Txn,
           [this, o, reusing, new_thread](const pb::TxnResponse& r,
                                          CallResult* out) {
             const bool reused = reusing && r.succeeded();
             out->items = reused ? 2 : 3;
             if (!reused) last_thread_.Set(o, new_thread);
           });
      return true;
    }
    case Workload::kLease: {
      const size_t stream =
          (token.slot >= 0 ? static_cast<size_t>(token.slot) : k) %
          streams_.size();
      streams_[stream]->KeepAlive(
          leases_[k % leases_.size()],
          [this, token](const grpc::Status& s, int64_t ttl) {
            CallResult r;
            if (s.ok()) {
              r.items = 1;
              if (ttl <= 0) r.unexpected = 1;
            } else {
              r = Failed(s);
            }
            sink_->Done(token, std::move(r));
          });
      return true;
    }
    case Workload::kGateway: {
      auto* s = new Session(k, token);
      s->owner = &owner;
      GatewayGrant(s);
      return true;
    }
  }
  return false;
}

void EtcdBackend::GatewayGrant(Session* s) {
  auto rpc = std::make_unique<
      UnaryRpc<pb::LeaseGrantRequest, pb::LeaseGrantResponse>>();
  rpc->req.set_ttl(opts_.lease_ttl);
  ++s->rpcs;
  StartUnary(
      lease(s->k), &LeaseAsync::LeaseGrant, std::move(rpc), opts_.deadline,
      [this, s](const grpc::Status& st,
                UnaryRpc<pb::LeaseGrantRequest, pb::LeaseGrantResponse>& r) {
        if (!st.ok()) return GatewayEnd(s, Failed(st));
        if (!r.resp.error().empty()) {
          return GatewayEnd(s, Failed(grpc::Status(grpc::StatusCode::UNKNOWN,
                                                   r.resp.error())));
        }
        s->lease = r.resp.id();
        GatewayPut(s);
      });
}

void EtcdBackend::GatewayPut(Session* s) {
  auto rpc = std::make_unique<UnaryRpc<pb::PutRequest, pb::PutResponse>>();
  rpc->req.set_key(ids_.Next(IdKind::kConnection));
  rpc->req.set_value(*s->owner);
  rpc->req.set_lease(s->lease);
  ++s->rpcs;
  StartUnary(kv(s->k), &KvAsync::Put, std::move(rpc), opts_.deadline,
             [this, s](const grpc::Status& st,
                       UnaryRpc<pb::PutRequest, pb::PutResponse>&) {
               if (!st.ok()) return GatewayEnd(s, Failed(st));
               GatewayKeepAlive(s);
             });
}

void EtcdBackend::GatewayKeepAlive(Session* s) {
  ++s->rpcs;
  streams_[s->k % streams_.size()]->KeepAlive(
      s->lease, [this, s](const grpc::Status& st, int64_t ttl) {
        if (!st.ok()) return GatewayEnd(s, Failed(st));
        if (ttl <= 0) ++s->unexpected;
        GatewayOpen(s);
      });
}

void EtcdBackend::GatewayOpen(Session* s) {
  auto rpc = std::make_unique<UnaryRpc<pb::TxnRequest, pb::TxnResponse>>();
  std::string new_thread;
  OpenContextTxn(s->thread, *s->owner, s->lease, &rpc->req, &new_thread);
  // The run is the first Put of whichever branch runs after the thread's.
  const std::string run = s->thread.empty()
                              ? rpc->req.success(1).request_put().key()
                              : rpc->req.success(0).request_put().key();
  const bool reusing = !s->thread.empty();
  ++s->rpcs;
  StartUnary(kv(s->k), &KvAsync::Txn, std::move(rpc), opts_.deadline,
             [this, s, run, reusing, new_thread](
                 const grpc::Status& st,
                 UnaryRpc<pb::TxnRequest, pb::TxnResponse>& r) {
               if (!st.ok()) return GatewayEnd(s, Failed(st));
               if (reusing && !r.resp.succeeded()) {
                 ++s->unexpected;
                 s->thread = new_thread;
               } else if (!reusing) {
                 s->thread = new_thread;
               }
               s->run = run;
               GatewayValidate(s);
             });
}

void EtcdBackend::GatewayValidate(Session* s) {
  auto rpc = std::make_unique<UnaryRpc<pb::TxnRequest, pb::TxnResponse>>();
  AddRange(rpc->req.mutable_success(), s->thread, opts_.etcd_serializable);
  AddRange(rpc->req.mutable_success(), s->run, opts_.etcd_serializable);
  ++s->rpcs;
  StartUnary(kv(s->k), &KvAsync::Txn, std::move(rpc), opts_.deadline,
             [this, s](const grpc::Status& st,
                       UnaryRpc<pb::TxnRequest, pb::TxnResponse>& r) {
               if (!st.ok()) return GatewayEnd(s, Failed(st));
               CallResult check;
               for (const pb::ResponseOp& op : r.resp.responses()) {
                 CountValid(op.response_range(), *s->owner, &check);
               }
               s->unexpected += check.unexpected;
               if (check.items != 2) ++s->unexpected;
               if (++s->message < opts_.messages) return GatewayOpen(s);
               GatewayRevoke(s);
             });
}

void EtcdBackend::GatewayRevoke(Session* s) {
  auto rpc = std::make_unique<
      UnaryRpc<pb::LeaseRevokeRequest, pb::LeaseRevokeResponse>>();
  rpc->req.set_id(s->lease);
  ++s->rpcs;
  StartUnary(
      lease(s->k), &LeaseAsync::LeaseRevoke, std::move(rpc), opts_.deadline,
      [this, s](const grpc::Status& st,
                UnaryRpc<pb::LeaseRevokeRequest, pb::LeaseRevokeResponse>&) {
        if (!st.ok()) return GatewayEnd(s, Failed(st));
        GatewayEnd(s, CallResult{});
      });
}

}  // namespace

std::unique_ptr<Backend> MakeEtcdBackend(const BenchOptions& opts) {
  return std::make_unique<EtcdBackend>(opts);
}

}  // namespace registrar::bench
