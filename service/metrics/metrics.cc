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
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/metric_family.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "service/metrics/build_info.h"
#include "service/metrics/process_metrics.h"

namespace registrar {
namespace {

// Kinds that are records (and so label the per-kind families).
constexpr Kind kRecordKinds[] = {Kind::kThread, Kind::kRun, Kind::kRequest,
                                 Kind::kConnection};

constexpr int kNumVerdicts = 9;  // registrar.v1.Verdict 0..8

bool ValidCause(EndCause cause) {
  return static_cast<int>(cause) < kNumEndCauses;
}

bool ValidKind(Kind kind) { return static_cast<int>(kind) < kNumKinds; }

}  // namespace

std::string_view RejectionName(Rejection r) {
  switch (r) {
    case Rejection::kNoCredentials:
      return "no_credentials";
    case Rejection::kUnknownToken:
      return "unknown_token";
    case Rejection::kPermissionDenied:
      return "permission_denied";
    case Rejection::kRateLimited:
      return "rate_limited";
    case Rejection::kOverloaded:
      return "overloaded";
  }
  return "unknown";
}

std::string_view CoreOpName(CoreOp op) {
  switch (op) {
    case CoreOp::kIssue:
      return "issue";
    case CoreOp::kOpenContext:
      return "open_context";
    case CoreOp::kValidate:
      return "validate";
    case CoreOp::kCleanup:
      return "cleanup";
    case CoreOp::kGrantLease:
      return "grant_lease";
    case CoreOp::kKeepAlive:
      return "keep_alive";
    case CoreOp::kRevokeLease:
      return "revoke_lease";
    case CoreOp::kDescribe:
      return "describe";
    case CoreOp::kListOwned:
      return "list_owned";
    case CoreOp::kTick:
      return "tick";
  }
  return "unknown";
}

std::string_view VerdictLabel(int verdict) {
  static constexpr std::string_view kLabels[kNumVerdicts] = {
      "",        "valid",     "malformed", "wrong_kind", "forged",
      "unknown", "not_owner", "released",  "expired"};
  return verdict >= 0 && verdict < kNumVerdicts ? kLabels[verdict] : "";
}

const std::vector<double>& CoreOpBuckets() {
  static const std::vector<double>* const kBuckets = new std::vector<double>{
      0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
      0.005,   0.01,     0.025,   0.05,   0.1,     0.25,   0.5,   1};
  return *kBuckets;
}

// Builds the registry-size gauges from the stats provider on every scrape.
class Metrics::StatsCollectable : public prometheus::Collectable {
 public:
  void Set(std::function<RegistryStats()> provider) {
    std::shared_ptr<const std::function<RegistryStats()>> p;
    if (provider) {
      p = std::make_shared<const std::function<RegistryStats()>>(
          std::move(provider));
    }
    absl::MutexLock lock(&mu_);
    provider_ = std::move(p);
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::shared_ptr<const std::function<RegistryStats()>> provider;
    {
      absl::MutexLock lock(&mu_);
      provider = provider_;
    }
    if (provider == nullptr) return {};
    const RegistryStats stats = (*provider)();

    std::vector<prometheus::MetricFamily> families(6);
    prometheus::MetricFamily& live = families[0];
    live.name = "registrar_live_records";
    live.help = "Live records held by the registry, by kind.";
    live.type = prometheus::MetricType::Gauge;
    for (Kind kind : kRecordKinds) {
      prometheus::ClientMetric m;
      m.label.push_back({"kind", std::string(KindName(kind))});
      m.gauge.value =
          static_cast<double>(stats.live_records[static_cast<int>(kind)]);
      live.metric.push_back(std::move(m));
    }
    families[1].name = "registrar_leases";
    families[1].help = "Leases held by the registry.";
    families[1].type = prometheus::MetricType::Gauge;
    families[1].metric.resize(1);
    families[1].metric[0].gauge.value = static_cast<double>(stats.leases);
    families[2].name = "registrar_tombstones";
    families[2].help =
        "Tombstones (records of ended IDs) held by the registry.";
    families[2].type = prometheus::MetricType::Gauge;
    families[2].metric.resize(1);
    families[2].metric[0].gauge.value = static_cast<double>(stats.tombstones);
    auto scalar = [](prometheus::MetricFamily& f, const char* name,
                     const char* help, prometheus::MetricType type,
                     uint64_t value) {
      f.name = name;
      f.help = help;
      f.type = type;
      f.metric.resize(1);
      if (type == prometheus::MetricType::Counter) {
        f.metric[0].counter.value = static_cast<double>(value);
      } else {
        f.metric[0].gauge.value = static_cast<double>(value);
      }
    };
    scalar(families[3], "registrar_store_revision",
           "Last committed store revision.", prometheus::MetricType::Gauge,
           stats.store_revision);
    scalar(families[4], "registrar_store_batches_total",
           "Batches committed to the store (about one per changing call).",
           prometheus::MetricType::Counter, stats.store_batches);
    scalar(families[5], "registrar_store_writes_total",
           "Store backend writes; fsyncs in fsync mode. batches / writes is "
           "the number of calls per fsync (group commit).",
           prometheus::MetricType::Counter, stats.store_writes);
    return families;
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const std::function<RegistryStats()>> provider_
      ABSL_GUARDED_BY(mu_);
};

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      stats_(std::make_shared<StatsCollectable>()) {
  auto& issued = prometheus::BuildCounter()
                     .Name("registrar_ids_issued_total")
                     .Help("IDs issued, by kind.")
                     .Register(*registry_);
  auto& released = prometheus::BuildCounter()
                       .Name("registrar_released_total")
                       .Help("Records ended, by kind and reason.")
                       .Register(*registry_);
  for (Kind kind : kRecordKinds) {
    const std::string kind_name(KindName(kind));
    const int k = static_cast<int>(kind);
    issued_[k] = &issued.Add({{"kind", kind_name}});
    for (int c = 0; c < kNumEndCauses; ++c) {
      released_[k][c] = &released.Add(
          {{"kind", kind_name},
           {"reason", std::string(EndCauseName(static_cast<EndCause>(c)))}});
    }
  }

  auto& verdicts = prometheus::BuildCounter()
                       .Name("registrar_validations_total")
                       .Help("IDs validated, by verdict.")
                       .Register(*registry_);
  for (int v = 1; v < kNumVerdicts; ++v) {
    verdicts_[v] = &verdicts.Add({{"verdict", std::string(VerdictLabel(v))}});
  }

  auto& rejected = prometheus::BuildCounter()
                       .Name("registrar_rejected_calls_total")
                       .Help(
                           "Calls turned away before doing anything, by "
                           "reason (authentication, permission, rate "
                           "limit, overload).")
                       .Register(*registry_);
  for (int r = 0; r < kNumRejections; ++r) {
    rejections_[r] = &rejected.Add(
        {{"reason", std::string(RejectionName(static_cast<Rejection>(r)))}});
  }
  leases_granted_ = &prometheus::BuildCounter()
                         .Name("registrar_leases_granted_total")
                         .Help("Leases granted.")
                         .Register(*registry_)
                         .Add({});
  auto& leases_ended = prometheus::BuildCounter()
                           .Name("registrar_leases_ended_total")
                           .Help("Leases ended, by reason.")
                           .Register(*registry_);
  for (int c = 0; c < kNumEndCauses; ++c) {
    leases_ended_[c] = &leases_ended.Add(
        {{"reason", std::string(EndCauseName(static_cast<EndCause>(c)))}});
  }

  store_commit_ = &prometheus::BuildHistogram()
                       .Name("registrar_store_commit_seconds")
                       .Help(
                           "Latency of store commits made by the registry "
                           "(WAL write and, in fsync mode, fsync; shared "
                           "by concurrent calls through group commit).")
                       .Register(*registry_)
                       .Add({}, CoreOpBuckets());
  store_commit_failures_ =
      &prometheus::BuildCounter()
           .Name("registrar_store_commit_failures_total")
           .Help("Store commits refused (disk full, I/O error, ...).")
           .Register(*registry_)
           .Add({});

  store_writable_ = &prometheus::BuildGauge()
                         .Name("registrar_store_writable")
                         .Help(
                             "1 while the store can write, 0 while it "
                             "cannot (changes then fail with UNAVAILABLE "
                             "and health reports NOT_SERVING).")
                         .Register(*registry_)
                         .Add({});
  store_writable_->Set(1);
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

  auto& core_op = prometheus::BuildHistogram()
                      .Name("registrar_core_op_seconds")
                      .Help("Latency of registry core operations, by op.")
                      .Register(*registry_);
  for (int op = 0; op < kNumCoreOps; ++op) {
    core_op_[op] =
        &core_op.Add({{"op", std::string(CoreOpName(static_cast<CoreOp>(op)))}},
                     CoreOpBuckets());
  }
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

void Metrics::OnIssued(Kind kind, uint64_t count) {
  if (!ValidKind(kind)) return;
  if (prometheus::Counter* c = issued_[static_cast<int>(kind)]) {
    c->Increment(static_cast<double>(count));
  }
}

void Metrics::OnEnded(Kind kind, EndCause cause, uint64_t count) {
  if (!ValidKind(kind) || !ValidCause(cause)) return;
  if (prometheus::Counter* c =
          released_[static_cast<int>(kind)][static_cast<int>(cause)]) {
    c->Increment(static_cast<double>(count));
  }
}

void Metrics::OnLeaseGranted() { leases_granted_->Increment(); }

void Metrics::OnLeaseEnded(EndCause cause) {
  if (!ValidCause(cause)) return;
  leases_ended_[static_cast<int>(cause)]->Increment();
}

void Metrics::OnStoreCommit(absl::Duration took, bool ok) {
  store_commit_->Observe(absl::ToDoubleSeconds(took));
  if (!ok) store_commit_failures_->Increment();
}

void Metrics::CountVerdict(int verdict, uint64_t n) {
  if (verdict < 0 || verdict >= kNumVerdicts) return;
  if (prometheus::Counter* c = verdicts_[verdict]) {
    c->Increment(static_cast<double>(n));
  }
}

void Metrics::CountRejection(Rejection r) {
  const int i = static_cast<int>(r);
  if (i >= 0 && i < kNumRejections) rejections_[i]->Increment();
}

void Metrics::SetStoreWritable(bool writable) {
  store_writable_->Set(writable ? 1 : 0);
}

void Metrics::AddCollectable(
    std::shared_ptr<prometheus::Collectable> collectable) {
  absl::MutexLock lock(&exposer_mu_);
  if (exposer_ != nullptr) exposer_->RegisterCollectable(collectable);
  collectables_.push_back(std::move(collectable));
}

void Metrics::ObserveCoreOp(CoreOp op, absl::Duration d) {
  const int index = static_cast<int>(op);
  if (index < 0 || index >= kNumCoreOps) return;
  core_op_[index]->Observe(absl::ToDoubleSeconds(d));
}

void Metrics::SetStatsProvider(std::function<RegistryStats()> provider) {
  stats_->Set(std::move(provider));
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
  exposer->RegisterCollectable(stats_);
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
  for (auto& family : stats_->Collect()) families.push_back(std::move(family));
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
