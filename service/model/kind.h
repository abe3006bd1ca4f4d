#ifndef REGISTRAR_SERVICE_MODEL_KIND_H_
#define REGISTRAR_SERVICE_MODEL_KIND_H_

#include <cstdint>
#include <string>
#include <string_view>

namespace registrar {

// What an ID names. Values 0-4 equal registrar.v1.Kind; kLease is internal
// (lease IDs share the codec but are not records).
enum class Kind : uint8_t {
  kUnspecified = 0,
  kThread = 1,
  kRun = 2,
  kRequest = 3,
  kConnection = 4,
  kLease = 5,
};

inline constexpr int kNumKinds = 6;

// True for the kinds that have records (thread, run, request, connection).
constexpr bool IsRecordKind(Kind kind) {
  return kind == Kind::kThread || kind == Kind::kRun ||
         kind == Kind::kRequest || kind == Kind::kConnection;
}

// Lowercase name for logs and metric labels: "thread", "run", "request",
// "connection", "lease", "unspecified".
std::string_view KindName(Kind kind);

// Kind of a record's parent: thread for a run, run for a request, else
// kUnspecified (no parent allowed).
Kind ParentKindOf(Kind kind);

// Record lifecycle; values equal registrar.v1.State.
enum class State : uint8_t {
  kUnspecified = 0,
  kLive = 1,
  kReleased = 2,
  kExpired = 3,
};

// Who a record belongs to. Both fields are validated (non-empty, bounded,
// printable UTF-8) at the RPC boundary before they reach the core.
struct Owner {
  std::string tenant;
  std::string user_id;

  friend bool operator==(const Owner&, const Owner&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const Owner& o) {
    return H::combine(std::move(h), o.tenant, o.user_id);
  }
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_MODEL_KIND_H_
