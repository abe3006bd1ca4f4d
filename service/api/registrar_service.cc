#include "service/api/registrar_service.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/strings/str_cat.h"  // Watch
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "google/protobuf/arena.h"
#include "service/api/lenient.pb.h"
#include "service/api/proto_conversion.h"
#include "service/api/raw_request.h"
#include "service/api/status_conversion.h"
#include "service/api/watch_reactor.h"  // Watch
#include "service/common/field_error.h"
#include "service/common/status_macros.h"

namespace registrar {

RegistrarService::RegistrarService(Registry& registry, const ApiLimits& limits,
                                   ApiMetrics* metrics, WatchHub* watch_hub,
                                   const AccessControl* access,
                                   RateLimiter* limiter)
    : registry_(&registry),
      cluster_(nullptr),
      limits_(limits),
      access_(access),
      limiter_(limiter),
      metrics_(metrics),
      watch_hub_(watch_hub) {}

RegistrarService::RegistrarService(ClusterHook& cluster,
                                   const ApiLimits& limits, ApiMetrics* metrics,
                                   WatchHub* watch_hub,
                                   const AccessControl* access,
                                   RateLimiter* limiter)
    : registry_(nullptr),
      cluster_(&cluster),
      limits_(limits),
      access_(access),
      limiter_(limiter),
      metrics_(metrics),
      watch_hub_(watch_hub) {}

std::shared_ptr<Registry> RegistrarService::CurrentRegistry() const {
  if (cluster_ != nullptr) return cluster_->registry();
  // Not owned: the single registry outlives the service.
  return std::shared_ptr<Registry>(std::shared_ptr<Registry>(), registry_);
}

namespace {

absl::Status LenientOwner(const api::internal::LenientOwner& in,
                          const std::string& field, v1::Owner* out) {
  if (!IsPrintableUtf8(in.tenant())) {
    return InvalidField(absl::StrCat(field, ".tenant"),
                        "must be printable UTF-8 without control characters");
  }
  if (!IsPrintableUtf8(in.user_id())) {
    return InvalidField(absl::StrCat(field, ".user_id"),
                        "must be printable UTF-8 without control characters");
  }
  out->set_tenant(in.tenant());
  out->set_user_id(in.user_id());
  return absl::OkStatus();
}

// A Validate request with an ID that is not UTF-8 still gets a verdict per
// item: such an ID is carried as "" (which no ID parses from), so it is
// MALFORMED without failing the batch. Owners must still be UTF-8.
absl::Status LenientValidateParse(const grpc::ByteBuffer& bytes,
                                  v1::ValidateRequest* request) {
  if (ParseBytes(bytes, request)) return absl::OkStatus();
  request->Clear();
  api::internal::LenientValidateRequest lenient;
  if (!ParseBytes(bytes, &lenient)) {
    return InvalidField("request",
                        "cannot be parsed as registrar.v1.ValidateRequest");
  }
  if (lenient.has_owner()) {
    RETURN_IF_ERROR(
        LenientOwner(lenient.owner(), "owner", request->mutable_owner()));
  }
  request->set_include_records(lenient.include_records());
  for (int i = 0; i < lenient.items_size(); ++i) {
    const api::internal::LenientValidateItem& in = lenient.items(i);
    v1::ValidateItem* item = request->add_items();
    if (std::string_view(in.id()).size() <= kMaxIdTextLength &&
        IsPrintableUtf8(in.id())) {
      item->set_id(in.id());
    }
    item->set_expected_kind(static_cast<v1::Kind>(in.expected_kind()));
    if (in.has_owner()) {
      RETURN_IF_ERROR(LenientOwner(in.owner(),
                                   absl::StrCat("items[", i, "].owner"),
                                   item->mutable_owner()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

namespace {

// The host of a gRPC peer string ("ipv4:10.0.0.7:51234" -> "ipv4:10.0.0.7"):
// the rate-limit key of an unauthenticated caller.
std::string PeerHost(const std::string& peer) {
  const size_t colon = peer.rfind(':');
  return colon == std::string::npos || colon < peer.find(':') + 1
             ? peer
             : peer.substr(0, colon);
}

// One call's messages, on an arena that lives as long as the call's work.
template <typename Req, typename Resp>
struct CallMessages {
  std::shared_ptr<Registry> registry;  // the one answering this call
  CallerPtr caller;                    // null without authentication
  google::protobuf::Arena arena;
  Req* request = google::protobuf::Arena::CreateMessage<Req>(&arena);
  Resp* response = google::protobuf::Arena::CreateMessage<Resp>(&arena);
};

}  // namespace

template <typename Req, typename Resp>
grpc::ServerUnaryReactor* RegistrarService::Handle(
    grpc::CallbackServerContext* ctx, Method method,
    const grpc::ByteBuffer* request, grpc::ByteBuffer* response,
    absl::Status (RegistrarService::*body)(Registry&, const Caller*, const Req&,
                                           Resp*),
    absl::Status (*parse)(const grpc::ByteBuffer&, Req*),
    void (RegistrarService::*async_body)(Registry&, const Caller*, const Req&,
                                         Resp*, absl::Time, Finish)) {
  grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
  in_flight_.fetch_add(1, std::memory_order_acq_rel);
  if (stopping_.load(std::memory_order_acquire)) {
    in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    reactor->Finish(
        grpc::Status(grpc::StatusCode::UNAVAILABLE, "server is shutting down"));
    return reactor;
  }
  // A replica that is not the writer hands a change to the writer, which
  // checks, authorizes and answers it; the reply comes back unchanged.
  if (cluster_ != nullptr && InfoOf(method).changes_state &&
      cluster_->Forward(ctx, method, *request, response,
                        [this, reactor](const grpc::Status& status) {
                          reactor->Finish(status);
                          in_flight_.fetch_sub(1, std::memory_order_acq_rel);
                        })) {
    return reactor;
  }
  auto call = std::make_shared<CallMessages<Req, Resp>>();
  absl::Status admitted = parse(*request, call->request);
  if (admitted.ok()) {
    absl::StatusOr<CallerPtr> caller =
        Admit(ctx, method, [&] { return TenantsOf(*call->request); });
    if (caller.ok()) {
      call->caller = *std::move(caller);
    } else {
      admitted = caller.status();
    }
  }
  if (!admitted.ok()) {
    reactor->Finish(ToGrpcStatus(admitted));
    in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    return reactor;
  }
  // The server's own deadline: a change still queued for the store when the
  // caller has given up, or --call_timeout after arrival, is not written
  // (DEADLINE_EXCEEDED, nothing done).
  const absl::Time deadline = std::min(absl::Now() + limits_.call_timeout,
                                       absl::FromChrono(ctx->deadline()));
  // Runs the body and finishes the call (with `ready`'s error instead when
  // the read may not answer).
  auto run = [this, reactor, method, response, body, async_body, deadline,
              start = absl::Now(), call](absl::Status ready) mutable {
    if (!ready.ok()) {
      reactor->Finish(ToGrpcStatus(ready));
      in_flight_.fetch_sub(1, std::memory_order_acq_rel);
      return;
    }
    call->registry = CurrentRegistry();
    Registry& registry = *call->registry;
    const Caller* caller = call->caller.get();
    const Req* req = call->request;
    Resp* resp = call->response;
    // Owns the call's messages until the call is finished.
    Finish finish = [this, reactor, method, response, start,
                     call = std::move(call)](absl::Status status) mutable {
      if (metrics_) metrics_->ObserveCall(method, absl::Now() - start);
      grpc::Status result = ToGrpcStatus(status);
      if (status.ok()) {
        bool own_buffer = false;
        result = grpc::SerializationTraits<Resp>::Serialize(
            *call->response, response, &own_buffer);
      }
      call.reset();
      reactor->Finish(result);
      in_flight_.fetch_sub(1, std::memory_order_acq_rel);
    };
    if (async_body != nullptr) {
      (this->*async_body)(registry, caller, *req, resp, deadline,
                          std::move(finish));
    } else {
      std::move(finish)((this->*body)(registry, caller, *req, resp));
    }
  };
  if (cluster_ != nullptr && async_body == nullptr &&
      !InfoOf(method).changes_state) {
    // A read on a follower answers once it reflects every change any
    // replica acknowledged before the read began; no thread waits.
    cluster_->BeforeRead(deadline, std::move(run));
  } else {
    run(absl::OkStatus());
  }
  return reactor;
}

absl::StatusOr<CallerPtr> RegistrarService::Admit(
    grpc::CallbackServerContext* ctx, Method method,
    absl::FunctionRef<std::vector<TenantUse>()> tenants) {
  CallerPtr caller;
  if (access_ != nullptr) {
    ASSIGN_OR_RETURN(caller, access_->Authenticate(*ctx));
  }
  if (access_log_ != nullptr) {
    access_log_->Note(ctx, caller ? std::string_view(caller->name()) : "", [&] {
      const std::vector<TenantUse> uses = tenants();
      return uses.empty() ? std::string() : std::string(uses.front().tenant);
    });
  }
  if (caller != nullptr) {
    RETURN_IF_ERROR(access_->Authorize(caller.get(), method, tenants()));
  }
  if (limiter_ != nullptr && limiter_->enabled()) {
    absl::Status admitted = limiter_->Admit(
        caller ? caller->name() : PeerHost(ctx->peer()), absl::Now());
    if (!admitted.ok()) {
      if (metrics_) metrics_->CountRejection(Rejection::kRateLimited);
      return admitted;
    }
  }
  // Counted on entry to Handle, this call included.
  const int64_t in_flight = in_flight_.load(std::memory_order_acquire);
  if (method != Method::kWatch && limits_.max_in_flight > 0 &&
      in_flight > static_cast<int64_t>(limits_.max_in_flight)) {
    if (metrics_) metrics_->CountRejection(Rejection::kOverloaded);
    return QuotaExceeded(
        "server",
        absl::StrCat("server overloaded: ", in_flight - 1,
                     " calls in flight, limit ", limits_.max_in_flight,
                     " (--max_in_flight)"),
        absl::Milliseconds(50));
  }
  return caller;
}

std::optional<std::string> RegistrarService::LeaseCaller(const Caller* caller) {
  if (caller == nullptr || caller->role() == CallerRole::kAdmin) {
    return std::nullopt;
  }
  return caller->name();
}

bool RegistrarService::WaitIdle(absl::Duration timeout) const {
  const absl::Time deadline = absl::Now() + timeout;
  while (in_flight_.load(std::memory_order_acquire) > 0) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

grpc::ServerUnaryReactor* RegistrarService::Issue(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Handle<v1::IssueRequest, v1::IssueResponse>(
      ctx, Method::kIssue, request, response, nullptr,
      &StrictParse<v1::IssueRequest>, &RegistrarService::DoIssueAsync);
}
grpc::ServerUnaryReactor* RegistrarService::OpenContext(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Handle<v1::OpenContextRequest, v1::OpenContextResponse>(
      ctx, Method::kOpenContext, request, response, nullptr,
      &StrictParse<v1::OpenContextRequest>,
      &RegistrarService::DoOpenContextAsync);
}
grpc::ServerUnaryReactor* RegistrarService::Validate(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Handle(ctx, Method::kValidate, request, response,
                &RegistrarService::DoValidate, &LenientValidateParse);
}
grpc::ServerUnaryReactor* RegistrarService::Cleanup(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Handle<v1::CleanupRequest, v1::CleanupResponse>(
      ctx, Method::kCleanup, request, response, nullptr,
      &StrictParse<v1::CleanupRequest>, &RegistrarService::DoCleanupAsync);
}
grpc::ServerUnaryReactor* RegistrarService::GrantLease(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Handle<v1::GrantLeaseRequest, v1::GrantLeaseResponse>(
      ctx, Method::kGrantLease, request, response, nullptr,
      &StrictParse<v1::GrantLeaseRequest>,
      &RegistrarService::DoGrantLeaseAsync);
}
grpc::ServerUnaryReactor* RegistrarService::KeepAlive(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Handle(ctx, Method::kKeepAlive, request, response,
                &RegistrarService::DoKeepAlive,
                &StrictParse<v1::KeepAliveRequest>);
}
grpc::ServerUnaryReactor* RegistrarService::RevokeLease(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Handle<v1::RevokeLeaseRequest, v1::RevokeLeaseResponse>(
      ctx, Method::kRevokeLease, request, response, nullptr,
      &StrictParse<v1::RevokeLeaseRequest>,
      &RegistrarService::DoRevokeLeaseAsync);
}
grpc::ServerUnaryReactor* RegistrarService::Describe(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Handle(ctx, Method::kDescribe, request, response,
                &RegistrarService::DoDescribe,
                &StrictParse<v1::DescribeRequest>);
}
grpc::ServerUnaryReactor* RegistrarService::ListOwned(
    grpc::CallbackServerContext* ctx, const grpc::ByteBuffer* request,
    grpc::ByteBuffer* response) {
  return Handle(ctx, Method::kListOwned, request, response,
                &RegistrarService::DoListOwned,
                &StrictParse<v1::ListOwnedRequest>);
}

grpc::ServerWriteReactor<v1::WatchEvent>* RegistrarService::Watch(
    grpc::CallbackServerContext* ctx, const v1::WatchRequest* request) {
  if (watch_hub_ == nullptr) {
    return WatchReactor::Refuse(
        absl::UnimplementedError("Watch is not enabled on this server"));
  }
  if (stopping_.load(std::memory_order_acquire)) {
    return WatchReactor::Refuse(
        absl::UnavailableError("server is shutting down"));
  }
  absl::StatusOr<CallerPtr> caller =
      Admit(ctx, Method::kWatch, [&] { return TenantsOf(*request); });
  if (!caller.ok()) return WatchReactor::Refuse(caller.status());
  const std::string& tenant = request->tenant();
  if (tenant.size() > limits_.max_string_bytes || !IsPrintableUtf8(tenant)) {
    return WatchReactor::Refuse(InvalidField(
        "tenant", absl::StrCat("must be at most ", limits_.max_string_bytes,
                               " bytes of printable UTF-8")));
  }
  if (cluster_ != nullptr) {
    // "From now" and resuming both mean: at least what was acknowledged
    // anywhere before this call.
    const absl::Time deadline = std::min(absl::Now() + limits_.call_timeout,
                                         absl::FromChrono(ctx->deadline()));
    // Watch's reactor is returned from here, so this one read waits.
    struct Ready {
      absl::Mutex mu;
      std::optional<absl::Status> status ABSL_GUARDED_BY(mu);
    };
    auto ready = std::make_shared<Ready>();
    cluster_->BeforeRead(deadline, [ready](absl::Status s) {
      absl::MutexLock lock(&ready->mu);
      ready->status = std::move(s);
    });
    absl::Status s;
    {
      absl::MutexLock lock(&ready->mu);
      ready->mu.AwaitWithDeadline(
          absl::Condition(
              +[](std::optional<absl::Status>* st) { return st->has_value(); },
              &ready->status),
          deadline + absl::Seconds(1));
      s = ready->status.value_or(absl::DeadlineExceededError(
          "this replica did not catch up with the cluster in time"));
    }
    if (!s.ok()) return WatchReactor::Refuse(s);
  }
  return WatchReactor::Start(
      *watch_hub_, *request,
      *caller ? (*caller)->name() : PeerHost(ctx->peer()));
}

}  // namespace registrar
