#include "service/etcd/connection.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace registrar::etcd {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path,
                                    const char* field) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("etcd tls.", field, ": cannot read the file"));
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "http://h:p" → "h:p"; checks there is a host and a numeric port.
absl::StatusOr<std::string> Address(absl::string_view e, bool tls) {
  constexpr size_t kMaxLength = 256;
  if (e.size() > kMaxLength) {
    return absl::InvalidArgumentError(absl::StrCat(
        "etcd endpoints: an entry is longer than ", kMaxLength, " bytes"));
  }
  if (absl::ConsumePrefix(&e, "https://")) {
    if (!tls) {
      return absl::InvalidArgumentError(
          "etcd endpoints: https:// needs the TLS options");
    }
  } else {
    absl::ConsumePrefix(&e, "http://");
  }
  absl::ConsumeSuffix(&e, "/");
  const size_t colon = e.rfind(':');
  int port = 0;
  if (colon == absl::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(e.substr(colon + 1), &port) || port <= 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        "etcd endpoints: each entry must be host:port");
  }
  return std::string(e);
}

}  // namespace

absl::StatusOr<std::shared_ptr<Connection>> Connection::Create(
    const ConnectionOptions& options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError("etcd endpoints: none given");
  }
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options.tls.has_value()) {
    grpc::SslCredentialsOptions ssl;
    const TlsOptions& tls = *options.tls;
    if (!tls.ca_file.empty()) {
      auto ca = ReadPem(tls.ca_file, "ca_file");
      if (!ca.ok()) return ca.status();
      ssl.pem_root_certs = *ca;
    }
    if (tls.cert_file.empty() != tls.key_file.empty()) {
      return absl::InvalidArgumentError(
          "etcd tls: cert_file and key_file go together");
    }
    if (!tls.cert_file.empty()) {
      auto cert = ReadPem(tls.cert_file, "cert_file");
      if (!cert.ok()) return cert.status();
      auto key = ReadPem(tls.key_file, "key_file");
      if (!key.ok()) return key.status();
      ssl.pem_cert_chain = *cert;
      ssl.pem_private_key = *key;
    }
    creds = grpc::SslCredentials(ssl);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }

  std::shared_ptr<Connection> c(new Connection(options));
  for (const std::string& e : options.endpoints) {
    auto address = Address(e, options.tls.has_value());
    if (!address.ok()) return address.status();
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS,
                absl::ToInt64Milliseconds(options.keepalive_time));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                absl::ToInt64Milliseconds(options.keepalive_timeout));
    args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 0);
    // Reconnect to a restarted member quickly.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    // etcd answers up to its --max-request-bytes plus overhead; a Range
    // page may be larger than gRPC's default 4 MiB.
    args.SetMaxReceiveMessageSize(64 << 20);
    if (options.tls.has_value() && !options.tls->server_name.empty()) {
      args.SetSslTargetNameOverride(options.tls->server_name);
    }
    auto ep = std::make_unique<Endpoint>();
    ep->address = *address;
    ep->channel = grpc::CreateCustomChannel(*address, creds, args);
    ep->kv = etcdserverpb::KV::NewStub(ep->channel);
    ep->watch = etcdserverpb::Watch::NewStub(ep->channel);
    ep->lease = etcdserverpb::Lease::NewStub(ep->channel);
    ep->maintenance = etcdserverpb::Maintenance::NewStub(ep->channel);
    c->endpoints_.push_back(std::move(ep));
  }
  return c;
}

void Connection::KeepForProcess(int i) const {
  // gRPC 1.51 runs client callbacks on one process-wide "alternative"
  // completion queue, reference-counted by the channels that used it: when
  // the last such channel goes, the queue is shut down, and a new one made
  // for the next. Connections come and go, and that shutdown raced with
  // callbacks still running on the old queue (an abort in
  // grpc_cq_internal_unref, "prior > 0", in about one run in four of the
  // watch test). The first channel that starts a call is kept for the
  // whole process, so the queue is never shut down. (An extra call made
  // only to pin the queue was reported by TSan: its first completion
  // arrives on the queue's poller thread as that thread is being made.)
  static const std::shared_ptr<grpc::Channel>* const kept =
      new std::shared_ptr<grpc::Channel>(endpoints_[i]->channel);
  (void)kept;
}

int Connection::ReportFailure(int i) {
  int expected = i;
  const int next = (i + 1) % size();
  if (size() > 1 && current_.compare_exchange_strong(
                        expected, next, std::memory_order_acq_rel)) {
    failovers_.fetch_add(1);
    return next;
  }
  return current();
}

std::unique_ptr<grpc::ClientContext> Connection::NewCallContext(
    absl::Duration timeout) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(
      absl::Now() + std::min(timeout, options_.call_timeout)));
  // clientv3's WithRequireLeader: a member that knows it has no leader
  // answers UNAVAILABLE ("etcdserver: no leader") at once, so the call
  // moves on to another member instead of waiting out its deadline there
  // (a proposal or linearizable read on a leaderless member waits for
  // etcd's request timeout).
  ctx->AddMetadata("hasleader", "true");
  return ctx;
}

std::unique_ptr<grpc::ClientContext> Connection::NewStreamContext() const {
  return std::make_unique<grpc::ClientContext>();
}

}  // namespace registrar::etcd
