#ifndef REGISTRAR_SERVICE_API_ACCESS_CONTROL_H_
#define REGISTRAR_SERVICE_API_ACCESS_CONTROL_H_

// Who is calling and what they may do: authentication by mTLS certificate
// identity or bearer token against the callers table (--callers_file), and
// authorization by role and tenant, checked before a call does anything.
//
// Roles (see README, "Security"; the table is method.h's kMethods):
//   gateway  Issue, OpenContext, Validate, Cleanup, GrantLease, KeepAlive,
//            RevokeLease, for its tenants;
//   reader   Validate, Describe, ListOwned, Watch, for its tenants;
//   admin    everything, every tenant; the Admin service (Backup,
//            ListLeases, RevokeLeases) is the admins' alone.
// A refusal never says whether a record exists: Describe of an ID outside
// the caller's tenants and of an unknown ID both get PERMISSION_DENIED for a
// caller limited to some tenants.
//
// Without a callers table access control is off and every call passes (the
// server then listens on loopback only unless --allow_insecure).
//
// Thread-safe; SetCallers swaps the table whole (a reload), and a call keeps
// the table it authenticated against alive through its Caller pointer.

#include <memory>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/server_context.h"
#include "registrar/v1/registrar.pb.h"
#include "service/api/api_metrics.h"
#include "service/api/method.h"
#include "service/auth/callers_file.h"

namespace registrar {

using CallerPtr = std::shared_ptr<const Caller>;

// A tenant a request acts for, and where it says so.
struct TenantUse {
  std::string_view tenant;
  const char* field = "owner.tenant";  // for items: "owner.tenant" of item
  int item = -1;                       // index in `items`, or -1
};
std::vector<TenantUse> TenantsOf(const v1::IssueRequest& r);
std::vector<TenantUse> TenantsOf(const v1::OpenContextRequest& r);
std::vector<TenantUse> TenantsOf(const v1::ValidateRequest& r);
std::vector<TenantUse> TenantsOf(const v1::CleanupRequest& r);
std::vector<TenantUse> TenantsOf(const v1::ListOwnedRequest& r);
std::vector<TenantUse> TenantsOf(const v1::WatchRequest& r);
// Leases belong to callers, not tenants; Describe is checked on its record.
std::vector<TenantUse> TenantsOf(const v1::GrantLeaseRequest& r);
std::vector<TenantUse> TenantsOf(const v1::KeepAliveRequest& r);
std::vector<TenantUse> TenantsOf(const v1::RevokeLeaseRequest& r);
std::vector<TenantUse> TenantsOf(const v1::DescribeRequest& r);

class AccessControl {
 public:
  // `metrics` (nullable) counts refusals.
  explicit AccessControl(ApiMetrics* metrics) : metrics_(metrics) {}

  // Installs the callers table; null turns access control off.
  void SetCallers(std::shared_ptr<const CallerTable> table)
      ABSL_LOCKS_EXCLUDED(mu_);
  bool enabled() const ABSL_LOCKS_EXCLUDED(mu_);

  // The caller of this call, or null when access control is off.
  // UNAUTHENTICATED when no credential names a known caller: a client
  // certificate whose identity (any SAN) is listed wins, else the bearer
  // token in `authorization: Bearer <token>`.
  absl::StatusOr<CallerPtr> Authenticate(
      const grpc::ServerContextBase& ctx) const ABSL_LOCKS_EXCLUDED(mu_);

  // PERMISSION_DENIED unless `caller` (null: off, always OK) may call
  // `method` (its roles in method.h) for every tenant in `tenants` (from
  // TenantsOf). Watch without a tenant filter needs an all-tenant caller.
  // Describe's record tenant and a lease's grantor are checked later
  // (CheckTenant, the registry).
  absl::Status Authorize(const Caller* caller, Method method,
                         const std::vector<TenantUse>& tenants) const;

  // PERMISSION_DENIED unless `caller` (null: OK) may act for `tenant`.
  absl::Status CheckTenant(const Caller* caller, std::string_view tenant,
                           std::string_view field) const;

  // PERMISSION_DENIED "caller <name> (<role>) <what>", counted and logged.
  absl::Status Deny(const Caller& caller, std::string_view what) const;

 private:
  ApiMetrics* const metrics_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const CallerTable> table_ ABSL_GUARDED_BY(mu_);
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_API_ACCESS_CONTROL_H_
