#include "service/api/access_log.h"

#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "service/common/absl_compat.h"
#include "service/common/text.h"
#include "service/metrics/grpc_server_metrics.h"
#include "spdlog/sinks/basic_file_sink.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace registrar {
namespace {

using grpc::experimental::InterceptionHookPoints;
using grpc::experimental::InterceptorBatchMethods;

// A metadata value the client sent, or "" when absent.
std::string_view Metadata(const grpc::ServerContextBase& ctx,
                          std::string_view key) {
  const auto& md = ctx.client_metadata();
  auto it = md.find(grpc::string_ref(key.data(), key.size()));
  if (it == md.end()) return "";
  return std::string_view(it->second.data(), it->second.size());
}

}  // namespace

class AccessLog::Interceptor final : public grpc::experimental::Interceptor {
 public:
  Interceptor(AccessLog& log, grpc::experimental::ServerRpcInfo* info)
      : log_(log),
        ctx_(info->server_context()),
        method_(info->method() == nullptr ? "" : info->method()),
        start_(absl::Now()) {
    log_.Begin(ctx_);
  }
  ~Interceptor() override {
    // A call that ended without a status sent (not seen with gRPC 1.51).
    if (!written_) Written(grpc::StatusCode::CANCELLED);
  }

  void Intercept(InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            InterceptionHookPoints::PRE_SEND_STATUS) &&
        !written_) {
      Written(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Written(grpc::StatusCode code) {
    written_ = true;
    log_.Write(method_, code, absl::Now() - start_, log_.End(ctx_), *ctx_);
  }

  AccessLog& log_;
  const grpc::ServerContextBase* const ctx_;
  const std::string method_;
  const absl::Time start_;
  bool written_ = false;
};

class AccessLog::Factory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit Factory(AccessLog& log) : log_(log) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    if (!log_.Sampled()) return nullptr;
    return new Interceptor(log_, info);
  }

 private:
  AccessLog& log_;
};

absl::StatusOr<std::unique_ptr<AccessLog>> AccessLog::Open(
    const Options& options) {
  std::shared_ptr<spdlog::logger> logger;
  try {
    spdlog::sink_ptr sink;
    if (options.destination == "stderr") {
      sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    } else {
      sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(
          options.destination, /*truncate=*/false);
    }
    logger = std::make_shared<spdlog::logger>("access", std::move(sink));
  } catch (const spdlog::spdlog_ex& e) {
    return absl::FailedPreconditionError(
        absl::StrCat("--access_log=", options.destination, ": ", e.what()));
  }
  logger->set_pattern("%v");
  logger->flush_on(spdlog::level::info);
  return std::unique_ptr<AccessLog>(new AccessLog(options, std::move(logger)));
}

AccessLog::~AccessLog() = default;

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
AccessLog::MakeInterceptorFactory() {
  return std::make_unique<Factory>(*this);
}

bool AccessLog::Sampled() {
  if (options_.sample >= 1) return true;
  if (options_.sample <= 0) return false;
  thread_local std::minstd_rand rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0, 1)(rng) < options_.sample;
}

void AccessLog::Begin(const grpc::ServerContextBase* ctx) {
  absl::MutexLock lock(&mu_);
  calls_.try_emplace(ctx);
}

AccessLog::Who AccessLog::End(const grpc::ServerContextBase* ctx) {
  absl::MutexLock lock(&mu_);
  auto it = calls_.find(ctx);
  if (it == calls_.end()) return {};
  Who who = std::move(it->second);
  calls_.erase(it);
  return who;
}

void AccessLog::Note(const grpc::ServerContextBase* ctx,
                     std::string_view caller,
                     absl::FunctionRef<std::string()> tenant) {
  {
    absl::MutexLock lock(&mu_);
    if (!calls_.contains(ctx)) return;  // not sampled
  }
  std::string t = tenant();
  absl::MutexLock lock(&mu_);
  auto it = calls_.find(ctx);
  if (it == calls_.end()) return;
  it->second.caller = std::string(caller);
  it->second.tenant = std::move(t);
}

void AccessLog::Write(std::string_view method, grpc::StatusCode code,
                      absl::Duration duration, const Who& who,
                      const grpc::ServerContextBase& ctx) {
  const std::string_view traceparent = Metadata(ctx, "traceparent");
  const std::string_view request_id = Metadata(ctx, "x-request-id");
  const double ms = absl::ToDoubleMilliseconds(duration);
  const std::string peer = ctx.peer();
  std::string line;
  if (options_.json) {
    line = absl::StrCat("{\"ts\":\"", JsonTimestamp(absl::Now()),
                        "\",\"level\":\"info\",\"msg\":\"access\"");
    auto field = [&line](std::string_view key, std::string_view value) {
      absl::StrAppend(&line, ",\"", AsAbsl(key), "\":");
      AppendJsonString(LogSafe(value), &line);
    };
    field("method", method);
    field("code", GrpcCodeName(code));
    absl::StrAppend(&line, ",\"duration_ms\":", absl::StrFormat("%.3f", ms));
    if (!who.caller.empty()) field("caller", who.caller);
    if (!who.tenant.empty()) field("tenant", who.tenant);
    field("peer", peer);
    if (!traceparent.empty()) field("traceparent", traceparent);
    if (!request_id.empty()) field("x_request_id", request_id);
    line += "}";
  } else {
    auto quoted = [](std::string_view v) {
      return v.empty() ? std::string("-")
                       : absl::StrCat("\"", LogSafe(v), "\"");
    };
    line =
        absl::StrCat(absl::FormatTime("[%Y-%m-%d %H:%M:%E3S]", absl::Now(),
                                      absl::LocalTimeZone()),
                     " [access] method=", LogSafe(method),
                     " code=", AsAbsl(GrpcCodeName(code)),
                     " duration_ms=", absl::StrFormat("%.3f", ms),
                     " caller=", who.caller.empty() ? "-" : LogSafe(who.caller),
                     " tenant=", quoted(who.tenant), " peer=", quoted(peer),
                     " traceparent=", quoted(traceparent),
                     " x_request_id=", quoted(request_id));
  }
  logger_->info(line);
}

}  // namespace registrar
