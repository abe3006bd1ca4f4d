#ifndef REGISTRAR_SERVICE_API_STATUS_CONVERSION_H_
#define REGISTRAR_SERVICE_API_STATUS_CONVERSION_H_

#include <grpcpp/support/status.h>

#include <string_view>

#include "absl/status/status.h"
#include "service/common/field_error.h"

namespace registrar {

// The one place absl::Status becomes grpc::Status. Same code and message;
// when the status names a field (service/common/field_error.h) the details
// carry a google.rpc.Status with a BadRequest field violation, plus a
// QuotaFailure for RESOURCE_EXHAUSTED, so clients can tell which field and
// which limit.
// A status the core tagged with a Limit (field_error.h) gets the flags that
// set the limit appended: "... limit is 1000 (set by --owner_quota)".
grpc::Status ToGrpcStatus(const absl::Status& status);

// The server flags that set `limit`, e.g. "--owner_quota".
std::string_view LimitFlags(Limit limit);

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_API_STATUS_CONVERSION_H_
