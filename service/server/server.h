#ifndef REGISTRAR_SERVICE_SERVER_SERVER_H_
#define REGISTRAR_SERVICE_SERVER_SERVER_H_

// The composition root: builds the key ring, clock, ID generator, registry,
// metrics and gRPC server from a ServerConfig, runs the lease/tombstone
// ticker, and shuts everything down in order.

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/server.h>

#include <filesystem>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "service/api/admin_service.h"
#include "service/api/api_metrics.h"
#include "service/api/registrar_service.h"
#include "service/cluster/replica.h"
#include "service/common/clock.h"
#include "service/id/id_generator.h"
#include "service/id/key_ring.h"
#include "service/metrics/metrics.h"
#include "service/registry/registry.h"
#include "service/registry/registry_metrics.h"
#include "service/server/config.h"
#include "service/server/key_file_reload.h"
#include "service/store/store.h"
#include "service/watch/watch_hub.h"

namespace prometheus {
class Counter;
class Gauge;
template <typename T>
class Family;
}  // namespace prometheus

namespace registrar {

class RegistrarServer {
 public:
  // Builds and starts serving. Errors (unusable key file, address in use)
  // say what to fix.
  static absl::StatusOr<std::unique_ptr<RegistrarServer>> Start(
      const ServerConfig& config);
  ~RegistrarServer();

  // Shutdown in the order a load balancer needs: health NOT_SERVING, keep
  // answering for `shutdown_drain`, then refuse new calls, let in-flight
  // calls finish within `shutdown_timeout`, and stop the ticker.
  void Shutdown();

  // Re-reads --callers_file (SIGHUP; also done when the file changes). A
  // file that does not parse is logged and the current callers are kept.
  absl::Status ReloadCallers();

  std::string grpc_address() const { return grpc_address_; }
  std::string metrics_address() const { return metrics_address_; }
  // Bound --health_listen address; empty without one.
  std::string health_address() const { return health_address_; }

 private:
  explicit RegistrarServer(const ServerConfig& config);
  absl::Status Init();
  void RunTicker();
  // The health-only plaintext server on --health_listen, if set.
  absl::Status StartHealthServer();
  // Sets `service`'s ("": the server's) health on every listener.
  void SetServing(const std::string& service, bool serving);
  // Reports NOT_SERVING while the store cannot write, SERVING once it can.
  void CheckStoreHealth();
  // --store=etcd: the replica's health (role, writer, feed, lag).
  void CheckReplicaHealth();
  // --store=etcd: builds the replica (a follower until it is elected).
  absl::Status StartReplica();
  // Reloads the callers file when its modification time changed.
  void CheckCallersFile();

  const ServerConfig config_;
  SystemClock clock_;
  std::unique_ptr<KeyRing> keys_;
  std::unique_ptr<IdGenerator> ids_;
  // --key_file watched for rotation without a restart (ticker thread).
  std::unique_ptr<KeyFileReloader> key_reloader_;
  // The exposer first: every component's metrics live on its registry.
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<ApiMetrics> api_metrics_;
  std::unique_ptr<RegistryMetrics> registry_metrics_;  // outlives registry_
  // Reads registry_ at scrape time; its source is cleared before registry_
  // goes away.
  std::shared_ptr<RegistryStatsCollectable> registry_stats_;
  prometheus::Gauge* store_writable_ = nullptr;  // registrar_store_writable
  // --store=etcd: this replica's node id, held while the process runs
  // (declared before store_, so it outlives the store's last write).
  std::shared_ptr<etcd::NodeIdClaimer> node_claim_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Registry> registry_;  // the single-node stores
  // --store=etcd: this replica of the cluster on the prefix (its registry
  // and store change with its role); after the claim, before the hub.
  std::shared_ptr<etcd::Connection> etcd_conn_;
  std::unique_ptr<cluster::Replica> replica_;
  prometheus::Gauge* cluster_is_leader_ = nullptr;
  prometheus::Gauge* cluster_applied_ = nullptr;
  // registrar_cluster_became_writer_total{how}, following ReplicaHealth.
  prometheus::Counter* cluster_took_over_ = nullptr;
  prometheus::Counter* cluster_loaded_ = nullptr;
  // registrar_cluster_dead_writers_revoked_total
  prometheus::Counter* cluster_dead_writers_ = nullptr;
  // registrar_cluster_node_id_reclaims_total
  prometheus::Counter* cluster_reclaims_ = nullptr;
  // registrar_cluster_writer{address}: 1 for the writer this replica
  // sees; the series is replaced when the writer changes (ticker only).
  prometheus::Family<prometheus::Gauge>* cluster_writer_ = nullptr;
  prometheus::Gauge* cluster_writer_series_ = nullptr;
  std::string cluster_writer_address_;
  std::string replica_state_;  // ticker only: the last health logged
  // Watch; after the registry (its store), before the service and the
  // gRPC server, which are destroyed first.
  std::unique_ptr<WatchHub> watch_hub_;
  std::unique_ptr<AccessControl> access_;
  std::unique_ptr<RateLimiter> limiter_;
  std::unique_ptr<AccessLog> access_log_;  // --access_log; outlives server_
  absl::Mutex reload_mu_;
  // Modification time of the callers file last loaded.
  std::filesystem::file_time_type callers_mtime_ ABSL_GUARDED_BY(reload_mu_);
  absl::Time last_callers_check_ = absl::InfinitePast();  // ticker only
  std::unique_ptr<RegistrarService> service_;
  std::unique_ptr<AdminService> admin_;  // registrar.v1.Admin
  std::unique_ptr<grpc::Server> server_;
  // --health_listen: answers UNIMPLEMENTED but for health; outlives
  // health_server_.
  std::unique_ptr<grpc::CallbackGenericService> health_port_service_;
  std::unique_ptr<grpc::Server> health_server_;
  std::string grpc_address_;
  std::string metrics_address_;
  std::string health_address_;
  absl::Notification stop_ticker_;
  std::thread ticker_;
  bool shut_down_ = false;
  bool store_healthy_ = true;  // ticker thread only
};

// Loads the tag keys: --key_file, else REGISTRAR_KEY, else a generated key
// (with a loud warning: IDs will not verify after a restart).
absl::StatusOr<KeyRing> LoadKeys(const ServerConfig& config);

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_SERVER_SERVER_H_
