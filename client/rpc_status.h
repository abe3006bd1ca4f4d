#ifndef REGISTRAR_CLIENT_RPC_STATUS_H_
#define REGISTRAR_CLIENT_RPC_STATUS_H_

// Conversion of gRPC statuses into absl::Status for Registrar clients, and
// readers for the rich error details the server attaches (google.rpc.Status
// in the `grpc-status-details-bin` trailer: BadRequest, RetryInfo, ...).
// All functions are pure and thread-safe.

#include <optional>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/support/status.h"

namespace registrar::grpc_status {

// Payload type URL under which the serialized google.rpc.Status (the raw
// `grpc-status-details-bin` bytes) is stored in a converted absl::Status.
inline constexpr char kDetailsTypeUrl[] =
    "type.googleapis.com/google.rpc.Status";

// The one grpc::Status -> absl::Status conversion: same code (the numeric
// values are identical), same message, and grpc::Status::error_details()
// (if non-empty) as the payload under kDetailsTypeUrl. OK maps to OkStatus.
absl::Status ToAbsl(const grpc::Status& status);

// The google.rpc.Status carried by `status`, if it has a kDetailsTypeUrl
// payload that parses; nullopt otherwise (including for OK).
std::optional<google::rpc::Status> GetDetails(const absl::Status& status);

// The first google.rpc.BadRequest among the details, if any. The server sends
// one with INVALID_ARGUMENT, naming each offending request field.
std::optional<google::rpc::BadRequest> GetBadRequest(
    const absl::Status& status);

// The first google.rpc.QuotaFailure among the details, if any. The server
// sends one with RESOURCE_EXHAUSTED, naming the limit that was hit (a
// request field, the caller's request rate, the owner's live-record quota,
// the server's in-flight bound).
std::optional<google::rpc::QuotaFailure> GetQuotaFailure(
    const absl::Status& status);

// The delay of the first google.rpc.RetryInfo among the details, if any
// (negative delays are clamped to zero).
std::optional<absl::Duration> GetRetryDelay(const absl::Status& status);

// True for RESOURCE_EXHAUSTED carrying a RetryInfo: the server rejected the
// call before doing anything (rate limit, overload), so any call, even one
// that mints or ends records, may be repeated after GetRetryDelay(status).
// RESOURCE_EXHAUSTED without RetryInfo (a quota, a batch limit) is not: the
// same call would fail again.
bool IsRetryableThrottle(const absl::Status& status);

// The google.rpc.ErrorInfo domain and reason a Registrar replica sends with
// UNAVAILABLE when it did nothing with the call (a cluster replica that
// could not pass a change on to the cluster's writer): any call, even one
// that mints or ends records, may be repeated, on this replica or another.
inline constexpr char kErrorDomain[] = "registrar.dev";
inline constexpr char kReasonNotApplied[] = "NOT_APPLIED";

// The first google.rpc.ErrorInfo among the details, if any.
std::optional<google::rpc::ErrorInfo> GetErrorInfo(const absl::Status& status);

// True for UNAVAILABLE with ErrorInfo {kErrorDomain, kReasonNotApplied}.
// A bare UNAVAILABLE is not: the server may have acted before the reply was
// lost.
bool IsNotApplied(const absl::Status& status);

}  // namespace registrar::grpc_status

#endif  // REGISTRAR_CLIENT_RPC_STATUS_H_
