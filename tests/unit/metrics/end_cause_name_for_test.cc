// Stand-in for registrar::EndCauseName, which the registry library defines
// (service/registry/observer.cc). Linked into this test only, so that
// registrar_metrics can be tested without the registry. Delete this file and
// link the registry target instead once it provides the definition.
#include "service/registry/observer.h"

namespace registrar {

std::string_view EndCauseName(EndCause cause) {
  switch (cause) {
    case EndCause::kCleanupIds:
      return "cleanup_ids";
    case EndCause::kCleanupConnection:
      return "cleanup_connection";
    case EndCause::kCleanupOwner:
      return "cleanup_owner";
    case EndCause::kLeaseRevoked:
      return "lease_revoked";
    case EndCause::kLeaseExpired:
      return "lease_expired";
  }
  return "unknown";
}

}  // namespace registrar
