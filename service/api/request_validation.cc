#include "service/api/request_validation.h"

#include "absl/strings/str_cat.h"
#include "service/common/absl_compat.h"
#include "service/common/field_error.h"
#include "service/common/status_macros.h"
#include "service/common/text.h"
#include "service/model/kind.h"

namespace registrar {
namespace {

// Field path text: "items[3].owner".
std::string Path(std::string_view base, std::string_view leaf) {
  return absl::StrCat(AsAbsl(base), ".", AsAbsl(leaf));
}

absl::Status CheckText(std::string_view value, std::string_view field,
                       uint32_t max_bytes, bool required) {
  if (value.empty()) {
    return required ? InvalidField(field, "is required") : absl::OkStatus();
  }
  if (value.size() > max_bytes) {
    return InvalidField(field, absl::StrCat("is ", value.size(),
                                            " bytes, limit is ", max_bytes));
  }
  if (!IsPrintableUtf8(value)) {
    return InvalidField(field,
                        "must be printable UTF-8 without control characters");
  }
  return absl::OkStatus();
}

// ID text fields are parsed by the core; here only their size is bounded so
// no oversized string is carried further.
absl::Status CheckIdField(std::string_view value, std::string_view field,
                          const ApiLimits& limits) {
  if (value.size() > limits.max_id_bytes) {
    return InvalidField(field,
                        absl::StrCat("is ", value.size(), " bytes, limit is ",
                                     limits.max_id_bytes));
  }
  return absl::OkStatus();
}

absl::Status CheckLabels(
    const google::protobuf::Map<std::string, std::string>& labels,
    std::string_view field, const ApiLimits& limits) {
  if (labels.size() > limits.max_labels) {
    return InvalidField(
        field, absl::StrCat("has ", labels.size(), " labels, limit is ",
                            limits.max_labels));
  }
  for (const auto& [key, value] : labels) {
    const std::string key_field = absl::StrCat(AsAbsl(field), "[key]");
    RETURN_IF_ERROR(CheckText(key, key_field, limits.max_label_key_bytes,
                              /*required=*/true));
    RETURN_IF_ERROR(CheckText(
        value, absl::StrCat(AsAbsl(field), "[\"", LogSafe(key), "\"]"),
        limits.max_string_bytes, /*required=*/false));
  }
  return absl::OkStatus();
}

absl::Status CheckKind(int kind, std::string_view field, bool required) {
  if (kind == v1::KIND_UNSPECIFIED && !required) return absl::OkStatus();
  // Proto enums are open: any int may arrive; IsRecordKind names the four.
  if (kind < 0 || kind >= kNumKinds || !IsRecordKind(static_cast<Kind>(kind))) {
    return InvalidField(
        field, absl::StrCat("must be KIND_THREAD, KIND_RUN, KIND_REQUEST or "
                            "KIND_CONNECTION, got ",
                            kind));
  }
  return absl::OkStatus();
}

absl::Status BatchTooLarge(std::string_view field, size_t n, uint32_t limit) {
  return FieldError(
      absl::StatusCode::kResourceExhausted, field,
      absl::StrCat("has ", n, " entries, limit is ", limit, " (--max_batch)"));
}

}  // namespace

absl::Status CheckOwner(const v1::Owner& owner, std::string_view field,
                        const ApiLimits& limits) {
  RETURN_IF_ERROR(CheckText(owner.tenant(), Path(field, "tenant"),
                            limits.max_string_bytes, /*required=*/true));
  return CheckText(owner.user_id(), Path(field, "user_id"),
                   limits.max_string_bytes, /*required=*/true);
}

absl::Status CheckIssue(const v1::IssueRequest& r, const ApiLimits& limits) {
  RETURN_IF_ERROR(CheckKind(r.kind(), "kind", /*required=*/true));
  RETURN_IF_ERROR(CheckOwner(r.owner(), "owner", limits));
  if (r.count() > limits.max_batch) {
    return FieldError(absl::StatusCode::kResourceExhausted, "count",
                      absl::StrCat("is ", r.count(), ", limit is ",
                                   limits.max_batch, " (--max_batch)"));
  }
  RETURN_IF_ERROR(CheckIdField(r.parent_id(), "parent_id", limits));
  RETURN_IF_ERROR(CheckIdField(r.connection_id(), "connection_id", limits));
  RETURN_IF_ERROR(CheckIdField(r.lease_id(), "lease_id", limits));
  return CheckLabels(r.labels(), "labels", limits);
}

absl::Status CheckOpenContext(const v1::OpenContextRequest& r,
                              const ApiLimits& limits) {
  RETURN_IF_ERROR(CheckOwner(r.owner(), "owner", limits));
  RETURN_IF_ERROR(CheckIdField(r.thread_id(), "thread_id", limits));
  RETURN_IF_ERROR(CheckIdField(r.connection_id(), "connection_id", limits));
  return CheckLabels(r.labels(), "labels", limits);
}

absl::Status CheckValidate(const v1::ValidateRequest& r,
                           const ApiLimits& limits) {
  if (static_cast<uint32_t>(r.items_size()) > limits.max_batch) {
    return BatchTooLarge("items", r.items_size(), limits.max_batch);
  }
  if (r.items_size() == 0) return InvalidField("items", "is empty");
  const bool has_default = r.has_owner();
  if (has_default) RETURN_IF_ERROR(CheckOwner(r.owner(), "owner", limits));
  for (int i = 0; i < r.items_size(); ++i) {
    const v1::ValidateItem& item = r.items(i);
    const std::string base = absl::StrCat("items[", i, "]");
    RETURN_IF_ERROR(CheckKind(item.expected_kind(), Path(base, "expected_kind"),
                              /*required=*/false));
    if (item.has_owner()) {
      RETURN_IF_ERROR(CheckOwner(item.owner(), Path(base, "owner"), limits));
    } else if (!has_default) {
      return InvalidField(Path(base, "owner"),
                          "is required when the request has no owner");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckCleanup(const v1::CleanupRequest& r,
                          const ApiLimits& limits) {
  RETURN_IF_ERROR(CheckOwner(r.owner(), "owner", limits));
  RETURN_IF_ERROR(
      CheckText(r.reason(), "reason", limits.max_string_bytes, false));
  switch (r.target_case()) {
    case v1::CleanupRequest::kIds:
      if (static_cast<uint32_t>(r.ids().ids_size()) > limits.max_batch) {
        return BatchTooLarge("ids.ids", r.ids().ids_size(), limits.max_batch);
      }
      // Oversized IDs are reported `unknown` by the core, like any other
      // text that is not an ID: they name nothing.
      return absl::OkStatus();
    case v1::CleanupRequest::kConnectionId:
      if (r.connection_id().empty()) {
        return InvalidField("connection_id", "is required");
      }
      return CheckIdField(r.connection_id(), "connection_id", limits);
    case v1::CleanupRequest::kAllOwned:
      if (!r.all_owned()) {
        return InvalidField("all_owned", "must be true when set");
      }
      return absl::OkStatus();
    case v1::CleanupRequest::TARGET_NOT_SET:
      break;
  }
  return InvalidField("target",
                      "one of ids, connection_id or all_owned is "
                      "required");
}

absl::Status CheckGrantLease(const v1::GrantLeaseRequest& r,
                             const ApiLimits& limits) {
  RETURN_IF_ERROR(CheckHolder(r.holder(), /*required=*/true, limits));
  if (r.ttl_seconds() == 0) return InvalidField("ttl_seconds", "is required");
  return absl::OkStatus();
}

absl::Status CheckLeaseId(const std::string& lease_id,
                          const ApiLimits& limits) {
  if (lease_id.empty()) return InvalidField("lease_id", "is required");
  return CheckIdField(lease_id, "lease_id", limits);
}

absl::Status CheckDescribe(const v1::DescribeRequest& r,
                           const ApiLimits& limits) {
  if (r.id().empty()) return InvalidField("id", "is required");
  return CheckIdField(r.id(), "id", limits);
}

absl::Status CheckListOwned(const v1::ListOwnedRequest& r,
                            const ApiLimits& limits) {
  RETURN_IF_ERROR(CheckOwner(r.owner(), "owner", limits));
  RETURN_IF_ERROR(CheckKind(r.kind(), "kind", /*required=*/false));
  return CheckPageToken(r.page_token(), limits);
}

absl::Status CheckHolder(std::string_view holder, bool required,
                         const ApiLimits& limits) {
  return CheckText(holder, "holder", limits.max_string_bytes, required);
}

absl::Status CheckPageToken(std::string_view page_token,
                            const ApiLimits& limits) {
  if (page_token.size() > limits.max_page_token_bytes) {
    return InvalidField(
        "page_token",
        absl::StrCat("is ", page_token.size(), " bytes, limit is ",
                     limits.max_page_token_bytes));
  }
  return absl::OkStatus();
}

}  // namespace registrar
