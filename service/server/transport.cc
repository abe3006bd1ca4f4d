#include "service/server/transport.h"

#include <grpcpp/resource_quota.h>
#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "service/common/absl_compat.h"

namespace registrar {
namespace {

// The PEM file `path` names (--flag), checked for `marker`.
absl::StatusOr<std::string> ReadPem(const char* flag, const std::string& path,
                                    std::string_view marker) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, "=", path, ": cannot read the file"));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (!absl::StrContains(text.str(), AsAbsl(marker))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--", flag, "=", path, ": not PEM (no \"", AsAbsl(marker), "\")"));
  }
  return text.str();
}

absl::Status CheckPem(const char* flag, const std::string& path,
                      std::string_view marker) {
  return ReadPem(flag, path, marker).status();
}

int Ms(absl::Duration d) {
  return static_cast<int>(
      std::min<int64_t>(absl::ToInt64Milliseconds(d), INT32_MAX));
}

}  // namespace

bool IsLoopbackAddress(const std::string& address) {
  std::string host = address;
  const size_t colon = address.rfind(':');
  if (colon != std::string::npos && address.find(']') == std::string::npos &&
      address.find(':') == colon) {
    host = address.substr(0, colon);
  } else if (address.size() > 0 && address[0] == '[') {
    host = address.substr(1, address.find(']') - 1);
  }
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

absl::Status CheckTransport(const TransportConfig& c,
                            const std::string& listen) {
  if (c.tls_cert.empty() != c.tls_key.empty()) {
    return absl::InvalidArgumentError(
        "--tls_cert and --tls_key go together: give both or neither");
  }
  if (!c.tls_client_ca.empty() && !c.tls()) {
    return absl::InvalidArgumentError(
        "--tls_client_ca needs --tls_cert and --tls_key (mutual TLS is TLS)");
  }
  if (c.tls()) {
    if (absl::Status s = CheckPem("tls_cert", c.tls_cert, "BEGIN CERTIFICATE");
        !s.ok()) {
      return s;
    }
    if (absl::Status s = CheckPem("tls_key", c.tls_key, "PRIVATE KEY");
        !s.ok()) {
      return s;
    }
    if (!c.tls_client_ca.empty()) {
      if (absl::Status s =
              CheckPem("tls_client_ca", c.tls_client_ca, "BEGIN CERTIFICATE");
          !s.ok()) {
        return s;
      }
    }
    if (c.tls_reload_interval < absl::Seconds(1)) {
      return absl::InvalidArgumentError("--tls_reload_interval must be >= 1s");
    }
    return absl::OkStatus();
  }
  if (!IsLoopbackAddress(listen) && !c.allow_insecure) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--listen=", listen,
        " is not a loopback address and no TLS is configured: refusing to "
        "serve plaintext there. Give --tls_cert/--tls_key (and "
        "--tls_client_ca for mutual TLS), or --allow_insecure if a trusted "
        "network layer (e.g. a service mesh) provides transport security"));
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::ServerCredentials> MakeServerCredentials(
    const TransportConfig& c) {
  if (!c.tls()) return grpc::InsecureServerCredentials();
  const auto interval =
      static_cast<unsigned int>(absl::ToInt64Seconds(c.tls_reload_interval));
  auto provider =
      std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
          c.tls_key, c.tls_cert, c.tls_client_ca, interval);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (!c.tls_client_ca.empty()) {
    options.watch_root_certs();
    options.set_cert_request_type(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

void ApplyTransportLimits(const TransportConfig& c,
                          grpc::ServerBuilder& builder) {
  if (c.max_concurrent_streams > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                               static_cast<int>(c.max_concurrent_streams));
  }
  // Clients may ping at most this often (more: GOAWAY after a few strikes),
  // also while idle; the server pings idle connections to find dead peers.
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      Ms(c.min_ping_interval));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 2);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, Ms(c.keepalive_time));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20'000);
  if (c.max_connection_idle > absl::ZeroDuration()) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                               Ms(c.max_connection_idle));
  }
  // gRPC stops reading from connections (rather than growing) once its
  // buffers reach this, which bounds what slow or hostile peers can pin.
  if (c.memory_limit_bytes > 0) {
    grpc::ResourceQuota quota("registrar");
    quota.Resize(c.memory_limit_bytes);
    builder.SetResourceQuota(quota);
  }
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>>
MakeForwardCredentials(const TransportConfig& config,
                       const std::string& ca_file) {
  if (!ca_file.empty()) {
    if (absl::Status s =
            CheckPem("cluster_tls_ca", ca_file, "BEGIN CERTIFICATE");
        !s.ok()) {
      return s;
    }
  }
  // With mTLS the writer requires client certificates: present our own
  // (--tls_cert and --tls_key, which CheckTransport checked).
  const bool mutual = !config.tls_client_ca.empty();
  if (ca_file.empty() && !mutual) {
    return grpc::SslCredentials({});  // the system's roots: nothing to watch
  }
  const auto interval = static_cast<unsigned int>(
      std::max<int64_t>(1, absl::ToInt64Seconds(config.tls_reload_interval)));
  using grpc::experimental::FileWatcherCertificateProvider;
  std::shared_ptr<FileWatcherCertificateProvider> provider;
  if (mutual && !ca_file.empty()) {
    provider = std::make_shared<FileWatcherCertificateProvider>(
        config.tls_key, config.tls_cert, ca_file, interval);
  } else if (mutual) {
    provider = std::make_shared<FileWatcherCertificateProvider>(
        config.tls_key, config.tls_cert, interval);
  } else {
    provider =
        std::make_shared<FileWatcherCertificateProvider>(ca_file, interval);
  }
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(provider);
  // Unwatched roots are the system's.
  if (!ca_file.empty()) options.watch_root_certs();
  if (mutual) options.watch_identity_key_cert_pairs();
  return grpc::experimental::TlsCredentials(options);
}

}  // namespace registrar
