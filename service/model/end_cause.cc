#include "service/model/end_cause.h"

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
