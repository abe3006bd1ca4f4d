#ifndef REGISTRAR_SERVICE_API_REQUEST_VALIDATION_H_
#define REGISTRAR_SERVICE_API_REQUEST_VALIDATION_H_

// Checks every request before it reaches the core. A request that fails a
// check changes nothing: the RPC answers INVALID_ARGUMENT (or
// RESOURCE_EXHAUSTED for a batch over its limit) naming the field and the
// limit. Validate's IDs are the exception: a bad ID is a MALFORMED verdict,
// never a failed batch.

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "registrar/v1/registrar.pb.h"
#include "service/common/text.h"  // IsPrintableUtf8, used with these checks

namespace registrar {

// Explicit, configurable limits (flags in service/server/flags.cc).
struct ApiLimits {
  // tenant, user_id, holder, reason, label values.
  uint32_t max_string_bytes = 256;
  // ID fields other than Validate items (parent_id, thread_id, ...).
  uint32_t max_id_bytes = 64;
  uint32_t max_labels = 32;
  uint32_t max_label_key_bytes = 64;
  // Issue count, Validate items, Cleanup ids.
  uint32_t max_batch = 1000;
  uint32_t max_page_token_bytes = 64;
  // Unary calls being handled at once; beyond it RESOURCE_EXHAUSTED with a
  // retry delay instead of an unbounded queue (0: no bound).
  uint32_t max_in_flight = 4096;
  // Longest a call may wait before its work starts (in the commit queue),
  // whatever deadline the client set or did not set; past it (or past the
  // client's deadline) the call ends DEADLINE_EXCEEDED having done nothing.
  absl::Duration call_timeout = absl::Seconds(30);
};

// Checks an Owner at `field` ("owner", "items[3].owner"): both parts
// non-empty, at most max_string_bytes, printable UTF-8.
absl::Status CheckOwner(const v1::Owner& owner, std::string_view field,
                        const ApiLimits& limits);

absl::Status CheckIssue(const v1::IssueRequest& r, const ApiLimits& limits);
absl::Status CheckOpenContext(const v1::OpenContextRequest& r,
                              const ApiLimits& limits);
// Does not check item IDs (those get verdicts); does check item owners,
// expected kinds and the batch size.
absl::Status CheckValidate(const v1::ValidateRequest& r,
                           const ApiLimits& limits);
absl::Status CheckCleanup(const v1::CleanupRequest& r, const ApiLimits& limits);
absl::Status CheckGrantLease(const v1::GrantLeaseRequest& r,
                             const ApiLimits& limits);
absl::Status CheckLeaseId(const std::string& lease_id, const ApiLimits& limits);
// A lease holder (GrantLease, Admin.ListLeases, Admin.RevokeLeases): at
// most max_string_bytes of printable UTF-8; `required`: not empty.
absl::Status CheckHolder(std::string_view holder, bool required,
                         const ApiLimits& limits);
// A page token at most max_page_token_bytes long (ListOwned, ListLeases).
absl::Status CheckPageToken(std::string_view page_token,
                            const ApiLimits& limits);
absl::Status CheckDescribe(const v1::DescribeRequest& r,
                           const ApiLimits& limits);
absl::Status CheckListOwned(const v1::ListOwnedRequest& r,
                            const ApiLimits& limits);

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_API_REQUEST_VALIDATION_H_
