#ifndef REGISTRAR_SERVICE_MODEL_END_CAUSE_H_
#define REGISTRAR_SERVICE_MODEL_END_CAUSE_H_

#include <cstdint>
#include <string_view>

namespace registrar {

// Why records ended; a small closed set so it can label metrics.
enum class EndCause : uint8_t {
  kCleanupIds = 0,         // Cleanup naming IDs (and their cascades)
  kCleanupConnection = 1,  // Cleanup of a connection (and its cascade)
  kCleanupOwner = 2,       // Cleanup of everything an owner holds
  kLeaseRevoked = 3,       // RevokeLease
  kLeaseExpired = 4,       // lease TTL ran out
};
inline constexpr int kNumEndCauses = 5;

// Metric label / default end_reason: "cleanup_ids", "cleanup_connection",
// "cleanup_owner", "lease_revoked", "lease_expired".
std::string_view EndCauseName(EndCause cause);

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_MODEL_END_CAUSE_H_
