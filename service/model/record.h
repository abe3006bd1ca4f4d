#ifndef REGISTRAR_SERVICE_MODEL_RECORD_H_
#define REGISTRAR_SERVICE_MODEL_RECORD_H_

// A record as plain data: what the registry reports and what a store keeps.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "service/model/id128.h"
#include "service/model/kind.h"

namespace registrar {

// Caller-supplied labels, sorted by key.
using Labels = std::vector<std::pair<std::string, std::string>>;

// One record (a copy; never a reference into the registry).
struct RecordView {
  Id128 id;
  Kind kind = Kind::kUnspecified;
  Owner owner;
  Id128 parent;      // zero when none; its kind follows from `kind`
  Id128 connection;  // zero when none
  Id128 lease;       // zero when none
  std::shared_ptr<const Labels> labels;  // never null
  absl::Time created_at;
  absl::Time ended_at;  // InfinitePast while live
  State state = State::kUnspecified;
  uint64_t revision = 0;
  std::string end_reason;
};

// One shared empty label set, for records without labels.
const std::shared_ptr<const Labels>& EmptyLabels();

// A lease as kept by a store. Deadlines are not stored: every lease gets a
// fresh full TTL when a store is loaded, so a restart never mass-expires
// connections.
struct LeaseView {
  Id128 id;
  std::string holder;
  absl::Duration ttl;
  // The authenticated caller that granted it ("" without authentication).
  std::string grantor;
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_MODEL_RECORD_H_
