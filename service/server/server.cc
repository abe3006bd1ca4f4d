#include "service/server/server.h"

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "service/metrics/grpc_server_metrics.h"
#include "service/reflection/server_reflection.h"
#include "spdlog/spdlog.h"

namespace registrar {
namespace {
constexpr char kServiceName[] = "registrar.v1.Registrar";

std::string HostOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}
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
  spdlog::warn(
      "NO TAG KEY CONFIGURED (--key_file or REGISTRAR_KEY): generated a "
      "random key for this process only. IDs issued now will read as FORGED "
      "after a restart, and other instances cannot verify them. Generate a "
      "key file and pass --key_file for any real deployment.");
  return KeyRing::Generate();
}

RegistrarServer::RegistrarServer(const ServerConfig& config)
    : config_(config), clock_(config.clock_offset) {}

RegistrarServer::~RegistrarServer() { Shutdown(); }

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
  absl::StatusOr<KeyRing> keys = LoadKeys(config_);
  if (!keys.ok()) return keys.status();
  keys_ = std::make_unique<KeyRing>(*std::move(keys));
  ids_ = std::make_unique<IdGenerator>(clock_, *keys_, config_.node_id);
  metrics_ = std::make_unique<Metrics>();
  registry_ = std::make_unique<Registry>(config_.registry, clock_, *ids_,
                                         metrics_.get());
  if (absl::Status s = registry_->Recover(); !s.ok()) return s;
  Registry* registry = registry_.get();
  metrics_->SetStatsProvider([registry] { return registry->Stats(); });
  service_ = std::make_unique<RegistrarService>(*registry_, config_.limits,
                                                metrics_.get());

  if (absl::Status s = metrics_->Serve(config_.metrics_listen); !s.ok()) {
    return absl::UnavailableError(absl::StrCat(
        "--metrics_listen=", config_.metrics_listen, ": ", s.message()));
  }
  metrics_address_ = absl::StrCat(HostOf(config_.metrics_listen), ":",
                                  metrics_->bound_port());

  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  if (absl::Status s = RegisterServerReflection(
          builder, {kServiceName, "grpc.health.v1.Health"});
      !s.ok()) {
    return s;
  }
  int port = 0;
  builder.AddListeningPort(config_.listen, grpc::InsecureServerCredentials(),
                           &port);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config_.max_message_bytes));
  builder.RegisterService(service_.get());
  std::vector<std::unique_ptr<
      grpc::experimental::ServerInterceptorFactoryInterface>>
      interceptors;
  std::vector<GrpcMethod> methods = GrpcMethodsOfService(kServiceName);
  for (GrpcMethod& m : GrpcHealthAndReflectionMethods()) {
    methods.push_back(std::move(m));
  }
  interceptors.push_back(metrics_->MakeServerInterceptorFactory(methods));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat(
        "--listen=", config_.listen,
        ": cannot listen there (address in use or not local?)"));
  }
  grpc_address_ = absl::StrCat(HostOf(config_.listen), ":", port);
  server_->GetHealthCheckService()->SetServingStatus(kServiceName, true);
  server_->GetHealthCheckService()->SetServingStatus(true);
  ticker_ = std::thread([this] { RunTicker(); });
  return absl::OkStatus();
}

void RegistrarServer::RunTicker() {
  while (!stop_ticker_.WaitForNotificationWithTimeout(config_.tick_interval)) {
    const absl::Time start = absl::Now();
    std::vector<std::string> expired = registry_->Tick();
    metrics_->ObserveCoreOp(CoreOp::kTick, absl::Now() - start);
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
  server_->GetHealthCheckService()->SetServingStatus(kServiceName, false);
  server_->GetHealthCheckService()->SetServingStatus(false);
  absl::SleepFor(config_.shutdown_drain);
  // Handlers finish inline, so once none is running nothing is owed to any
  // client; gRPC's own Shutdown would otherwise wait out its deadline for
  // idle client connections to go away.
  service_->StopAccepting();
  if (!service_->WaitIdle(config_.shutdown_timeout)) {
    spdlog::warn("calls still running after {}; cancelling them",
                 absl::FormatDuration(config_.shutdown_timeout));
  }
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  stop_ticker_.Notify();
  if (ticker_.joinable()) ticker_.join();
  spdlog::info("shut down cleanly");
}

}  // namespace registrar
