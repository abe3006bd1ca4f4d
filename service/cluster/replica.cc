#include "service/cluster/replica.h"

#include <grpcpp/security/credentials.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "service/api/status_conversion.h"
#include "service/cluster/replica_parts.h"
#include "service/common/absl_compat.h"
#include "service/common/field_error.h"
#include "service/common/status_macros.h"
#include "service/etcd/etcd_backend.h"
#include "service/etcd/sync_call.h"
#include "spdlog/spdlog.h"

namespace registrar::cluster {

namespace {

constexpr absl::Duration kRoleTick = absl::Milliseconds(200);
constexpr absl::Duration kRebuildBackoff = absl::Milliseconds(500);
constexpr absl::Duration kProbeEvery = absl::Seconds(1);
// How long a new writer waits for its feed to apply what the old writer
// committed before it loads afresh instead.
constexpr absl::Duration kCatchUp = absl::Seconds(5);

std::string MethodPath(Method method) {
  const MethodInfo& info = InfoOf(method);
  return absl::StrCat("/", AsAbsl(info.service), "/", AsAbsl(info.name));
}

// A change this replica turned away before anything was done with it:
// UNAVAILABLE marked NOT_APPLIED (google.rpc.ErrorInfo), so clients may
// repeat any call, here or on another replica.
grpc::Status Unavailable(const std::string& message) {
  return ToGrpcStatus(NotApplied(message));
}

}  // namespace

Replica::Replica(std::shared_ptr<etcd::Connection> conn,
                 std::shared_ptr<etcd::NodeIdClaimer> claim,
                 ReplicaOptions options, const Clock& clock, IdGenerator& ids,
                 RegistryObserver* observer)
    : conn_(std::move(conn)),
      options_(std::move(options)),
      clock_(clock),
      ids_(ids),
      observer_(observer),
      shared_(std::make_shared<Shared>()),
      claim_(std::move(claim)) {}

absl::StatusOr<std::unique_ptr<Replica>> Replica::Start(
    std::shared_ptr<etcd::Connection> conn,
    std::shared_ptr<etcd::NodeIdClaimer> claim, ReplicaOptions options,
    const Clock& clock, IdGenerator& ids, RegistryObserver* observer) {
  std::unique_ptr<Replica> r(new Replica(std::move(conn), std::move(claim),
                                         std::move(options), clock, ids,
                                         observer));
  ASSIGN_OR_RETURN(std::shared_ptr<Generation> first, r->Build(false));
  r->Install(std::move(first));
  r->thread_ = std::thread([p = r.get()] { p->Run(); });
  return r;
}

Replica::~Replica() {
  Stop();
  std::shared_ptr<Generation> last;
  {
    absl::MutexLock lock(&mu_);
    last = std::move(current_);
  }
  last.reset();
  retired_.clear();
}

void Replica::Stop() {
  if (stopped_.exchange(true)) return;
  std::shared_ptr<etcd::Election> election;
  {
    absl::MutexLock lock(&shared_->mu);
    shared_->stopping = true;
    election = std::move(shared_->election);
  }
  if (thread_.joinable()) thread_.join();
  // The election key goes with the node id claim's lease (the server
  // revokes it next); the watch of the election ends here.
  election.reset();
}

absl::StatusOr<std::shared_ptr<Replica::Generation>> Replica::Build(
    bool leader) {
  auto g = std::make_shared<Generation>();
  g->leader = leader;
  ASSIGN_OR_RETURN(std::unique_ptr<etcd::EtcdStore> store,
                   etcd::EtcdStore::Create(conn_, options_.store));
  g->store = std::move(store);
  if (leader) {
    ASSIGN_OR_RETURN(etcd::EtcdStore::WriteFence fence,
                     WriterFence(g->retired));
    g->store->SetWriteFence(std::move(fence));
  } else {
    etcd::EtcdStore::WriteFence fence = etcd::NodeIdFence(claim());
    fence.check = [] {
      return absl::UnavailableError(
          "this replica is a follower: changes go to the writer");
    };
    g->store->SetWriteFence(std::move(fence));
  }
  g->registry = std::make_shared<Registry>(options_.registry, clock_, ids_,
                                           observer_, g->store.get());
  RETURN_IF_ERROR(g->registry->Recover());
  if (!leader) {
    etcd::EtcdStore* store = g->store.get();
    g->feed = std::make_unique<FollowerFeed>(
        conn_, store->layout(), store->loaded_at(), store->LastRevision(),
        *g->registry, [store](const CommittedTxn& txn) {
          // Watch on this replica serves what it has applied.
          store->NoteCommitted(txn.batch.events, txn.revision);
        });
    g->barrier = std::make_unique<ReadBarrier>(
        conn_, store->layout(), *g->feed, options_.store.txn_attempt_timeout);
  }
  return g;
}

absl::StatusOr<etcd::EtcdStore::WriteFence> Replica::WriterFence(
    std::shared_ptr<std::atomic<bool>> retired) {
  std::shared_ptr<etcd::Election> e = election();
  if (e == nullptr) {
    return absl::FailedPreconditionError("not in the election");
  }
  etcd::EtcdStore::WriteFence fence = etcd::NodeIdFence(claim());
  // etcd's test: our candidate key is still the one we were elected with.
  fence.compares.push_back(e->LeaderCompare());
  // Ours: still the writer, and this generation still the current one.
  fence.check = [node = std::move(fence.check),
                 weak = std::weak_ptr<etcd::Election>(e),
                 retired = std::move(retired)]() -> absl::Status {
    RETURN_IF_ERROR(node());
    std::shared_ptr<etcd::Election> el = weak.lock();
    if (retired->load() || el == nullptr || !el->IsLeader()) {
      return absl::UnavailableError(
          "this replica is no longer the cluster's writer; retry (the "
          "call goes to the new writer)");
    }
    return absl::OkStatus();
  };
  return fence;
}

absl::StatusOr<std::shared_ptr<Replica::Generation>> Replica::TakeOver(
    Generation& follower) {
  // Catch up with everything the old writer committed. It commits nothing
  // more: its Txns compare its candidate key, gone since we were elected.
  RETURN_IF_ERROR(follower.feed->status());
  RETURN_IF_ERROR(follower.barrier->Wait(absl::Now() + kCatchUp));
  // From here the registry changes by this replica's own writes only.
  follower.feed->Stop(absl::UnavailableError(
      "this replica became the cluster's writer while the read waited; "
      "retry"));
  auto g = std::make_shared<Generation>();
  g->leader = true;
  g->store = follower.store;
  g->registry = follower.registry;
  ASSIGN_OR_RETURN(etcd::EtcdStore::WriteFence fence, WriterFence(g->retired));
  // Checks that etcd holds exactly what the feed applied.
  ASSIGN_OR_RETURN(const uint64_t clock_high_water,
                   g->store->TakeOver(std::move(fence)));
  follower.handed_over = true;
  g->registry->TakeOver(clock_high_water);
  return g;
}

void Replica::Install(std::shared_ptr<Generation> g) {
  std::shared_ptr<Generation> old;
  {
    absl::MutexLock lock(&mu_);
    old = std::exchange(current_, g);
  }
  event_log_.Switch(g->store);
  if (old != nullptr) {
    old->retired->store(true);
    retired_.push_back(std::move(old));
  }
}

std::shared_ptr<Replica::Generation> Replica::current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

std::shared_ptr<etcd::Election> Replica::election() const {
  absl::MutexLock lock(&shared_->mu);
  return shared_->election;
}

absl::Status Replica::Campaign(const std::string& advertise,
                               absl::Duration settle) {
  {
    absl::MutexLock lock(&mu_);
    forwarder_ = std::make_shared<Forwarder>(
        options_.forward_credentials != nullptr
            ? options_.forward_credentials
            : grpc::InsecureChannelCredentials(),
        advertise, options_.forward_server_name, options_.forward_timeout);
    advertise_ = advertise;
  }
  RETURN_IF_ERROR(EnterElection());
  std::shared_ptr<etcd::Election> e = election();
  const absl::Time until = absl::Now() + settle;
  while (e != nullptr && absl::Now() < until) {
    std::optional<etcd::LeaderInfo> leader = e->leader();
    if (leader.has_value() && (!leader->is_me || IsLeader())) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::OkStatus();
}

absl::Status Replica::EnterElection() {
  std::string advertise;
  {
    absl::MutexLock lock(&mu_);
    advertise = advertise_;
  }
  std::weak_ptr<Shared> weak = shared_;
  absl::StatusOr<std::shared_ptr<etcd::Election>> e =
      etcd::SyncCall<std::shared_ptr<etcd::Election>>([&](auto cb) {
        etcd::Election::Campaign(
            conn_, options_.store.prefix + "/leader/", advertise,
            claim()->keeper(),
            [weak](const std::optional<etcd::LeaderInfo>&) {
              if (std::shared_ptr<Shared> s = weak.lock()) s->Wake();
            },
            std::move(cb));
      });
  if (!e.ok()) {
    return absl::Status(
        e.status().code(),
        absl::StrCat("entering the writer election: ", e.status().message()));
  }
  absl::MutexLock lock(&shared_->mu);
  shared_->election = *e;
  shared_->dirty = true;
  return absl::OkStatus();
}

std::shared_ptr<etcd::NodeIdClaimer> Replica::claim() const {
  absl::MutexLock lock(&mu_);
  return claim_;
}

std::shared_ptr<Registry> Replica::registry() {
  std::shared_ptr<Generation> g = current();
  // Holding the registry holds its whole generation (store included).
  return std::shared_ptr<Registry>(g, g->registry.get());
}

void Replica::BeforeRead(absl::Time deadline, ReadReady ready) {
  std::shared_ptr<Generation> g = current();
  // The writer applies every change before acknowledging it.
  if (g->leader) return ready(absl::OkStatus());
  ReadBarrier* barrier = g->barrier.get();
  // The generation stays while the barrier works for this read (a retired
  // one is freed on the role thread only once nothing holds it).
  barrier->WaitAsync(deadline,
                     [g = std::move(g), ready = std::move(ready)](
                         absl::Status s) mutable { ready(std::move(s)); });
}

bool Replica::IsLeader() const {
  std::shared_ptr<Generation> g = current();
  if (!g->leader) return false;
  std::shared_ptr<etcd::Election> e = election();
  return e != nullptr && e->IsLeader();
}

bool Replica::Forward(grpc::CallbackServerContext* ctx, Method method,
                      const grpc::ByteBuffer& request,
                      grpc::ByteBuffer* response, ForwardDone done) {
  if (!claim()->Held()) {
    done(Unavailable(
        "this replica lost its node id claim in etcd and takes no changes "
        "until it has claimed another; call another replica"));
    return true;
  }
  if (IsLeader()) return false;
  if (Forwarder::WasForwarded(*ctx)) {
    // Never a second hop: the sender's view of the writer is stale.
    done(Unavailable(
        "this replica is not the cluster's writer (any more); retry"));
    return true;
  }
  std::shared_ptr<etcd::Election> e = election();
  std::optional<etcd::LeaderInfo> leader;
  if (e != nullptr) leader = e->leader();
  std::shared_ptr<Forwarder> forwarder;
  {
    absl::MutexLock lock(&mu_);
    forwarder = forwarder_;
  }
  if (!leader.has_value() || forwarder == nullptr) {
    done(Unavailable(
        "no writer is elected yet (election in progress); nothing was "
        "done, retry"));
    return true;
  }
  if (leader->is_me) {
    done(Unavailable(
        "this replica is taking over as the writer (loading); nothing was "
        "done, retry"));
    return true;
  }
  if (IsPredecessor(*leader)) {
    shared_->Wake();  // the role thread revokes that lease
    done(Unavailable(
        "the writer elected is a previous process at this replica's address "
        "(being replaced); nothing was done, retry"));
    return true;
  }
  forwarder->Forward(
      leader->value, MethodPath(method), ctx, request, response,
      [done = std::move(done), writer = leader->value,
       revision = leader->create_revision,
       weak = std::weak_ptr<Shared>(shared_)](const grpc::Status& s) {
        if (Forwarder::NeverSent(s)) {
          // Dead and not yet replaced? The role thread looks (a dead
          // writer is replaced at once rather than after its lease TTL).
          if (std::shared_ptr<Shared> shared = weak.lock()) {
            shared->Unreachable(revision);
          }
          // The writer is gone (or unreachable) and not yet replaced: the
          // change was not sent, so the client may retry it anywhere.
          done(Unavailable(
              absl::StrCat("the writer ", writer, " cannot be reached (",
                           s.error_message(), "); nothing was done, retry")));
          return;
        }
        done(s);
      });
  return true;
}

std::vector<std::string> Replica::Tick() {
  std::shared_ptr<Generation> g = current();
  if (!g->leader || !IsLeader()) return {};
  return g->registry->Tick();
}

void Replica::Run() {
  std::string last_leader;
  while (true) {
    {
      absl::MutexLock lock(&shared_->mu);
      auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(shared_->mu) {
        return shared_->dirty || shared_->stopping;
      };
      shared_->mu.AwaitWithTimeout(absl::Condition(&woken), kRoleTick);
      if (shared_->stopping) return;
      shared_->dirty = false;
    }
    if (std::shared_ptr<etcd::Election> e = election()) {
      std::optional<etcd::LeaderInfo> leader = e->leader();
      const std::string now = leader.has_value() ? leader->value : "";
      if (now != last_leader) {
        spdlog::info(
            "cluster: the writer is {}{}",
            now.empty() ? "not elected yet" : now,
            leader.has_value() && leader->is_me ? " (this replica)" : "");
        last_leader = now;
      }
    }
    Reconcile();
    ReplaceDeadWriter();
    FreeRetired();
  }
}

void Replica::Reconcile() {
  if (!claim()->Held()) {
    Reclaim();  // nothing can write meanwhile; health says so
    return;
  }
  if (rejoin_.load()) {
    Rejoin();
    return;
  }
  std::shared_ptr<Generation> g = current();
  std::shared_ptr<etcd::Election> e = election();
  const bool elected = e != nullptr && e->IsLeader();
  std::string why;
  if (elected && !g->leader) {
    why = "elected the cluster's writer";
  } else if (!elected && g->leader) {
    why = "no longer the cluster's writer";
    g->retired->store(true);  // no write from this registry from now on
  } else if (!g->leader) {
    if (absl::Status s = g->feed->status(); !s.ok()) {
      why = absl::StrCat("the follower feed ended (", s.message(), ")");
    }
  } else if (absl::Status s = g->store->CheckWritable();
             s.code() == absl::StatusCode::kAborted) {
    why = absl::StrCat("the writer's store is fenced (", s.message(), ")");
    g->retired->store(true);
  }
  if (why.empty() || absl::Now() < next_build_) return;
  if (elected && !g->leader) {
    // A follower that applied everything becomes the writer as it is: no
    // reload, so failover and a first start do not wait for a full load.
    const absl::Time start = absl::Now();
    absl::StatusOr<std::shared_ptr<Generation>> taken = TakeOver(*g);
    if (taken.ok()) {
      Install(*std::move(taken));
      took_over_.fetch_add(1);
      spdlog::info(
          "cluster: {}: this replica is now the writer (took over its "
          "follower registry in {})",
          why, absl::FormatDuration(absl::Now() - start));
      // Deposed meanwhile: the next round steps down.
      shared_->Wake();
      return;
    }
    spdlog::warn("cluster: taking over the follower registry failed ({})",
                 std::string(taken.status().message()));
  }
  spdlog::info("cluster: {}: loading a fresh {} registry from etcd", why,
               elected ? "writer" : "follower");
  const absl::Time start = absl::Now();
  absl::StatusOr<std::shared_ptr<Generation>> built = Build(elected);
  if (!built.ok()) {
    spdlog::warn("cluster: loading failed ({}); trying again",
                 std::string(built.status().message()));
    next_build_ = absl::Now() + kRebuildBackoff;
    return;
  }
  // The role may have changed while loading: then build again.
  e = election();
  const bool still = e != nullptr && e->IsLeader();
  if (still != elected) {
    spdlog::info("cluster: the role changed while loading; again");
    shared_->Wake();
    return;  // *built is destroyed here, on this thread
  }
  Install(*std::move(built));
  if (elected) loaded_as_writer_.fetch_add(1);
  spdlog::info("cluster: this replica is now the {} (loaded in {})",
               elected ? "writer" : "follower",
               absl::FormatDuration(absl::Now() - start));
}

void Replica::FreeRetired() {
  // Only here, on this thread: the last call holding a registry must not
  // run a generation's destructor on a store thread.
  for (auto it = retired_.begin(); it != retired_.end();) {
    if (it->use_count() == 1) {
      it = retired_.erase(it);
    } else {
      ++it;
    }
  }
}

ReplicaHealth Replica::CheckHealth() {
  ReplicaHealth h;
  std::shared_ptr<Generation> g = current();
  std::shared_ptr<etcd::Election> e = election();
  h.leader = g->leader && e != nullptr && e->IsLeader();
  if (e != nullptr) {
    if (std::optional<etcd::LeaderInfo> l = e->leader()) {
      h.leader_address = l->value;
    }
  }
  h.applied = g->leader ? g->store->LastRevision() : g->feed->applied();
  h.took_over = took_over_.load();
  h.dead_writers_revoked = dead_writers_revoked_.load();
  h.loaded_as_writer = loaded_as_writer_.load();
  h.reclaimed = reclaimed_.load();
  const std::shared_ptr<etcd::NodeIdClaimer> claimed = claim();
  h.node_id = claimed->id();
  auto refuse = [&h](std::string cause) {
    h.serving = false;
    h.cause = std::move(cause);
    return h;
  };
  if (!claimed->Held()) {
    return refuse(
        options_.reclaim
            ? "this replica lost its node id claim in etcd: it mints and "
              "writes nothing until it has claimed another"
            : "this replica lost its node id claim in etcd: it mints and "
              "writes nothing; restart it");
  }
  if (rejoin_.load()) {
    return refuse("this replica claimed a new node id and is rejoining");
  }
  if (g->leader) {
    if (absl::Status s = g->store->CheckWritable(); !s.ok()) {
      return refuse(
          absl::StrCat("the writer's store cannot write: ", s.message()));
    }
    return h;
  }
  if (absl::Status s = g->feed->status(); !s.ok()) {
    return refuse(absl::StrCat("the follower feed is down: ", s.message()));
  }
  const absl::Time now = absl::Now();
  if (now - last_probe_ >= kProbeEvery) {
    last_probe_ = now;
    last_probe_status_ = g->barrier->Wait(now + kProbeEvery);
    if (last_probe_status_.ok()) {
      behind_since_ = absl::InfiniteFuture();
    } else if (absl::IsDeadlineExceeded(last_probe_status_) &&
               behind_since_ == absl::InfiniteFuture()) {
      behind_since_ = now;
    }
  }
  if (!last_probe_status_.ok() &&
      !absl::IsDeadlineExceeded(last_probe_status_)) {
    return refuse(absl::StrCat("the last read barrier probe failed: ",
                               last_probe_status_.message()));
  }
  if (behind_since_ != absl::InfiniteFuture() &&
      absl::Now() - behind_since_ > options_.max_lag) {
    return refuse(absl::StrCat(
        "this follower has applied revision ", h.applied,
        " and has not caught up with etcd for ",
        absl::FormatDuration(absl::Now() - behind_since_),
        " (--follower_max_lag=", absl::FormatDuration(options_.max_lag), ")"));
  }
  return h;
}

}  // namespace registrar::cluster
