#include "client/rpc_status.h"

#include <algorithm>
#include <string>

#include "absl/strings/cord.h"
#include "absl/types/optional.h"
#include "google/protobuf/any.pb.h"

namespace registrar::grpc_status {
namespace {

// The first detail of type `T`, if any.
template <typename T>
std::optional<T> FindDetail(const absl::Status& status) {
  std::optional<google::rpc::Status> details = GetDetails(status);
  if (!details.has_value()) return std::nullopt;
  for (const google::protobuf::Any& any : details->details()) {
    T detail;
    if (any.Is<T>() && any.UnpackTo(&detail)) return detail;
  }
  return std::nullopt;
}

}  // namespace

absl::Status ToAbsl(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  // grpc::StatusCode and absl::StatusCode share the canonical numbering.
  absl::Status result(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
  if (!status.error_details().empty()) {
    result.SetPayload(kDetailsTypeUrl, absl::Cord(status.error_details()));
  }
  return result;
}

std::optional<google::rpc::Status> GetDetails(const absl::Status& status) {
  // absl here is built without std::optional, so this is absl::optional.
  absl::optional<absl::Cord> payload = status.GetPayload(kDetailsTypeUrl);
  if (!payload.has_value()) return std::nullopt;
  google::rpc::Status details;
  if (!details.ParseFromString(std::string(*payload))) return std::nullopt;
  return details;
}

std::optional<google::rpc::BadRequest> GetBadRequest(
    const absl::Status& status) {
  return FindDetail<google::rpc::BadRequest>(status);
}

std::optional<google::rpc::QuotaFailure> GetQuotaFailure(
    const absl::Status& status) {
  return FindDetail<google::rpc::QuotaFailure>(status);
}

std::optional<absl::Duration> GetRetryDelay(const absl::Status& status) {
  std::optional<google::rpc::RetryInfo> info =
      FindDetail<google::rpc::RetryInfo>(status);
  if (!info.has_value()) return std::nullopt;
  absl::Duration delay = absl::Seconds(info->retry_delay().seconds()) +
                         absl::Nanoseconds(info->retry_delay().nanos());
  return std::max(delay, absl::ZeroDuration());
}

std::optional<google::rpc::ErrorInfo> GetErrorInfo(const absl::Status& status) {
  return FindDetail<google::rpc::ErrorInfo>(status);
}

bool IsNotApplied(const absl::Status& status) {
  if (status.code() != absl::StatusCode::kUnavailable) return false;
  std::optional<google::rpc::ErrorInfo> info = GetErrorInfo(status);
  return info.has_value() && info->domain() == kErrorDomain &&
         info->reason() == kReasonNotApplied;
}

bool IsRetryableThrottle(const absl::Status& status) {
  return status.code() == absl::StatusCode::kResourceExhausted &&
         GetRetryDelay(status).has_value();
}

}  // namespace registrar::grpc_status
