#include "service/server/server.h"

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "grpcpp/security/credentials.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "service/api/status_conversion.h"
#include "service/common/absl_compat.h"
#include "service/common/field_error.h"
#include "service/common/status_macros.h"
#include "service/common/thread_nice.h"
#include "service/etcd/etcd_backend.h"
#include "service/etcd/sync_call.h"
#include "service/metrics/grpc_server_metrics.h"
#include "service/metrics/process_metrics.h"
#include "service/reflection/server_reflection.h"
#include "service/store/memory_store.h"
#include "service/store/rocksdb_store.h"
#include "spdlog/spdlog.h"

namespace registrar {
namespace {
constexpr char kServiceName[] = "registrar.v1.Registrar";
constexpr char kAdminServiceName[] = "registrar.v1.Admin";

// Everything but grpc.health.v1 on the --health_listen server: a clear
// UNIMPLEMENTED. (gRPC also refuses to build a server whose only service is
// the default health service.)
class HealthPortOnlyService : public grpc::CallbackGenericService {
 public:
  grpc::ServerGenericBidiReactor* CreateReactor(
      grpc::GenericCallbackServerContext* /*context*/) override {
    class Reactor : public grpc::ServerGenericBidiReactor {
     public:
      Reactor() {
        Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                            "this port (--health_listen) serves "
                            "grpc.health.v1 only"));
      }
      void OnDone() override { delete this; }
    };
    return new Reactor;
  }
};

std::string HostOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

// A store's refusal to start, prefixed with the flag it concerns and
// naming the setting it depends on when the store tagged one.
}  // namespace

absl::StatusOr<KeyRing> LoadKeys(const ServerConfig& config) {
  if (!config.key_file.empty()) return KeyRing::LoadFile(config.key_file);
  if (!config.key_text.empty()) {
    absl::StatusOr<KeyRing> ring = KeyRing::Parse(config.key_text);
    if (!ring.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("REGISTRAR_KEY: ", ring.status().message()));
    }
    return ring;
  }
  if (config.store == "etcd") {
    return absl::InvalidArgumentError(
        "--store=etcd needs --key_file or REGISTRAR_KEY: every replica "
        "must verify the others' IDs with the same tag key");
  }
  if (config.store == "memory") {
    spdlog::warn(
        "NO TAG KEY CONFIGURED (--key_file or REGISTRAR_KEY): generated a "
        "random key for this process only. Other instances cannot verify "
        "its IDs. Generate a key file and pass --key_file for any real "
        "deployment.");
    return KeyRing::Generate();
  }
  // A durable store outlives the process, so a generated key must too: keep
  // it beside the data, readable only by this user.
  const std::filesystem::path path =
      std::filesystem::path(config.data_dir) / "tag.key";
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    spdlog::warn(
        "NO TAG KEY CONFIGURED (--key_file or REGISTRAR_KEY): using "
        "the key generated earlier in {}. Other instances cannot "
        "verify these IDs; pass --key_file for any real deployment.",
        path.string());
    return KeyRing::LoadFile(path.string());
  }
  KeyRing ring = KeyRing::Generate();
  std::filesystem::create_directories(config.data_dir, ec);
  {
    const mode_t old_mask = umask(077);
    std::ofstream out(path, std::ios::trunc);
    out << ring.ToFileText();
    umask(old_mask);
    if (!out.good()) {
      return absl::UnavailableError(
          absl::StrCat("cannot write generated tag key to ", path.string()));
    }
  }
  spdlog::warn(
      "NO TAG KEY CONFIGURED (--key_file or REGISTRAR_KEY): "
      "generated one and saved it as {}. Other instances cannot "
      "verify these IDs; pass --key_file for any real deployment.",
      path.string());
  return ring;
}

// --commit_thread_nice as the store may apply it: 0 when the process may
// not lower a thread's nice value, which the log says once, here.
static int CommitThreadNice(const ServerConfig& config) {
  const int nice = config.commit_thread_nice;
  if (nice == 0 || config.durability == Durability::kNone) return 0;
  if (absl::Status s = CheckThreadNice(nice); !s.ok()) {
    spdlog::info(
        "--commit_thread_nice={} not applied, the group-commit thread keeps "
        "the process's nice value: {}",
        nice, std::string(s.message()));
    return 0;
  }
  return nice;
}

