#ifndef REGISTRAR_SERVICE_SERVER_TRANSPORT_H_
#define REGISTRAR_SERVICE_SERVER_TRANSPORT_H_

// The gRPC transport's security and limits: TLS / mTLS credentials that
// follow certificate files as they are replaced, the loopback-only rule for
// plaintext, and the HTTP/2 and memory bounds applied to every connection.

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace registrar {

struct TransportConfig {
  // TLS: PEM server certificate chain and key. Both or neither.
  std::string tls_cert;
  std::string tls_key;
  // mTLS: PEM CA bundle client certificates must chain to (requires TLS);
  // client certificates are then required and verified.
  std::string tls_client_ca;
  // How often the files are re-read; replaced certificates apply to new
  // handshakes, open connections and streams stay up.
  absl::Duration tls_reload_interval = absl::Seconds(10);
  // Plaintext on an address other than loopback.
  bool allow_insecure = false;

  // Hardening (0: gRPC's default / no bound).
  uint32_t max_concurrent_streams = 1000;  // per HTTP/2 connection
  absl::Duration min_ping_interval = absl::Seconds(10);  // client keepalive
  absl::Duration keepalive_time = absl::Minutes(1);      // server pings
  absl::Duration max_connection_idle = absl::Minutes(30);
  uint64_t memory_limit_bytes = uint64_t{1} << 30;  // gRPC ResourceQuota

  bool tls() const { return !tls_cert.empty(); }
};

// Checks the TLS files exist and look like PEM, and that plaintext is not
// asked for on a non-loopback `listen` without allow_insecure. The messages
// name the flag.
absl::Status CheckTransport(const TransportConfig& config,
                            const std::string& listen);

// TLS (or mTLS) credentials reading the files every tls_reload_interval, or
// insecure credentials without TLS.
std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const TransportConfig& config);

// HTTP/2 keepalive enforcement, stream and memory bounds.
void ApplyTransportLimits(const TransportConfig& config,
                          grpc::ServerBuilder& builder);

// True for 127.0.0.0/8, ::1 and "localhost" hosts of a host:port address.
bool IsLoopbackAddress(const std::string& address);

// The credentials a follower forwards changes to the writer with (API
// port, TLS on): the writer's certificate checked against `ca_file`
// (--cluster_tls_ca; empty: the system's roots); with mTLS
// (tls_client_ca) this replica's own certificate and key as the client's,
// so the certificate must allow client authentication too. The files are
// read again every --tls_reload_interval, as the server's are: a renewed
// certificate or CA reaches the next connection a follower makes to a
// writer without a restart. INVALID_ARGUMENT naming --cluster_tls_ca when
// that file is unreadable (the certificate and key are CheckTransport's).
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeForwardCredentials(const TransportConfig& config,
                       const std::string& ca_file);

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_SERVER_TRANSPORT_H_
