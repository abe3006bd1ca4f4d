#ifndef REGISTRAR_SERVICE_API_STATUS_CONVERSION_H_
#define REGISTRAR_SERVICE_API_STATUS_CONVERSION_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace registrar {

// The one place absl::Status becomes grpc::Status. Same code and message;
// when the status names a field (service/common/field_error.h) the details
// carry a google.rpc.Status with a BadRequest field violation, plus a
// QuotaFailure for RESOURCE_EXHAUSTED, so clients can tell which field and
// which limit.
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_API_STATUS_CONVERSION_H_
