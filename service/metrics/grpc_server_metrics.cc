#include "service/metrics/grpc_server_metrics.h"

#include <array>
#include <atomic>
#include <chrono>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/interceptor.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace registrar {
namespace {

using grpc::experimental::InterceptionHookPoints;
using grpc::experimental::InterceptorBatchMethods;
using grpc::experimental::ServerRpcInfo;

constexpr int kNumCodes = 17;  // grpc::StatusCode 0..16
constexpr int kNumTypes = 4;   // ServerRpcInfo::Type

// Series of one method; immutable once built.
struct MethodSeries {
  prometheus::Counter* started = nullptr;
  prometheus::Counter* msg_received = nullptr;
  prometheus::Counter* msg_sent = nullptr;
  std::array<prometheus::Counter*, kNumCodes> handled{};
  prometheus::Histogram* handling = nullptr;
};

// ("pkg.Service", "Method") from "/pkg.Service/Method", like
// go-grpc-prometheus' splitMethodName.
std::pair<std::string_view, std::string_view> SplitMethod(
    std::string_view full) {
  if (!full.empty() && full.front() == '/') full.remove_prefix(1);
  const size_t slash = full.find('/');
  if (slash == std::string_view::npos) return {"unknown", "unknown"};
  return {full.substr(0, slash), full.substr(slash + 1)};
}

class State {
 public:
  State(std::shared_ptr<prometheus::Registry> registry,
        const std::vector<GrpcMethod>& known_methods)
      : registry_(std::move(registry)),
        started_(prometheus::BuildCounter()
                     .Name("grpc_server_started_total")
                     .Help("Total number of RPCs started on the server.")
                     .Register(*registry_)),
        handled_(prometheus::BuildCounter()
                     .Name("grpc_server_handled_total")
                     .Help("Total number of RPCs completed on the server, "
                           "regardless of success or failure.")
                     .Register(*registry_)),
        msg_received_(
            prometheus::BuildCounter()
                .Name("grpc_server_msg_received_total")
                .Help("Total number of RPC stream messages received on the "
                      "server.")
                .Register(*registry_)),
        msg_sent_(prometheus::BuildCounter()
                      .Name("grpc_server_msg_sent_total")
                      .Help("Total number of gRPC stream messages sent by the "
                            "server.")
                      .Register(*registry_)),
        handling_(prometheus::BuildHistogram()
                      .Name("grpc_server_handling_seconds")
                      .Help("Histogram of response latency (seconds) of gRPC "
                            "that had been application-level handled by the "
                            "server.")
                      .Register(*registry_)) {
    for (const GrpcMethod& m : known_methods) {
      if (known_.contains(m.full_name)) continue;
      const auto [service, method] = SplitMethod(m.full_name);
      known_.emplace(m.full_name, Build(m.type, service, method));
    }
  }

  // The series for an RPC of `full_method` of type `type`. Never null.
  const MethodSeries* Lookup(const char* full_method, ServerRpcInfo::Type type)
      ABSL_LOCKS_EXCLUDED(mu_) {
    // absl::string_view is not std::string_view in Debian's abseil; the
    // maps' heterogeneous lookup needs the former.
    const absl::string_view name =
        full_method == nullptr ? absl::string_view() : full_method;
    // known_ is never written after construction: no lock needed.
    if (auto it = known_.find(name); it != known_.end()) return &it->second;
    absl::MutexLock lock(&mu_);
    if (auto it = dynamic_.find(name); it != dynamic_.end()) {
      return it->second.get();
    }
    const int type_index = static_cast<int>(type);
    if (dynamic_.size() >= kMaxDynamicGrpcMethods) {
      auto& overflow = overflow_[type_index];
      if (overflow == nullptr) {
        overflow =
            std::make_unique<MethodSeries>(Build(type, "unknown", "unknown"));
      }
      return overflow.get();
    }
    const auto [service, method] =
        SplitMethod(std::string_view(name.data(), name.size()));
    auto [it, inserted] = dynamic_.emplace(
        std::string(name),
        std::make_unique<MethodSeries>(Build(type, service, method)));
    return it->second.get();
  }

