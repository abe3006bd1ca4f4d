#ifndef REGISTRAR_SERVICE_ETCD_CONNECTION_H_
#define REGISTRAR_SERVICE_ETCD_CONNECTION_H_

// A connection to an etcd cluster: one gRPC channel and one set of stubs
// (KV, Watch, Lease, Maintenance) per member endpoint, and the index of the
// member calls go to now. A call that fails because the member cannot serve
// (IsMemberFailure: down, paused, no leader) reports it, and the next call
// goes to the next member: failover in endpoint order, round the ring.
//
// Thread-safe; stubs are immutable after Create and gRPC stubs are
// thread-safe. Nothing here blocks or holds a lock across a call.

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "service/etcd/timer.h"

namespace registrar::etcd {

// TLS towards etcd (its --client-cert-auth / --trusted-ca-file): PEM files.
struct TlsOptions {
  std::string ca_file;    // trusted CA; empty: the system roots
  std::string cert_file;  // client certificate (mTLS); with key_file
  std::string key_file;
  // Name to verify in the server certificate instead of the endpoint host.
  std::string server_name;
};

struct ConnectionOptions {
  // "host:port", or "http://host:port" / "https://host:port" (as etcd
  // prints its URLs). https:// requires tls.
  std::vector<std::string> endpoints;
  std::optional<TlsOptions> tls;
  // Deadline of each unary call (a paused member never answers).
  absl::Duration call_timeout = absl::Seconds(5);
  // HTTP/2 keepalive pings, so a stream to a dead or paused member fails
  // instead of hanging. etcd refuses pings more often than every 5 s.
  absl::Duration keepalive_time = absl::Seconds(10);
  absl::Duration keepalive_timeout = absl::Seconds(5);
};

struct Endpoint {
  std::string address;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
  std::unique_ptr<etcdserverpb::Maintenance::Stub> maintenance;
};

class Connection {
 public:
  // INVALID_ARGUMENT naming the option when endpoints is empty or holds a
  // malformed entry, or a TLS file cannot be read.
  static absl::StatusOr<std::shared_ptr<Connection>> Create(
      const ConnectionOptions& options);

  int size() const { return static_cast<int>(endpoints_.size()); }
  const Endpoint& endpoint(int i) const { return *endpoints_[i]; }
  // The member the next call goes to.
  int current() const { return current_.load(std::memory_order_acquire); }
  // Member i failed a call: if it is still the current one, move on to the
  // next. Returns the member calls go to now.
  int ReportFailure(int i);
  // Called with the member of every call started: keeps the first such
  // channel for the life of the process (see connection.cc).
  void KeepForProcess(int i) const;
  // How many times the current member changed (for tests and metrics).
  int64_t failovers() const { return failovers_.load(); }

  // A context for a unary call, with the call deadline set and leader
  // required (a member without one refuses at once). timeout: of this call
  // instead of call_timeout (when shorter).
  std::unique_ptr<grpc::ClientContext> NewCallContext(
      absl::Duration timeout = absl::InfiniteDuration()) const;
  // A context for a stream (no deadline).
  std::unique_ptr<grpc::ClientContext> NewStreamContext() const;
  const ConnectionOptions& options() const { return options_; }
  // The timer of everything on this connection (retry backoff, keep-alive
  // ticks).
  Timer& timer() const { return *timer_; }

 private:
  explicit Connection(ConnectionOptions options)
      : options_(std::move(options)) {}

  const ConnectionOptions options_;
  std::vector<std::unique_ptr<Endpoint>> endpoints_;
  std::atomic<int> current_{0};
  std::atomic<int64_t> failovers_{0};
  const std::unique_ptr<Timer> timer_ = std::make_unique<Timer>();
};

}  // namespace registrar::etcd

#endif  // REGISTRAR_SERVICE_ETCD_CONNECTION_H_
