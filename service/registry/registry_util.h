#ifndef REGISTRAR_SERVICE_REGISTRY_REGISTRY_UTIL_H_
#define REGISTRAR_SERVICE_REGISTRY_REGISTRY_UTIL_H_

// Helpers the registry's files share (registry.cc, registry_end.cc,
// registry_recovery.cc). Internal to service/registry.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "service/common/absl_compat.h"
#include "service/common/field_error.h"
#include "service/id/id.h"
#include "service/model/kind.h"
#include "service/registry/observer.h"

namespace registrar::registry_internal {

// Parses an optional reference field: zero Id128 when empty. InvalidArgument
// naming `field` when the text is not an ID of kind `want`.
inline absl::StatusOr<Id128> ParseReference(std::string_view field,
                                            std::string_view text, Kind want) {
  if (text.empty()) return Id128{};
  absl::StatusOr<ParsedId> parsed = ParseId(text);
  if (!parsed.ok()) {
    return InvalidField(field, AsStd(parsed.status().message()));
  }
  if (parsed->kind != want) {
    return InvalidField(
        field,
        absl::StrCat("must be a ", AsAbsl(KindPrefix(want)), "_ ID, got a ",
                     AsAbsl(KindPrefix(parsed->kind)), "_ ID"));
  }
  return parsed->bits;
}

// Where a page starts: after the ID a page token names (zero Id128 for
// the first page). InvalidArgument for a token this server did not issue.
inline absl::StatusOr<Id128> PageStart(std::string_view page_token) {
  if (page_token.empty()) return Id128{};
  absl::StatusOr<Id128> decoded = DecodeSuffix(page_token);
  if (!decoded.ok()) {
    return InvalidField("page_token", "is not a token this server issued");
  }
  return *decoded;
}

inline std::shared_ptr<const std::string> ReasonFor(EndCause cause,
                                                    std::string_view reason) {
  return std::make_shared<const std::string>(
      reason.empty() ? std::string(EndCauseName(cause)) : std::string(reason));
}

// Runs an asynchronous call and waits for its answer. Never from a store
// completion (its own commit could be queued behind the caller).
template <typename Result, typename Start>
Result Await(Start start) {
  std::optional<Result> result;
  absl::Notification answered;
  start([&](Result r) {
    result.emplace(std::move(r));
    answered.Notify();
  });
  answered.WaitForNotification();
  return *std::move(result);
}

}  // namespace registrar::registry_internal

#endif  // REGISTRAR_SERVICE_REGISTRY_REGISTRY_UTIL_H_
