#include "service/common/field_error.h"

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "service/common/absl_compat.h"

namespace registrar {
namespace {
constexpr std::string_view kFieldPayloadUrl = "registrar.dev/field";
constexpr std::string_view kQuotaPayloadUrl = "registrar.dev/quota_subject";
constexpr std::string_view kRetryPayloadUrl = "registrar.dev/retry_delay_ms";
constexpr std::string_view kLimitPayloadUrl = "registrar.dev/limit";
constexpr std::string_view kNotAppliedPayloadUrl = "registrar.dev/not_applied";
}  // namespace

absl::Status WithLimit(absl::Status status, Limit limit) {
  status.SetPayload(AsAbsl(kLimitPayloadUrl),
                    absl::Cord(std::string(1, static_cast<char>(limit))));
  return status;
}

std::optional<Limit> LimitOf(const absl::Status& status) {
  absl::optional<absl::Cord> payload =
      status.GetPayload(AsAbsl(kLimitPayloadUrl));
  if (!payload || payload->size() != 1) return std::nullopt;
  const auto value = static_cast<uint8_t>(std::string(*payload)[0]);
  if (value > static_cast<uint8_t>(Limit::kLast)) {
    return std::nullopt;
  }
  return static_cast<Limit>(value);
}

absl::Status QuotaExceeded(std::string_view subject,
                           std::string_view description,
                           absl::Duration retry_after) {
  absl::Status status(absl::StatusCode::kResourceExhausted,
                      AsAbsl(description));
  status.SetPayload(AsAbsl(kQuotaPayloadUrl), absl::Cord(AsAbsl(subject)));
  if (retry_after > absl::ZeroDuration()) {
    status.SetPayload(AsAbsl(kRetryPayloadUrl),
                      absl::Cord(absl::StrCat(absl::ToInt64Milliseconds(
                          absl::Ceil(retry_after, absl::Milliseconds(1))))));
  }
  return status;
}

absl::Status NotApplied(std::string_view description) {
  absl::Status status(absl::StatusCode::kUnavailable, AsAbsl(description));
  status.SetPayload(AsAbsl(kNotAppliedPayloadUrl), absl::Cord());
  return status;
}

bool IsNotApplied(const absl::Status& status) {
  return status.code() == absl::StatusCode::kUnavailable &&
         status.GetPayload(AsAbsl(kNotAppliedPayloadUrl)).has_value();
}

std::optional<std::string> QuotaSubject(const absl::Status& status) {
  absl::optional<absl::Cord> subject =
      status.GetPayload(AsAbsl(kQuotaPayloadUrl));
  if (!subject) return std::nullopt;
  return std::string(*subject);
}

std::optional<absl::Duration> RetryDelay(const absl::Status& status) {
  absl::optional<absl::Cord> ms = status.GetPayload(AsAbsl(kRetryPayloadUrl));
  int64_t value = 0;
  if (!ms || !absl::SimpleAtoi(std::string(*ms), &value)) return std::nullopt;
  return absl::Milliseconds(value);
}

absl::Status FieldError(absl::StatusCode code, std::string_view field,
                        std::string_view description) {
  absl::Status status(code,
                      absl::StrCat(AsAbsl(field), ": ", AsAbsl(description)));
  status.SetPayload(AsAbsl(kFieldPayloadUrl), absl::Cord(AsAbsl(field)));
  return status;
}

std::optional<std::string> ErrorField(const absl::Status& status) {
  absl::optional<absl::Cord> field =
      status.GetPayload(AsAbsl(kFieldPayloadUrl));
  if (!field) return std::nullopt;
  return std::string(*field);
}

std::string ErrorDescription(const absl::Status& status) {
  std::string_view message = AsStd(status.message());
  if (std::optional<std::string> field = ErrorField(status)) {
    std::string prefix = absl::StrCat(*field, ": ");
    if (absl::StartsWith(AsAbsl(message), prefix))
      message.remove_prefix(prefix.size());
  }
  return std::string(message);
}

}  // namespace registrar
