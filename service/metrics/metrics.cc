#include "service/metrics/metrics.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <string>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "service/metrics/build_info.h"
#include "service/metrics/process_metrics.h"

namespace registrar {

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::BuildGauge()
      .Name("registrar_build_info")
      .Help(
          "Always 1; the labels name the version and git commit of this "
          "build.")
      .Register(*registry_)
      .Add({{"version", std::string(BuildVersion())},
            {"revision", std::string(BuildRevision())}})
      .Set(1);
  collectables_.push_back(MakeProcessCollectable());
}

namespace {

// Where a client reaches a server listening on `listen_address`
// ("host:port", "[v6]:port"): the wildcard addresses mean this host.
std::string LocalHostOf(const std::string& listen_address) {
  const size_t colon = listen_address.rfind(':');
  std::string host =
      colon == std::string::npos ? "" : listen_address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || host == "0.0.0.0") return "127.0.0.1";
  if (host == "::") return "::1";
  return host;
}

// Destroys the exposer without waiting out civetweb's listener poll: in
// civetweb 1.15 the listening thread polls with a 2 s timeout and sees
// mg_stop's flag only when the poll returns, so every shutdown took up to
// 2 s. A connection to the listening port wakes the poll at once; one is
// made every few ms until the stop has returned.
void StopExposer(std::unique_ptr<prometheus::Exposer> exposer,
                 const std::string& host, int port) {
  if (exposer == nullptr) return;
  std::atomic<bool> stopped{false};
  std::thread waker([&] {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* addrs = nullptr;
    if (getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints,
                    &addrs) != 0) {
      return;  // the stop just takes longer
    }
    while (!stopped.load(std::memory_order_acquire)) {
      const int fd = socket(addrs->ai_family, SOCK_STREAM, 0);
      if (fd >= 0) {
        connect(fd, addrs->ai_addr, addrs->ai_addrlen);
        close(fd);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    freeaddrinfo(addrs);
  });
  exposer.reset();
  stopped.store(true, std::memory_order_release);
  waker.join();
}

}  // namespace

Metrics::~Metrics() {
  // Stop the HTTP threads before the collectables they read go away.
  absl::MutexLock lock(&exposer_mu_);
  StopExposer(std::move(exposer_), wake_host_, bound_port_);
}

void Metrics::AddCollectable(
    std::shared_ptr<prometheus::Collectable> collectable) {
  absl::MutexLock lock(&exposer_mu_);
  if (exposer_ != nullptr) exposer_->RegisterCollectable(collectable);
  collectables_.push_back(std::move(collectable));
}

absl::Status Metrics::Serve(const std::string& listen_address) {
  if (listen_address.empty()) {
    return absl::InvalidArgumentError("empty metrics listen address");
  }
  absl::MutexLock lock(&exposer_mu_);
  if (exposer_ != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("metrics already served on port ", bound_port_));
  }
  std::unique_ptr<prometheus::Exposer> exposer;
  try {
    exposer = std::make_unique<prometheus::Exposer>(listen_address,
                                                    /*num_threads=*/2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ",
                                               listen_address, ": ", e.what()));
  }
  exposer->RegisterCollectable(registry_);
  for (const auto& c : collectables_) exposer->RegisterCollectable(c);
  const std::vector<int> ports = exposer->GetListeningPorts();
  if (ports.empty()) {
    return absl::UnavailableError(absl::StrCat(
        "metrics server on ", listen_address, " reports no listening port"));
  }
  bound_port_ = ports.front();
  wake_host_ = LocalHostOf(listen_address);
  exposer_ = std::move(exposer);
  return absl::OkStatus();
}

int Metrics::bound_port() const {
  absl::MutexLock lock(&exposer_mu_);
  return bound_port_;
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
Metrics::MakeServerInterceptorFactory(std::vector<GrpcMethod> known_methods) {
  return MakeGrpcServerMetricsInterceptorFactory(registry_,
                                                 std::move(known_methods));
}

std::string Metrics::ExpositionText() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  std::vector<std::shared_ptr<prometheus::Collectable>> collectables;
  {
    absl::MutexLock lock(&exposer_mu_);
    collectables = collectables_;
  }
  for (const auto& c : collectables) {
    for (auto& family : c->Collect()) families.push_back(std::move(family));
  }
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace registrar
