#ifndef REGISTRAR_SERVICE_COMMON_FIELD_ERROR_H_
#define REGISTRAR_SERVICE_COMMON_FIELD_ERROR_H_

// Errors that name the request field at fault. The core returns them as
// plain absl::Status; the RPC layer turns the attached field name into a
// google.rpc.BadRequest field violation.

#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace registrar {

// Status with `code`, message "<field>: <description>" and the field name
// attached as a payload.
absl::Status FieldError(absl::StatusCode code, std::string_view field,
                        std::string_view description);

inline absl::Status InvalidField(std::string_view field,
                                 std::string_view description) {
  return FieldError(absl::StatusCode::kInvalidArgument, field, description);
}

// RESOURCE_EXHAUSTED for a limit that is not a request field (a caller's
// request rate, the server's in-flight bound). The RPC layer reports
// `subject` in a google.rpc.QuotaFailure and, when `retry_after` > 0, a
// google.rpc.RetryInfo: the call did nothing and may be repeated then.
absl::Status QuotaExceeded(std::string_view subject,
                           std::string_view description,
                           absl::Duration retry_after);
// UNAVAILABLE for a call this server did nothing with (a cluster replica
// that could not pass a change on to the writer): the RPC layer adds a
// google.rpc.ErrorInfo {domain "registrar.dev", reason "NOT_APPLIED"}, so
// clients may repeat any call, on this replica or another
// (grpc_status::IsNotApplied in client/rpc_status.h).
absl::Status NotApplied(std::string_view description);
bool IsNotApplied(const absl::Status& status);

// What QuotaExceeded attached, if anything.
std::optional<std::string> QuotaSubject(const absl::Status& status);
std::optional<absl::Duration> RetryDelay(const absl::Status& status);

// A server setting that bounds a call. The core says what the limit is
// ("limit is 1000") and tags the status with which one; the server, which
// knows how it was configured, names the setting (the API layer appends
// the flag: ToGrpcStatus in service/api/status_conversion.h).
enum class Limit : uint8_t {
  kOwnerQuota,            // live records per owner
  kMaxBatch,              // IDs per call
  kLeaseTtl,              // lease TTL bounds
  kCallDeadline,          // the server's own call deadline
  kMaxWatchers,           // Watch streams in all
  kMaxWatchersPerTenant,  // Watch streams per tenant
  kMaxWatchersPerCaller,  // Watch streams per caller
  kEtcdMaxTxnOps,         // changes in one etcd transaction
  kEtcdMaxRequestBytes,   // bytes of one etcd request
  // Start-up settings a store's refusal to open depends on.
  kNodeId,          // the node id a data dir belongs to
  kAcceptDataLoss,  // serving what is left of a damaged store
  kTagKey,          // the tag key a data dir's IDs were signed with
  kLast = kTagKey,
};
// `status` tagged with `limit`.
absl::Status WithLimit(absl::Status status, Limit limit);
// The limit WithLimit tagged, if any.
std::optional<Limit> LimitOf(const absl::Status& status);

// The field attached by FieldError, if any.
std::optional<std::string> ErrorField(const absl::Status& status);

// The description part (message without the "<field>: " prefix).
std::string ErrorDescription(const absl::Status& status);

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_COMMON_FIELD_ERROR_H_