RegistrarServer::RegistrarServer(const ServerConfig& config)
    : config_(config), clock_(config.clock_offset) {}

RegistrarServer::~RegistrarServer() {
  Shutdown();
  // A scrape from now on must not read the registry being destroyed.
  if (registry_stats_ != nullptr) registry_stats_->SetSource(nullptr);
}

absl::StatusOr<std::unique_ptr<RegistrarServer>> RegistrarServer::Start(
    const ServerConfig& config) {
  std::unique_ptr<RegistrarServer> server(new RegistrarServer(config));
  if (absl::Status s = server->Init(); !s.ok()) {
    server->shut_down_ = true;  // nothing to drain
    if (server->server_) server->server_->Shutdown();
    return s;
  }
  return server;
}

absl::Status RegistrarServer::Init() {
  metrics_ = std::make_unique<Metrics>();
  api_metrics_ = std::make_unique<ApiMetrics>(metrics_->registry());
  registry_metrics_ = std::make_unique<RegistryMetrics>(metrics_->registry());
  registry_stats_ = std::make_shared<RegistryStatsCollectable>();
  metrics_->AddCollectable(registry_stats_);
  store_writable_ = &prometheus::BuildGauge()
                         .Name("registrar_store_writable")
                         .Help(
                             "1 while the store can write, 0 while it "
                             "cannot (changes then fail with UNAVAILABLE "
                             "and health reports NOT_SERVING).")
                         .Register(metrics_->registry())
                         .Add({});
  store_writable_->Set(1);
  if (config_.store == "rocksdb") {
    metrics_->AddCollectable(MakeDataDirCollectable(config_.data_dir));
  }
  RocksDbStore* rocksdb_store = nullptr;  // for AdminService
  uint32_t node_id = config_.node_id;
  if (config_.store == "memory") {
    store_ = std::make_unique<MemoryStore>(config_.registry.event_history);
  } else if (config_.store == "etcd") {
    ASSIGN_OR_RETURN(etcd::EtcdBackend backend,
                     etcd::OpenEtcdBackend(EtcdBackendFor(config_), clock_));
    node_id = static_cast<uint32_t>(backend.claim->id());
    node_claim_ = std::move(backend.claim);
    etcd_conn_ = std::move(backend.connection);
    // The replica builds a store per role (service/cluster/replica.h).
  } else {
    if (!config_.restore_from.empty()) {
      absl::StatusOr<BackupInfo> restored = RocksDbStore::Restore(
          config_.restore_from, config_.data_dir, config_.node_id);
      if (!restored.ok()) {
        return StartupError(
            absl::StrCat("--restore_from=", config_.restore_from, ": "),
            restored.status());
      }
      spdlog::info("restored the backup {} into {}: revision {}, {} records",
                   config_.restore_from, config_.data_dir, restored->revision,
                   restored->records);
    }
    absl::StatusOr<std::unique_ptr<RocksDbStore>> store = RocksDbStore::Open(
        RocksDbStoreOptions{.path = config_.data_dir,
                            .durability = config_.durability,
                            .node_id = config_.node_id,
                            .commit_thread_nice = CommitThreadNice(config_),
                            .accept_data_loss = config_.accept_data_loss});
    if (!store.ok()) {
      return StartupError(absl::StrCat("--data_dir=", config_.data_dir, ": "),
                          store.status());
    }
    if (!(*store)->sizing_note().empty()) {
      spdlog::info("{}", (*store)->sizing_note());
    }
    if (!(*store)->recovery_note().empty()) {
      spdlog::warn("{}", (*store)->recovery_note());
    } else if (config_.accept_data_loss) {
      spdlog::warn(
          "--accept_data_loss is set, but the data dir {} lost "
          "nothing",
          config_.data_dir);
    }
    metrics_->AddCollectable((*store)->MetricsCollectable());
    rocksdb_store = store->get();
    store_ = *std::move(store);
  }
  // After the store: a key generated into a fresh data dir must not make
  // the dir look foreign to the store.
  absl::StatusOr<KeyRing> keys = LoadKeys(config_);
  if (!keys.ok()) return keys.status();
  keys_ = std::make_unique<KeyRing>(*std::move(keys));
  // A different key would turn every ID issued before into FORGED.
  auto accept_keys = [rocksdb_store](const KeyRing& keys) {
    if (rocksdb_store == nullptr) return absl::OkStatus();
    const std::vector<std::string> held = keys.Fingerprints();
    return rocksdb_store->AdoptTagKey(held, held.back());
  };
  if (absl::Status s = accept_keys(*keys_); !s.ok()) {
    return StartupError(absl::StrCat("--data_dir=", config_.data_dir, ": "), s);
  }
  ids_ = std::make_unique<IdGenerator>(clock_, *keys_, node_id);
  if (!config_.key_file.empty()) {
    key_reloader_ = std::make_unique<KeyFileReloader>(config_.key_file, *ids_,
                                                      std::move(accept_keys));
  }
  const absl::Time load_start = absl::Now();
  if (etcd_conn_ != nullptr) {
    RETURN_IF_ERROR(StartReplica());
  } else {
    registry_ = std::make_unique<Registry>(
        config_.registry, clock_, *ids_, registry_metrics_.get(), store_.get());
    if (absl::Status s = registry_->Recover(); !s.ok()) return s;
  }
  const RegistryStats loaded =
      replica_ != nullptr ? replica_->registry()->Stats() : registry_->Stats();
  uint64_t live = 0;
  for (uint64_t n : loaded.live_records) live += n;
  spdlog::info(
      "storage: {} ({}), started in {} with {} live records, {} "
      "tombstones, {} leases",
      replica_ != nullptr ? "etcd" : store_->name(),
      config_.store == "memory" ? "nothing kept across restarts"
      : config_.store == "etcd"
          ? absl::StrCat("prefix ", config_.etcd.store.prefix, " at ",
                         absl::StrJoin(config_.etcd.connection.endpoints, ","),
                         ", node id ", node_id)
          : absl::StrCat(config_.data_dir, ", durability ",
                         AsAbsl(DurabilityName(config_.durability))),
      absl::FormatDuration(absl::Now() - load_start), live, loaded.tombstones,
      loaded.leases);
  if (replica_ != nullptr) {
    cluster::Replica* replica = replica_.get();
    registry_stats_->SetSource(
        [replica] { return replica->registry()->Stats(); });
    watch_hub_ =
        std::make_unique<WatchHub>(replica_->event_log(), config_.watch);
  } else {
    Registry* registry = registry_.get();
    registry_stats_->SetSource([registry] { return registry->Stats(); });
    watch_hub_ = std::make_unique<WatchHub>(registry_->store(), config_.watch);
  }
  access_ = std::make_unique<AccessControl>(api_metrics_.get());
  if (!config_.callers_file.empty()) {
    RETURN_IF_ERROR(ReloadCallers());
  } else {
    spdlog::warn(
        "no --callers_file: callers are not authenticated; anyone "
        "who can reach {} may call every method",
        config_.listen);
  }
  limiter_ = std::make_unique<RateLimiter>(config_.caller_rate);
  if (replica_ != nullptr) {
    service_ = std::make_unique<RegistrarService>(
        *replica_, config_.limits, api_metrics_.get(), watch_hub_.get(),
        access_.get(), limiter_.get());
  } else {
    service_ = std::make_unique<RegistrarService>(
        *registry_, config_.limits, api_metrics_.get(), watch_hub_.get(),
        access_.get(), limiter_.get());
  }
  admin_ = std::make_unique<AdminService>(
      rocksdb_store, access_.get(),
      AdminLeases{.registry = registry_.get(),
                  .cluster = replica_.get(),
                  .limits = config_.limits,
                  .metrics = api_metrics_.get()});
  if (!config_.access_log.empty()) {
    ASSIGN_OR_RETURN(
        access_log_,
        AccessLog::Open({config_.access_log, config_.access_log_sample,
                         config_.log_format == LogFormat::kJson}));
    service_->set_access_log(access_log_.get());
  }

  if (absl::Status s = metrics_->Serve(config_.metrics_listen); !s.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "--metrics_listen=", config_.metrics_listen, ": ", s.message()));
  }
  metrics_address_ =
      absl::StrCat(HostOf(config_.metrics_listen), ":", metrics_->bound_port());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  if (absl::Status s = RegisterServerReflection(
          builder, {kServiceName, kAdminServiceName, "grpc.health.v1.Health"});
      !s.ok()) {
    return s;
  }
  int port = 0;
  builder.AddListeningPort(config_.listen,
                           MakeServerCredentials(config_.transport), &port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config_.max_message_bytes));
  ApplyTransportLimits(config_.transport, builder);
  if (!config_.transport.tls()) {
    spdlog::warn("serving PLAINTEXT gRPC on {}{}", config_.listen,
                 config_.transport.allow_insecure ? " (--allow_insecure)"
                                                  : " (loopback only)");
  }
  builder.RegisterService(service_.get());
  builder.RegisterService(admin_.get());
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  std::vector<GrpcMethod> methods = GrpcMethodsOfService(kServiceName);
  for (GrpcMethod& m : GrpcMethodsOfService(kAdminServiceName)) {
    methods.push_back(std::move(m));
  }
  for (GrpcMethod& m : GrpcHealthAndReflectionMethods()) {
    methods.push_back(std::move(m));
  }
  interceptors.push_back(metrics_->MakeServerInterceptorFactory(methods));
  if (access_log_ != nullptr) {
    interceptors.push_back(access_log_->MakeInterceptorFactory());
  }
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("--listen=", config_.listen,
                     ": cannot listen there (address in use or not local?)"));
  }
  grpc_address_ = absl::StrCat(HostOf(config_.listen), ":", port);
  RETURN_IF_ERROR(StartHealthServer());
  if (replica_ != nullptr) {
    // Only now is the address known (--listen may pick the port): enter
    // the election, and wait a little for the role to settle so that the
    // first calls find a writer.
    const std::string advertise = config_.advertise_address.empty()
                                      ? grpc_address_
                                      : config_.advertise_address;
    RETURN_IF_ERROR(replica_->Campaign(advertise, config_.etcd.claim_ttl));
    spdlog::info("cluster: advertised as {}; {}", advertise,
                 replica_->IsLeader() ? "the writer" : "a follower");
  }
  SetServing(kServiceName, true);
  SetServing("", true);
  ticker_ = std::thread([this] { RunTicker(); });
  return absl::OkStatus();
}

