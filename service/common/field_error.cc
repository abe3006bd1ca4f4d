#include "service/common/field_error.h"

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "service/common/absl_compat.h"

namespace registrar {
namespace {
constexpr std::string_view kFieldPayloadUrl = "registrar.dev/field";
}  // namespace

absl::Status FieldError(absl::StatusCode code, std::string_view field,
                        std::string_view description) {
  absl::Status status(code, absl::StrCat(AsAbsl(field), ": ", AsAbsl(description)));
  status.SetPayload(AsAbsl(kFieldPayloadUrl), absl::Cord(AsAbsl(field)));
  return status;
}

std::optional<std::string> ErrorField(const absl::Status& status) {
  absl::optional<absl::Cord> field = status.GetPayload(AsAbsl(kFieldPayloadUrl));
  if (!field) return std::nullopt;
  return std::string(*field);
}

std::string ErrorDescription(const absl::Status& status) {
  std::string_view message = AsStd(status.message());
  if (std::optional<std::string> field = ErrorField(status)) {
    std::string prefix = absl::StrCat(*field, ": ");
    if (absl::StartsWith(AsAbsl(message), prefix)) message.remove_prefix(prefix.size());
  }
  return std::string(message);
}

}  // namespace registrar