 private:
  MethodSeries Build(ServerRpcInfo::Type type, std::string_view service,
                     std::string_view method) {
    const std::string type_name(GrpcTypeName(type));
    prometheus::Labels labels = {{"grpc_type", type_name},
                                 {"grpc_service", std::string(service)},
                                 {"grpc_method", std::string(method)}};
    MethodSeries s;
    s.started = &started_.Add(labels);
    s.msg_received = &msg_received_.Add(labels);
    s.msg_sent = &msg_sent_.Add(labels);
    s.handling = &handling_.Add(labels, GrpcHandlingBuckets());
    for (int code = 0; code < kNumCodes; ++code) {
      prometheus::Labels with_code = labels;
      with_code.emplace(
          "grpc_code",
          std::string(GrpcCodeName(static_cast<grpc::StatusCode>(code))));
      s.handled[code] = &handled_.Add(with_code);
    }
    return s;
  }

  const std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>& started_;
  prometheus::Family<prometheus::Counter>& handled_;
  prometheus::Family<prometheus::Counter>& msg_received_;
  prometheus::Family<prometheus::Counter>& msg_sent_;
  prometheus::Family<prometheus::Histogram>& handling_;

  absl::flat_hash_map<std::string, MethodSeries> known_;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<MethodSeries>> dynamic_
      ABSL_GUARDED_BY(mu_);
  std::array<std::unique_ptr<MethodSeries>, kNumTypes> overflow_
      ABSL_GUARDED_BY(mu_);
};

class MetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(std::shared_ptr<State> state, const MethodSeries* series,
                     grpc::ServerContextBase* context)
      : state_(std::move(state)),
        series_(series),
        context_(context),
        start_(std::chrono::steady_clock::now()) {
    series_->started->Increment();
  }

  ~MetricsInterceptor() override {
    if (!handled_.exchange(true, std::memory_order_relaxed)) {
      Handled(grpc::StatusCode::CANCELLED);
    }
  }

  void Intercept(InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_RECV_MESSAGE) &&
        methods->GetRecvMessage() != nullptr) {
      series_->msg_received->Increment();
    }
    // The status and a message sent with it (a unary reply, a stream's
    // WriteAndFinish) are counted before the batch leaves, as
    // go-grpc-prometheus counts a unary reply when the handler returns:
    // once a client has the reply, the reply and the call are counted. A
    // message sent alone (a stream's Write) is counted once written.
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS)) {
      if (methods->QueryInterceptionHookPoint(
              InterceptionHookPoints::PRE_SEND_MESSAGE)) {
        final_message_counted_.store(true, std::memory_order_relaxed);
        series_->msg_sent->Increment();
      }
      if (!handled_.exchange(true, std::memory_order_relaxed)) {
        Handled(CodeToCount(methods->GetSendStatus().error_code()));
      }
    }
    // The final batch's message, counted already, is seen here once; a
    // Write still outstanding when Finish was called may take its place,
    // which moves no total.
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::POST_SEND_MESSAGE) &&
        !final_message_counted_.exchange(false, std::memory_order_relaxed) &&
        methods->GetSendMessageStatus()) {
      series_->msg_sent->Increment();
    }
    methods->Proceed();
  }

 private:
  // A status sent on a call the client has already given up on never
  // reaches it; whatever the handler chose (gRPC's health Watch says
  // UNKNOWN), the call ended because of the client, as Go handlers report
  // it from their context: DeadlineExceeded once the deadline has passed,
  // else Canceled. The server's deadline is the client's timeout counted
  // from the request's arrival, so it falls a little after the client's:
  // a client giving up at its deadline is seen here slightly before ours
  // (by the transit and queueing of the request, tens of milliseconds on a
  // loaded machine). A cancellation within kDeadlineSlack of the deadline
  // is the deadline's.
  grpc::StatusCode CodeToCount(grpc::StatusCode sent) const {
    constexpr std::chrono::milliseconds kDeadlineSlack(250);
    if (context_ == nullptr || !context_->IsCancelled()) return sent;
    return context_->deadline() <=
                   std::chrono::system_clock::now() + kDeadlineSlack
               ? grpc::StatusCode::DEADLINE_EXCEEDED
               : grpc::StatusCode::CANCELLED;
  }

  void Handled(grpc::StatusCode code) {
    const std::chrono::duration<double> elapsed =
        std::chrono::steady_clock::now() - start_;
    series_->handling->Observe(elapsed.count());
    const int index = static_cast<int>(code);
    series_
        ->handled[index >= 0 && index < kNumCodes
                      ? index
                      : static_cast<int>(grpc::StatusCode::UNKNOWN)]
        ->Increment();
  }

  const std::shared_ptr<State> state_;  // keeps *series_ alive
  const MethodSeries* const series_;
  grpc::ServerContextBase* const context_;  // outlives the interceptor
  const std::chrono::steady_clock::time_point start_;
  // Batches of one streaming call may be intercepted concurrently.
  std::atomic<bool> handled_{false};
  // Set with the status when a message goes with it: counted already.
  std::atomic<bool> final_message_counted_{false};
};