absl::Status RegistrarServer::StartHealthServer() {
  if (config_.health_listen.empty()) return absl::OkStatus();
  // A server of its own, so this port serves grpc.health.v1 (the default
  // health service every builder gets) and nothing else: other methods are
  // UNIMPLEMENTED there. Plaintext, for probes that cannot speak TLS.
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(config_.health_listen,
                           grpc::InsecureServerCredentials(), &port);
  ApplyTransportLimits(config_.transport, builder);
  std::vector<
      std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  interceptors.push_back(metrics_->MakeServerInterceptorFactory(
      GrpcMethodsOfService("grpc.health.v1.Health")));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  health_port_service_ = std::make_unique<HealthPortOnlyService>();
  builder.RegisterCallbackGenericService(health_port_service_.get());
  health_server_ = builder.BuildAndStart();
  if (health_server_ == nullptr || port == 0) {
    return absl::UnavailableError(
        absl::StrCat("--health_listen=", config_.health_listen,
                     ": cannot listen there (address in use or not local?)"));
  }
  health_address_ = absl::StrCat(HostOf(config_.health_listen), ":", port);
  spdlog::info("serving grpc.health.v1 only, plaintext, on {}",
               health_address_);
  return absl::OkStatus();
}

void RegistrarServer::SetServing(const std::string& service, bool serving) {
  for (grpc::Server* s : {server_.get(), health_server_.get()}) {
    if (s == nullptr) continue;
    if (service.empty()) {
      s->GetHealthCheckService()->SetServingStatus(serving);
    } else {
      s->GetHealthCheckService()->SetServingStatus(service, serving);
    }
  }
}

