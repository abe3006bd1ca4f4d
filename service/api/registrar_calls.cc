// What each method of registrar.v1.Registrar does with the registry once
// RegistrarService::Handle admitted the call (registrar_service.cc): the
// request checked against the API's limits, converted, handed to the
// registry, and its answer converted back.

#include <string>
#include <utility>
#include <vector>

#include "service/api/proto_conversion.h"
#include "service/api/registrar_service.h"
#include "service/api/request_validation.h"
#include "service/common/field_error.h"
#include "service/common/status_macros.h"

namespace registrar {

namespace {

void FillIssueResponse(std::vector<std::string> ids, v1::IssueResponse* resp) {
  resp->mutable_ids()->Reserve(ids.size());
  for (std::string& id : ids) resp->add_ids(std::move(id));
}

void FillOpenContextResponse(OpenContextResult result,
                             v1::OpenContextResponse* resp) {
  resp->set_thread_id(std::move(result.thread_id));
  resp->set_run_id(std::move(result.run_id));
  resp->set_request_id(std::move(result.request_id));
  resp->set_thread_reused(result.thread_reused);
}

// What a caller may learn of other tenants' records: nothing, for a caller
// scoped to some tenants (Registry::TenantFilter). The caller outlives the
// call and so every use of the filter.
Registry::TenantFilter VisibleTenants(const Caller* caller) {
  if (caller == nullptr || caller->all_tenants()) return {};
  return [caller](std::string_view tenant) {
    return caller->AllowsTenant(tenant);
  };
}

}  // namespace

void RegistrarService::DoIssueAsync(Registry& registry, const Caller* caller,
                                    const v1::IssueRequest& req,
                                    v1::IssueResponse* resp,
                                    absl::Time deadline, Finish finish) {
  if (absl::Status s = CheckIssue(req, limits_); !s.ok()) {
    std::move(finish)(std::move(s));
    return;
  }
  IssueSpec spec = IssueSpecFromProto(req);
  spec.lease_caller = LeaseCaller(caller);
  spec.deadline = deadline;
  registry.IssueAsync(
      spec, [resp, finish = std::move(finish)](
                absl::StatusOr<std::vector<std::string>> ids) mutable {
        if (ids.ok()) FillIssueResponse(*std::move(ids), resp);
        std::move(finish)(ids.status());
      });
}

void RegistrarService::DoOpenContextAsync(Registry& registry,
                                          const Caller* caller,
                                          const v1::OpenContextRequest& req,
                                          v1::OpenContextResponse* resp,
                                          absl::Time deadline, Finish finish) {
  if (absl::Status s = CheckOpenContext(req, limits_); !s.ok()) {
    std::move(finish)(std::move(s));
    return;
  }
  OpenContextSpec spec = OpenContextSpecFromProto(req);
  spec.deadline = deadline;
  registry.OpenContextAsync(
      spec, [resp, finish = std::move(finish)](
                absl::StatusOr<OpenContextResult> result) mutable {
        if (result.ok()) FillOpenContextResponse(*std::move(result), resp);
        std::move(finish)(result.status());
      });
}

absl::Status RegistrarService::DoValidate(Registry& registry,
                                          const Caller* caller,
                                          const v1::ValidateRequest& req,
                                          v1::ValidateResponse* resp) {
  RETURN_IF_ERROR(CheckValidate(req, limits_));
  const Owner default_owner = OwnerFromProto(req.owner());
  uint64_t verdicts[9] = {};
  const Registry::TenantFilter visible = VisibleTenants(caller);
  resp->mutable_results()->Reserve(req.items_size());
  for (const v1::ValidateItem& item : req.items()) {
    const Owner item_owner =
        item.has_owner() ? OwnerFromProto(item.owner()) : Owner{};
    const Owner& owner = item.has_owner() ? item_owner : default_owner;
    ValidateResult result =
        registry.Validate(item.id(), KindFromProto(item.expected_kind()), owner,
                          req.include_records(), visible);
    v1::ValidateResult* out = resp->add_results();
    // An unparseable ID is echoed only up to the ID size limit: the reply
    // must not amplify a hostile request.
    if (item.id().size() <= limits_.max_id_bytes) out->set_id(item.id());
    out->set_verdict(static_cast<v1::Verdict>(result.verdict));
    if (result.record) RecordToProto(*result.record, out->mutable_record());
    ++verdicts[static_cast<int>(result.verdict)];
  }
  if (metrics_) {
    for (int v = 1; v < 9; ++v) {
      if (verdicts[v] > 0) metrics_->CountVerdict(v, verdicts[v]);
    }
  }
  return absl::OkStatus();
}

void RegistrarService::DoCleanupAsync(Registry& registry, const Caller* caller,
                                      const v1::CleanupRequest& req,
                                      v1::CleanupResponse* resp,
                                      absl::Time deadline, Finish finish) {
  if (absl::Status s = CheckCleanup(req, limits_); !s.ok()) {
    std::move(finish)(std::move(s));
    return;
  }
  registry.CleanupAsync(
      OwnerFromProto(req.owner()), CleanupTargetFromProto(req), req.reason(),
      deadline,
      [this, resp, finish = std::move(finish)](
          absl::StatusOr<CleanupResult> result) mutable {
        if (result.ok()) {
          for (std::string& id : result->released) {
            resp->add_released(std::move(id));
          }
          for (std::string& id : result->already_ended) {
            resp->add_already_ended(std::move(id));
          }
          for (std::string& id : result->refused) {
            resp->add_refused(std::move(id));
          }
          for (std::string& id : result->unknown) {
            // Same rule as Validate: never echo an oversized
            // string back.
            if (id.size() <= limits_.max_id_bytes) {
              resp->add_unknown(std::move(id));
            }
          }
        }
        std::move(finish)(result.status());
      },
      VisibleTenants(caller));
}

void RegistrarService::DoGrantLeaseAsync(Registry& registry,
                                         const Caller* caller,
                                         const v1::GrantLeaseRequest& req,
                                         v1::GrantLeaseResponse* resp,
                                         absl::Time deadline, Finish finish) {
  if (absl::Status s = CheckGrantLease(req, limits_); !s.ok()) {
    std::move(finish)(std::move(s));
    return;
  }
  registry.GrantLeaseAsync(req.holder(), absl::Seconds(req.ttl_seconds()),
                           caller ? caller->name() : "", deadline,
                           [resp, finish = std::move(finish)](
                               absl::StatusOr<LeaseGrant> grant) mutable {
                             if (grant.ok()) {
                               resp->set_lease_id(std::move(grant->lease_id));
                               resp->set_ttl_seconds(static_cast<uint32_t>(
                                   absl::ToInt64Seconds(grant->ttl)));
                             }
                             std::move(finish)(grant.status());
                           });
}

absl::Status RegistrarService::DoKeepAlive(Registry& registry,
                                           const Caller* caller,
                                           const v1::KeepAliveRequest& req,
                                           v1::KeepAliveResponse* resp) {
  RETURN_IF_ERROR(CheckLeaseId(req.lease_id(), limits_));
  ASSIGN_OR_RETURN(absl::Duration ttl,
                   registry.KeepAlive(req.lease_id(), LeaseCaller(caller)));
  resp->set_lease_id(req.lease_id());
  resp->set_ttl_seconds(static_cast<uint32_t>(absl::ToInt64Seconds(ttl)));
  return absl::OkStatus();
}

void RegistrarService::DoRevokeLeaseAsync(Registry& registry,
                                          const Caller* caller,
                                          const v1::RevokeLeaseRequest& req,
                                          v1::RevokeLeaseResponse* resp,
                                          absl::Time deadline, Finish finish) {
  if (absl::Status s = CheckLeaseId(req.lease_id(), limits_); !s.ok()) {
    std::move(finish)(std::move(s));
    return;
  }
  registry.RevokeLeaseAsync(
      req.lease_id(), LeaseCaller(caller), deadline,
      [resp, finish = std::move(finish)](
          absl::StatusOr<std::vector<std::string>> released) mutable {
        if (released.ok()) {
          for (std::string& id : *released) resp->add_released(std::move(id));
        }
        std::move(finish)(released.status());
      });
}

absl::Status RegistrarService::DoDescribe(Registry& registry,
                                          const Caller* caller,
                                          const v1::DescribeRequest& req,
                                          v1::DescribeResponse* resp) {
  RETURN_IF_ERROR(CheckDescribe(req, limits_));
  absl::StatusOr<RecordView> record = registry.Describe(req.id());
  if (caller != nullptr && !caller->all_tenants() &&
      (record.ok() || absl::IsNotFound(record.status()))) {
    // Unknown and another tenant's record look the same to such a caller.
    if (!record.ok() || !caller->AllowsTenant(record->owner.tenant)) {
      return access_->Deny(*caller, "may not read a record with this id");
    }
  }
  if (!record.ok()) return record.status();
  RecordToProto(*record, resp->mutable_record());
  return absl::OkStatus();
}

absl::Status RegistrarService::DoListOwned(Registry& registry,
                                           const Caller* caller,
                                           const v1::ListOwnedRequest& req,
                                           v1::ListOwnedResponse* resp) {
  RETURN_IF_ERROR(CheckListOwned(req, limits_));
  ASSIGN_OR_RETURN(ListOwnedResult result,
                   registry.ListOwned(ListOwnedSpecFromProto(req)));
  for (const RecordView& r : result.records) {
    RecordToProto(r, resp->add_records());
  }
  resp->set_next_page_token(std::move(result.next_page_token));
  return absl::OkStatus();
}

}  // namespace registrar
