#include "service/api/status_conversion.h"

#include <optional>
#include <string>

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "service/common/absl_compat.h"
#include "service/common/field_error.h"

namespace registrar {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  const auto code = static_cast<grpc::StatusCode>(status.code());
  std::string message(status.message());
  std::optional<std::string> field = ErrorField(status);
  if (!field) return grpc::Status(code, message);

  google::rpc::Status details;
  details.set_code(static_cast<int>(code));
  details.set_message(message);
  const std::string description = ErrorDescription(status);
  google::rpc::BadRequest bad_request;
  auto* violation = bad_request.add_field_violations();
  violation->set_field(*field);
  violation->set_description(description);
  details.add_details()->PackFrom(bad_request);
  if (code == grpc::StatusCode::RESOURCE_EXHAUSTED) {
    google::rpc::QuotaFailure quota;
    auto* v = quota.add_violations();
    v->set_subject(*field);
    v->set_description(description);
    details.add_details()->PackFrom(quota);
  }
  return grpc::Status(code, message, details.SerializeAsString());
}

}  // namespace registrar