void RegistrarServer::CheckStoreHealth() {
  // Every tick: the store itself limits how often it probes and recovers.
  const absl::Status writable = store_->CheckWritable();
  store_writable_->Set(writable.ok() ? 1 : 0);
  if (writable.ok() == store_healthy_) return;
  store_healthy_ = writable.ok();
  if (store_healthy_) {
    spdlog::info("store can write again: SERVING");
  } else {
    spdlog::error(
        "store cannot write ({}): NOT_SERVING; reads and Validate "
        "still answer, changes fail with UNAVAILABLE",
        std::string(writable.message()));
  }
  SetServing(kServiceName, store_healthy_);
}

absl::Status RegistrarServer::ReloadCallers() {
  if (config_.callers_file.empty()) return absl::OkStatus();
  absl::MutexLock lock(&reload_mu_);
  std::error_code ec;
  const auto mtime = std::filesystem::last_write_time(config_.callers_file, ec);
  absl::StatusOr<CallerTable> table = LoadCallersFile(config_.callers_file);
  if (!table.ok()) {
    const absl::Status error = absl::InvalidArgumentError(
        absl::StrCat("--callers_file: ", table.status().message()));
    spdlog::error("{}; keeping the callers loaded before",
                  std::string(error.message()));
    callers_mtime_ = mtime;  // do not retry until it changes again
    return error;
  }
  spdlog::info("loaded {} callers from {}", table->size(),
               config_.callers_file);
  access_->SetCallers(std::make_shared<const CallerTable>(*std::move(table)));
  callers_mtime_ = mtime;
  return absl::OkStatus();
}

