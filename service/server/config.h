#ifndef REGISTRAR_SERVICE_SERVER_CONFIG_H_
#define REGISTRAR_SERVICE_SERVER_CONFIG_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "service/api/rate_limiter.h"
#include "service/api/request_validation.h"
#include "service/etcd/etcd_backend.h"
#include "service/registry/registry.h"
#include "service/server/log_format.h"
#include "service/server/transport.h"
#include "service/store/store.h"
#include "service/watch/watch_hub.h"

namespace registrar {

// Everything the server needs to start, from flags (see flags.cc).
struct ServerConfig {
  std::string listen = "127.0.0.1:50051";
  std::string metrics_listen = "127.0.0.1:9464";
  // Plaintext grpc.health.v1-only listener (Kubernetes gRPC probes); empty:
  // none.
  std::string health_listen;
  std::string port_file;
  std::string key_file;
  std::string key_text;  // from REGISTRAR_KEY when no key file is given
  uint32_t node_id = 0;
  uint32_t max_message_bytes = 4 << 20;
  absl::Duration tick_interval = absl::Milliseconds(100);
  absl::Duration shutdown_drain = absl::Seconds(1);
  absl::Duration shutdown_timeout = absl::Seconds(10);
  absl::Duration clock_offset = absl::ZeroDuration();  // tests only
  std::string store = "rocksdb";  // "rocksdb", "memory" or "etcd"
  std::string data_dir = "./registrar-data";
  Durability durability = Durability::kFsync;
  int commit_thread_nice = -5;    // --commit_thread_nice
  bool accept_data_loss = false;  // --accept_data_loss
  std::string restore_from;       // --restore_from: a backup to start from
  // --store=etcd: --etcd_* flags (the node id is claimed in etcd).
  etcd::EtcdBackendOptions etcd;
  // --store=etcd: where the other replicas reach this one (empty: the
  // bound listen address), and the lag past which a follower reports
  // NOT_SERVING (service/cluster/DESIGN.md).
  std::string advertise_address;
  absl::Duration follower_max_lag = absl::Seconds(10);
  // --store=etcd with TLS: how a follower checks the writer's certificate
  // when it forwards a change: the CA bundle (empty: system roots) and the
  // name (empty: the writer's advertise address). With --tls_client_ca it
  // presents its own certificate (--tls_cert) as the client's.
  std::string cluster_tls_ca;
  std::string cluster_tls_server_name;
  RegistryOptions registry;
  ApiLimits limits;
  WatchLimits watch;          // --max_watchers, --watch_max_lag
  TransportConfig transport;  // TLS, --allow_insecure, HTTP/2 bounds
  // Callers and their roles (service/auth/callers_file.h); empty: no
  // authentication. Re-read on SIGHUP and when the file changes.
  std::string callers_file;
  RateLimit caller_rate;                    // --caller_rate, --caller_burst
  LogFormat log_format = LogFormat::kText;  // --log_format
  absl::Duration log_repeat_interval = absl::Seconds(10);
  // --access_log: a path, "stderr", or empty (none); --access_log_sample.
  std::string access_log;
  double access_log_sample = 1.0;
};

// Parses argv into a ServerConfig. Every flag may also come from the
// environment as REGISTRAR_<FLAG NAME IN CAPITALS>; the command line wins.
// InvalidArgument names the flag (or variable) and the bad value.
absl::StatusOr<ServerConfig> ConfigFromFlags(int argc, char** argv);

// An error at start: `prefix` then the status's message, naming the
// server flag of the limit it hit (if any); the code is kept.
absl::Status StartupError(std::string_view prefix, const absl::Status& status);

// --store=etcd: the backend's options, the node id claim's holder being
// --listen.
etcd::EtcdBackendOptions EtcdBackendFor(const ServerConfig& config);

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_SERVER_CONFIG_H_
