#ifndef REGISTRAR_SERVICE_COMMON_FIELD_ERROR_H_
#define REGISTRAR_SERVICE_COMMON_FIELD_ERROR_H_

// Errors that name the request field at fault. The core returns them as
// plain absl::Status; the RPC layer turns the attached field name into a
// google.rpc.BadRequest field violation.

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace registrar {

// Status with `code`, message "<field>: <description>" and the field name
// attached as a payload.
absl::Status FieldError(absl::StatusCode code, std::string_view field,
                        std::string_view description);

inline absl::Status InvalidField(std::string_view field,
                                 std::string_view description) {
  return FieldError(absl::StatusCode::kInvalidArgument, field, description);
}

// The field attached by FieldError, if any.
std::optional<std::string> ErrorField(const absl::Status& status);

// The description part (message without the "<field>: " prefix).
std::string ErrorDescription(const absl::Status& status);

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_COMMON_FIELD_ERROR_H_