void RegistrarServer::CheckCallersFile() {
  if (config_.callers_file.empty()) return;
  const absl::Time now = absl::Now();
  if (now - last_callers_check_ < absl::Seconds(1)) return;
  last_callers_check_ = now;
  std::error_code ec;
  const auto mtime = std::filesystem::last_write_time(config_.callers_file, ec);
  if (ec) return;
  {
    absl::MutexLock lock(&reload_mu_);
    if (mtime == callers_mtime_) return;
  }
  (void)ReloadCallers();
}

void RegistrarServer::RunTicker() {
  while (!stop_ticker_.WaitForNotificationWithTimeout(config_.tick_interval)) {
    if (replica_ != nullptr) {
      CheckReplicaHealth();
    } else {
      CheckStoreHealth();
    }
    CheckCallersFile();
    if (key_reloader_) (void)key_reloader_->MaybeReload(absl::Now());
    const absl::Time start = absl::Now();
    std::vector<std::string> expired =
        replica_ != nullptr ? replica_->Tick() : registry_->Tick();
    api_metrics_->ObserveTick(absl::Now() - start);
    if (!expired.empty()) {
      spdlog::info("lease expiry ended {} records", expired.size());
    }
  }
}

void RegistrarServer::Shutdown() {
  if (shut_down_) return;
  shut_down_ = true;
  spdlog::info("shutting down: health NOT_SERVING, draining for {}",
               absl::FormatDuration(config_.shutdown_drain));
  SetServing(kServiceName, false);
  SetServing("", false);
  absl::SleepFor(config_.shutdown_drain);
  // Handlers finish inline, so once none is running nothing is owed to any
  // client; gRPC's own Shutdown would otherwise wait out its deadline for
  // idle client connections to go away.
  service_->StopAccepting();
  if (!service_->WaitIdle(config_.shutdown_timeout)) {
    spdlog::warn("calls still running after {}; cancelling them",
                 absl::FormatDuration(config_.shutdown_timeout));
  }
  // Watch streams never go idle by themselves: end them (UNAVAILABLE) first.
  watch_hub_->Shutdown();
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  if (health_server_ != nullptr) {
    health_server_->Shutdown(std::chrono::system_clock::now());
    health_server_->Wait();
  }
  stop_ticker_.Notify();
  if (ticker_.joinable()) ticker_.join();
  if (replica_ != nullptr) {
    replica_->Stop();
    node_claim_ = replica_->claim();  // the one held now
  }
  if (node_claim_ != nullptr) {
    // Free the node id at once instead of after its lease's TTL.
    const absl::StatusOr<bool> released = etcd::SyncCall<bool>([&](auto cb) {
      node_claim_->Release([cb](absl::Status s) {
        if (s.ok()) {
          cb(true);
        } else {
          cb(std::move(s));
        }
      });
    });
    if (!released.ok()) {
      spdlog::warn(
          "node id {} not released ({}); it frees when its etcd "
          "lease ends",
          node_claim_->id(), std::string(released.status().message()));
    }
  }
  spdlog::info("shut down cleanly");
}

}  // namespace registrar
