#ifndef REGISTRAR_SERVICE_API_METHOD_H_
#define REGISTRAR_SERVICE_API_METHOD_H_

// The one table of the server's methods (registrar.v1.Registrar and
// registrar.v1.Admin): each method's service and gRPC name, whether it
// changes state, which roles may call it, and its label in
// registrar_core_op_seconds{op}. Access control, the service's handlers and
// the metrics all read it; nothing else lists the methods.

#include <array>
#include <cstdint>
#include <string_view>

#include "service/auth/callers_file.h"

namespace registrar {

enum class Method : uint8_t {
  kIssue,
  kOpenContext,
  kValidate,
  kCleanup,
  kGrantLease,
  kKeepAlive,
  kRevokeLease,
  kDescribe,
  kListOwned,
  kWatch,
  kBackup,  // registrar.v1.Admin from here on
  kListLeases,
  kRevokeLeases,
};
inline constexpr int kNumMethods = 13;

inline constexpr std::string_view kRegistrarService = "registrar.v1.Registrar";
inline constexpr std::string_view kAdminService = "registrar.v1.Admin";

// A set of CallerRoles as bits (1 << role).
using RoleSet = uint8_t;
constexpr RoleSet Roles(CallerRole role) {
  return static_cast<RoleSet>(1u << static_cast<unsigned>(role));
}

struct MethodInfo {
  Method method;
  std::string_view service;  // kRegistrarService or kAdminService
  std::string_view name;     // gRPC method name, e.g. "OpenContext"
  bool changes_state;        // writes to the store when it succeeds
  RoleSet roles;             // roles that may call it (tenants checked apart)
  // Label in registrar_core_op_seconds{op}; empty for the Watch stream,
  // which is not one core operation, and for Backup (a store operation).
  std::string_view op_label;
};

// Who may call a method: admins everything; gateways the changing methods
// of the data API and Validate, for their tenants; readers the looking
// ones; the Admin service's methods admins only.
inline constexpr RoleSet kGatewaysAndAdmins =
    Roles(CallerRole::kGateway) | Roles(CallerRole::kAdmin);
inline constexpr RoleSet kReadersAndAdmins =
    Roles(CallerRole::kReader) | Roles(CallerRole::kAdmin);
inline constexpr RoleSet kAdminsOnly = Roles(CallerRole::kAdmin);
inline constexpr RoleSet kEveryRole =
    kGatewaysAndAdmins | Roles(CallerRole::kReader);

// Every method, in enum order: kMethods[static_cast<int>(m)].method == m.
inline constexpr std::array<MethodInfo, kNumMethods> kMethods = {{
    {Method::kIssue, kRegistrarService, "Issue", true, kGatewaysAndAdmins,
     "issue"},
    {Method::kOpenContext, kRegistrarService, "OpenContext", true,
     kGatewaysAndAdmins, "open_context"},
    {Method::kValidate, kRegistrarService, "Validate", false, kEveryRole,
     "validate"},
    {Method::kCleanup, kRegistrarService, "Cleanup", true, kGatewaysAndAdmins,
     "cleanup"},
    {Method::kGrantLease, kRegistrarService, "GrantLease", true,
     kGatewaysAndAdmins, "grant_lease"},
    {Method::kKeepAlive, kRegistrarService, "KeepAlive", true,
     kGatewaysAndAdmins, "keep_alive"},
    {Method::kRevokeLease, kRegistrarService, "RevokeLease", true,
     kGatewaysAndAdmins, "revoke_lease"},
    {Method::kDescribe, kRegistrarService, "Describe", false, kReadersAndAdmins,
     "describe"},
    {Method::kListOwned, kRegistrarService, "ListOwned", false,
     kReadersAndAdmins, "list_owned"},
    {Method::kWatch, kRegistrarService, "Watch", false, kReadersAndAdmins, ""},
    {Method::kBackup, kAdminService, "Backup", false, kAdminsOnly, ""},
    {Method::kListLeases, kAdminService, "ListLeases", false, kAdminsOnly,
     "list_leases"},
    {Method::kRevokeLeases, kAdminService, "RevokeLeases", true, kAdminsOnly,
     "revoke_leases"},
}};

constexpr bool MethodsInEnumOrder() {
  for (int i = 0; i < kNumMethods; ++i) {
    if (static_cast<int>(kMethods[i].method) != i) return false;
  }
  return true;
}
static_assert(MethodsInEnumOrder());

constexpr const MethodInfo& InfoOf(Method m) {
  return kMethods[static_cast<int>(m)];
}

// True when `role` may call `m` at all.
constexpr bool RoleAllows(CallerRole role, Method m) {
  return (InfoOf(m).roles & Roles(role)) != 0;
}

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_API_METHOD_H_
