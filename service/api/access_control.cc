#include "service/api/access_control.h"

#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "service/common/absl_compat.h"
#include "service/common/text.h"
#include "spdlog/spdlog.h"

namespace registrar {
namespace {

constexpr char kSanProperty[] = "x509_subject_alternative_name";

std::vector<TenantUse> OwnerTenant(const v1::Owner& owner) {
  return {TenantUse{owner.tenant()}};
}

std::string FieldOf(const TenantUse& use) {
  if (use.item < 0) return use.field;
  return absl::StrCat("items[", use.item, "].", use.field);
}

}  // namespace

Rpc RpcOf(CoreOp op) {
  switch (op) {
    case CoreOp::kIssue:
      return Rpc::kIssue;
    case CoreOp::kOpenContext:
      return Rpc::kOpenContext;
    case CoreOp::kValidate:
      return Rpc::kValidate;
    case CoreOp::kCleanup:
      return Rpc::kCleanup;
    case CoreOp::kGrantLease:
      return Rpc::kGrantLease;
    case CoreOp::kKeepAlive:
      return Rpc::kKeepAlive;
    case CoreOp::kRevokeLease:
      return Rpc::kRevokeLease;
    case CoreOp::kDescribe:
      return Rpc::kDescribe;
    case CoreOp::kListOwned:
    case CoreOp::kTick:
      break;
  }
  return Rpc::kListOwned;
}

std::string_view RpcName(Rpc rpc) {
  switch (rpc) {
    case Rpc::kIssue:
      return "Issue";
    case Rpc::kOpenContext:
      return "OpenContext";
    case Rpc::kValidate:
      return "Validate";
    case Rpc::kCleanup:
      return "Cleanup";
    case Rpc::kGrantLease:
      return "GrantLease";
    case Rpc::kKeepAlive:
      return "KeepAlive";
    case Rpc::kRevokeLease:
      return "RevokeLease";
    case Rpc::kDescribe:
      return "Describe";
    case Rpc::kListOwned:
      return "ListOwned";
    case Rpc::kWatch:
      return "Watch";
    case Rpc::kBackup:
      return "Backup";
  }
  return "unknown";
}

bool RoleAllows(CallerRole role, Rpc rpc) {
  switch (role) {
    case CallerRole::kAdmin:
      return true;
    case CallerRole::kGateway:
      return rpc == Rpc::kIssue || rpc == Rpc::kOpenContext ||
             rpc == Rpc::kValidate || rpc == Rpc::kCleanup ||
             rpc == Rpc::kGrantLease || rpc == Rpc::kKeepAlive ||
             rpc == Rpc::kRevokeLease;
    case CallerRole::kReader:
      return rpc == Rpc::kValidate || rpc == Rpc::kDescribe ||
             rpc == Rpc::kListOwned || rpc == Rpc::kWatch;
  }
  return false;
}

std::vector<TenantUse> TenantsOf(const v1::IssueRequest& r) {
  return OwnerTenant(r.owner());
}
std::vector<TenantUse> TenantsOf(const v1::OpenContextRequest& r) {
  return OwnerTenant(r.owner());
}
std::vector<TenantUse> TenantsOf(const v1::CleanupRequest& r) {
  return OwnerTenant(r.owner());
}
std::vector<TenantUse> TenantsOf(const v1::ListOwnedRequest& r) {
  return OwnerTenant(r.owner());
}
std::vector<TenantUse> TenantsOf(const v1::ValidateRequest& r) {
  std::vector<TenantUse> out;
  if (r.has_owner()) out.push_back(TenantUse{r.owner().tenant()});
  for (int i = 0; i < r.items_size(); ++i) {
    if (r.items(i).has_owner()) {
      out.push_back(TenantUse{r.items(i).owner().tenant(), "owner.tenant", i});
    }
  }
  return out;
}
std::vector<TenantUse> TenantsOf(const v1::WatchRequest& r) {
  return {TenantUse{r.tenant(), "tenant"}};
}
std::vector<TenantUse> TenantsOf(const v1::GrantLeaseRequest&) { return {}; }
std::vector<TenantUse> TenantsOf(const v1::KeepAliveRequest&) { return {}; }
std::vector<TenantUse> TenantsOf(const v1::RevokeLeaseRequest&) { return {}; }
std::vector<TenantUse> TenantsOf(const v1::DescribeRequest&) { return {}; }

void AccessControl::SetCallers(std::shared_ptr<const CallerTable> table) {
  absl::MutexLock lock(&mu_);
  table_ = std::move(table);
}

bool AccessControl::enabled() const {
  absl::MutexLock lock(&mu_);
  return table_ != nullptr;
}

absl::StatusOr<CallerPtr> AccessControl::Authenticate(
    const grpc::ServerContextBase& ctx) const {
  std::shared_ptr<const CallerTable> table;
  {
    absl::MutexLock lock(&mu_);
    table = table_;
  }
  if (table == nullptr) return CallerPtr();
  // A verified client certificate (the TLS layer checked it against
  // --tls_client_ca) names its caller by any of its SANs.
  std::shared_ptr<const grpc::AuthContext> auth = ctx.auth_context();
  if (auth != nullptr && auth->IsPeerAuthenticated()) {
    for (const grpc::string_ref& san : auth->FindPropertyValues(kSanProperty)) {
      if (const Caller* c = table->FindByCertIdentity(
              std::string_view(san.data(), san.size()))) {
        return CallerPtr(table, c);
      }
    }
  }
  const auto& metadata = ctx.client_metadata();
  auto it = metadata.find("authorization");
  if (it == metadata.end()) {
    if (metrics_) metrics_->CountRejection(Rejection::kNoCredentials);
    return absl::UnauthenticatedError(
        "no credentials: present a client certificate listed in the callers "
        "file, or `authorization: Bearer <token>` metadata");
  }
  std::string_view value(it->second.data(), it->second.size());
  constexpr std::string_view kScheme = "bearer ";
  if (value.size() <= kScheme.size() ||
      !absl::EqualsIgnoreCase(AsAbsl(value.substr(0, kScheme.size())),
                              AsAbsl(kScheme))) {
    if (metrics_) metrics_->CountRejection(Rejection::kUnknownToken);
    return absl::UnauthenticatedError(
        "authorization metadata must be \"Bearer <token>\"");
  }
  if (const Caller* c = table->FindByToken(value.substr(kScheme.size()))) {
    return CallerPtr(table, c);
  }
  if (metrics_) metrics_->CountRejection(Rejection::kUnknownToken);
  // The token itself is never logged.
  spdlog::warn("unauthenticated call from {}: unknown bearer token",
               ctx.peer());
  return absl::UnauthenticatedError("unknown bearer token");
}

absl::Status AccessControl::Deny(const Caller& caller,
                                 std::string_view what) const {
  if (metrics_) metrics_->CountRejection(Rejection::kPermissionDenied);
  spdlog::info("permission denied: caller {} ({}) {}", caller.name(),
               CallerRoleName(caller.role()), what);
  return absl::PermissionDeniedError(
      absl::StrCat("caller ", caller.name(), " (",
                   AsAbsl(CallerRoleName(caller.role())), ") ", AsAbsl(what)));
}

absl::Status AccessControl::CheckTenant(const Caller* caller,
                                        std::string_view tenant,
                                        std::string_view field) const {
  if (caller == nullptr || caller->AllowsTenant(tenant)) {
    return absl::OkStatus();
  }
  return Deny(*caller,
              absl::StrCat("may not act for tenant \"", LogSafe(tenant), "\" (",
                           AsAbsl(field), ")"));
}

absl::Status AccessControl::Authorize(
    const Caller* caller, Rpc rpc,
    const std::vector<TenantUse>& tenants) const {
  if (caller == nullptr) return absl::OkStatus();
  if (!RoleAllows(caller->role(), rpc)) {
    return Deny(*caller, absl::StrCat("may not call ", AsAbsl(RpcName(rpc))));
  }
  if (rpc == Rpc::kWatch && !caller->all_tenants() &&
      (tenants.empty() || tenants.front().tenant.empty())) {
    return Deny(*caller,
                "may watch only its own tenants: set `tenant` to one of them");
  }
  for (const TenantUse& use : tenants) {
    if (!caller->AllowsTenant(use.tenant)) {
      return CheckTenant(caller, use.tenant, FieldOf(use));
    }
  }
  return absl::OkStatus();
}

}  // namespace registrar