class MetricsInterceptorFactory
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(std::shared_ptr<State> state)
      : state_(std::move(state)) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      ServerRpcInfo* info) override {
    const MethodSeries* series = state_->Lookup(info->method(), info->type());
    return new MetricsInterceptor(state_, series, info->server_context());
  }

 private:
  const std::shared_ptr<State> state_;
};

}  // namespace

std::vector<GrpcMethod> GrpcMethodsOfService(
    std::string_view service_full_name) {
  std::vector<GrpcMethod> out;
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          std::string(service_full_name));
  if (service == nullptr) return out;
  for (int i = 0; i < service->method_count(); ++i) {
    const google::protobuf::MethodDescriptor* m = service->method(i);
    GrpcMethod g;
    g.full_name = "/" + service->full_name() + "/" + m->name();
    if (m->client_streaming() && m->server_streaming()) {
      g.type = ServerRpcInfo::Type::BIDI_STREAMING;
    } else if (m->client_streaming()) {
      g.type = ServerRpcInfo::Type::CLIENT_STREAMING;
    } else if (m->server_streaming()) {
      g.type = ServerRpcInfo::Type::SERVER_STREAMING;
    } else {
      g.type = ServerRpcInfo::Type::UNARY;
    }
    out.push_back(std::move(g));
  }
  return out;
}

std::vector<GrpcMethod> GrpcHealthAndReflectionMethods() {
  return {
      {"/grpc.health.v1.Health/Check", ServerRpcInfo::Type::UNARY},
      {"/grpc.health.v1.Health/Watch", ServerRpcInfo::Type::SERVER_STREAMING},
      {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
       ServerRpcInfo::Type::BIDI_STREAMING},
      {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
       ServerRpcInfo::Type::BIDI_STREAMING},
  };
}

std::string_view GrpcTypeName(ServerRpcInfo::Type type) {
  switch (type) {
    case ServerRpcInfo::Type::UNARY:
      return "unary";
    case ServerRpcInfo::Type::CLIENT_STREAMING:
      return "client_stream";
    case ServerRpcInfo::Type::SERVER_STREAMING:
      return "server_stream";
    case ServerRpcInfo::Type::BIDI_STREAMING:
      return "bidi_stream";
  }
  return "unknown";
}

std::string_view GrpcCodeName(grpc::StatusCode code) {
  // google.golang.org/grpc/codes.Code.String(), which go-grpc-prometheus
  // writes into grpc_code.
  static constexpr std::string_view kNames[kNumCodes] = {
      "OK",
      "Canceled",
      "Unknown",
      "InvalidArgument",
      "DeadlineExceeded",
      "NotFound",
      "AlreadyExists",
      "PermissionDenied",
      "ResourceExhausted",
      "FailedPrecondition",
      "Aborted",
      "OutOfRange",
      "Unimplemented",
      "Internal",
      "Unavailable",
      "DataLoss",
      "Unauthenticated",
  };
  const int index = static_cast<int>(code);
  return index >= 0 && index < kNumCodes ? kNames[index] : "Unknown";
}

const std::vector<double>& GrpcHandlingBuckets() {
  static const std::vector<double>* const kBuckets = new std::vector<double>{
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  return *kBuckets;
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
MakeGrpcServerMetricsInterceptorFactory(
    std::shared_ptr<prometheus::Registry> registry,
    std::vector<GrpcMethod> known_methods) {
  return std::make_unique<MetricsInterceptorFactory>(
      std::make_shared<State>(std::move(registry), known_methods));
}

}  // namespace registrar
