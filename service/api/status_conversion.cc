#include "service/api/status_conversion.h"

#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "service/common/absl_compat.h"
#include "service/common/field_error.h"
#include "service/common/text.h"

namespace registrar {

std::string_view LimitFlags(Limit limit) {
  switch (limit) {
    case Limit::kOwnerQuota:
      return "--owner_quota";
    case Limit::kMaxBatch:
      return "--max_batch";
    case Limit::kLeaseTtl:
      return "--min_lease_ttl, --max_lease_ttl";
    case Limit::kCallDeadline:
      return "--call_timeout";
    case Limit::kMaxWatchers:
      return "--max_watchers";
    case Limit::kMaxWatchersPerTenant:
      return "--max_watchers_per_tenant";
    case Limit::kMaxWatchersPerCaller:
      return "--max_watchers_per_caller";
    case Limit::kEtcdMaxTxnOps:
      return "--etcd_max_txn_ops";
    case Limit::kEtcdMaxRequestBytes:
      return "--etcd_max_request_bytes";
    case Limit::kNodeId:
      return "--node_id";
    case Limit::kAcceptDataLoss:
      return "--accept_data_loss";
    case Limit::kTagKey:
      return "--key_file";
  }
  return "";
}

namespace {

// "<message> (set by --flag)" when the core tagged the limit it hit.
std::string WithFlag(std::string message, const absl::Status& status) {
  if (std::optional<Limit> limit = LimitOf(status)) {
    absl::StrAppend(&message, " (set by ", AsAbsl(LimitFlags(*limit)), ")");
  }
  return message;
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(status.code());
  // Core messages may quote what a caller sent (an ID, a tenant): every
  // message leaves escaped and bounded, whatever produced it.
  const std::string message =
      WithFlag(SafeMessage(AsStd(status.message())), status);
  if (IsNotApplied(status)) {
    google::rpc::Status details;
    details.set_code(static_cast<int>(code));
    details.set_message(message);
    google::rpc::ErrorInfo info;
    info.set_domain("registrar.dev");
    info.set_reason("NOT_APPLIED");
    details.add_details()->PackFrom(info);
    return grpc::Status(code, message, details.SerializeAsString());
  }
  std::optional<std::string> field = ErrorField(status);
  std::optional<std::string> quota_subject = QuotaSubject(status);
  if (!field && !quota_subject) return grpc::Status(code, message);

  google::rpc::Status details;
  details.set_code(static_cast<int>(code));
  details.set_message(message);
  if (quota_subject) {
    google::rpc::QuotaFailure quota;
    auto* v = quota.add_violations();
    v->set_subject(SafeMessage(*quota_subject));
    v->set_description(message);
    details.add_details()->PackFrom(quota);
    if (std::optional<absl::Duration> delay = RetryDelay(status)) {
      google::rpc::RetryInfo retry;
      const int64_t ms = absl::ToInt64Milliseconds(*delay);
      retry.mutable_retry_delay()->set_seconds(ms / 1000);
      retry.mutable_retry_delay()->set_nanos(
          static_cast<int32_t>((ms % 1000) * 1'000'000));
      details.add_details()->PackFrom(retry);
    }
    return grpc::Status(code, message, details.SerializeAsString());
  }
  const std::string description =
      WithFlag(SafeMessage(ErrorDescription(status)), status);
  google::rpc::BadRequest bad_request;
  auto* violation = bad_request.add_field_violations();
  violation->set_field(SafeMessage(*field));
  violation->set_description(description);
  details.add_details()->PackFrom(bad_request);
  if (code == grpc::StatusCode::RESOURCE_EXHAUSTED) {
    google::rpc::QuotaFailure quota;
    auto* v = quota.add_violations();
    v->set_subject(SafeMessage(*field));
    v->set_description(description);
    details.add_details()->PackFrom(quota);
  }
  return grpc::Status(code, message, details.SerializeAsString());
}

}  // namespace registrar
