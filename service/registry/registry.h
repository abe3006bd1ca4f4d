#ifndef REGISTRAR_SERVICE_REGISTRY_REGISTRY_H_
#define REGISTRAR_SERVICE_REGISTRY_REGISTRY_H_

// The ownership registry: the plain C++ core the RPC layer calls.
//
// Records are keyed by their 128-bit ID and held in shards chosen by owner,
// so every rule that relates two records (parent, connection, cascade,
// quota) is checked and applied under one shard's mutex, and callers for
// different owners run in parallel. Leases live in a Lessor beside the
// shards. Ended records stay as tombstones for `tombstone_retention` so
// Validate can say RELEASED/EXPIRED, then Tick() drops them.
//
// Rules:
//  1. Ownership is a record: nothing is ever matched by ID text patterns.
//     A record is touched only on behalf of its owner (Cleanup), its lease
//     (RevokeLease, expiry) or an operator (Describe reads only).
//  2. A run's parent is a live thread of the same owner; a request's parent
//     is a live run of the same owner (both optional). A record may name the
//     live connection of the same owner it was opened through.
//  3. Releasing a record releases its live descendants: a thread its runs,
//     a run its requests, a connection every run and request opened through
//     it (threads outlive connections).
//  4. Every live record counts against its owner's quota.
//
// Thread-safe. Returned errors name the request field at fault (see
// service/common/field_error.h).

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "service/common/clock.h"
#include "service/common/kind.h"
#include "service/id/id.h"
#include "service/id/id_generator.h"
#include "service/registry/lessor.h"
#include "service/registry/observer.h"

namespace registrar {

namespace registry_internal {
struct Shard;
struct Ended;
// Registry-wide counters, shared by all shards.
struct Counters {
  std::atomic<uint64_t> revision{0};
  std::atomic<uint64_t> live[kNumKinds] = {};
  std::atomic<uint64_t> tombstones{0};
};
}  // namespace registry_internal

// Caller-supplied labels, sorted by key.
using Labels = std::vector<std::pair<std::string, std::string>>;

struct RegistryOptions {
  uint32_t shards = 16;
  // Most IDs one Issue mints, items one Validate checks, ids one Cleanup names.
  uint32_t max_batch = 1000;
  // Most live records one owner may hold.
  uint64_t owner_quota = 100'000;
  absl::Duration tombstone_retention = absl::Hours(1);
  absl::Duration min_lease_ttl = absl::Seconds(1);
  absl::Duration max_lease_ttl = absl::Hours(24);
  uint32_t default_page_size = 100;
  uint32_t max_page_size = 1000;
};

// Verdict values; equal to registrar.v1.Verdict.
enum class Verdict : uint8_t {
  kUnspecified = 0,
  kValid = 1,
  kMalformed = 2,
  kWrongKind = 3,
  kForged = 4,
  kUnknown = 5,
  kNotOwner = 6,
  kReleased = 7,
  kExpired = 8,
};

// A copy of one record, as Describe/Validate/ListOwned return it.
struct RecordView {
  Id128 id;
  Kind kind = Kind::kUnspecified;
  Owner owner;
  Id128 parent;      // zero when none; kind follows from `kind`
  Id128 connection;  // zero when none
  Id128 lease;       // zero when none
  std::shared_ptr<const Labels> labels;  // never null
  absl::Time created_at;
  absl::Time ended_at;  // InfinitePast while live
  State state = State::kUnspecified;
  uint64_t revision = 0;
  std::string end_reason;
};

// Text form of a record's parent ID ("" when none).
std::string ParentIdText(const RecordView& r);

struct IssueSpec {
  Kind kind = Kind::kUnspecified;
  Owner owner;
  uint32_t count = 1;
  std::string_view parent_id;      // optional text
  std::string_view connection_id;  // optional text
  std::string_view lease_id;       // optional text; connections only
  Labels labels;
};

struct OpenContextSpec {
  Owner owner;
  std::string_view thread_id;      // optional: reused if live and owned
  std::string_view connection_id;  // optional
  Labels labels;
};

struct OpenContextResult {
  std::string thread_id;
  std::string run_id;
  std::string request_id;
  bool thread_reused = false;
};

struct ValidateResult {
  Verdict verdict = Verdict::kUnspecified;
  // Set when asked for and a record of the claimed owner exists.
  std::optional<RecordView> record;
};

struct CleanupTarget {
  enum class Type { kIds, kConnection, kAllOwned };
  Type type = Type::kIds;
  std::vector<std::string_view> ids;  // kIds
  std::string_view connection_id;     // kConnection
};

struct CleanupResult {
  std::vector<std::string> released;
  std::vector<std::string> already_ended;
  std::vector<std::string> refused;
  std::vector<std::string> unknown;
};

struct LeaseGrant {
  std::string lease_id;
  absl::Duration ttl;
};

struct ListOwnedSpec {
  Owner owner;
  Kind kind = Kind::kUnspecified;  // unspecified: every kind
  bool include_ended = false;
  uint32_t page_size = 0;  // 0: default
  std::string_view page_token;
};

struct ListOwnedResult {
  std::vector<RecordView> records;
  std::string next_page_token;  // empty on the last page
};

class Registry {
 public:
  // `clock`, `ids` and `observer` (nullable) must outlive the registry.
  Registry(const RegistryOptions& options, const Clock& clock,
           IdGenerator& ids, RegistryObserver* observer);
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Mints spec.count IDs and records them. InvalidArgument for a missing or
  // misplaced field; ResourceExhausted beyond max_batch or the owner quota;
  // FailedPrecondition for a parent/connection/lease that is not live and
  // the owner's. Nothing is recorded unless everything is.
  absl::StatusOr<std::vector<std::string>> Issue(const IssueSpec& spec);

  // Reuses spec.thread_id when it is a live thread of the owner, else mints
  // a thread; then mints a run under it and a request under the run, all in
  // one step. FailedPrecondition for a connection that is not live and the
  // owner's; ResourceExhausted over quota.
  absl::StatusOr<OpenContextResult> OpenContext(const OpenContextSpec& spec);

  // The verdict for one ID claimed by `owner` (see design: MALFORMED,
  // WRONG_KIND, then by record, then by tag). Never fails.
  ValidateResult Validate(std::string_view id, Kind expected_kind,
                          const Owner& owner, bool want_record) const;

  // Ends records of `owner` (with their cascades). Idempotent; records of
  // other owners are reported refused and never touched. InvalidArgument
  // only for a connection_id that is not a connection ID, or over max_batch.
  absl::StatusOr<CleanupResult> Cleanup(const Owner& owner,
                                        const CleanupTarget& target,
                                        std::string_view reason);

  // Leases. InvalidArgument for a TTL outside [min_lease_ttl, max_lease_ttl]
  // or an empty holder; NotFound for a lease that is not live.
  absl::StatusOr<LeaseGrant> GrantLease(std::string_view holder,
                                        absl::Duration ttl);
  absl::StatusOr<absl::Duration> KeepAlive(std::string_view lease_id);
  // Ends the lease and everything bound to it; returns the IDs it ended.
  absl::StatusOr<std::vector<std::string>> RevokeLease(
      std::string_view lease_id);

  // The record of an ID. InvalidArgument when the text does not parse,
  // NotFound when no record of that kind is held.
  absl::StatusOr<RecordView> Describe(std::string_view id) const;

  // An owner's records in ID order, paginated.
  absl::StatusOr<ListOwnedResult> ListOwned(const ListOwnedSpec& spec) const;

  // Expires due leases (ending their connections as EXPIRED) and drops
  // tombstones past retention. Call periodically; returns IDs it expired.
  std::vector<std::string> Tick();

  RegistryStats Stats() const;
  const RegistryOptions& options() const { return options_; }

 private:
  using Shard = registry_internal::Shard;
  using Ended = registry_internal::Ended;

  uint32_t ShardIndex(const Owner& owner) const;
  Shard& ShardFor(const Owner& owner) const;

  // Looks an ID up in every shard but `skip` (null: all shards), for
  // NOT_OWNER/refused answers. Kind of the record found, or kUnspecified.
  Kind FindElsewhere(Id128 id, const Shard* skip) const;

  // Ends every live connection a lease carried (and their cascades).
  void EndLeaseConnections(const EndedLease& lease, Ended& ended);
  // Tells the observer what a call ended.
  void Report(const Ended& ended);
  absl::Time Now() const { return clock_.Now(); }

  const RegistryOptions options_;
  const Clock& clock_;
  IdGenerator& ids_;
  RegistryObserver* const observer_;
  std::vector<std::unique_ptr<Shard>> shards_;
  Lessor lessor_;
  registry_internal::Counters counters_;
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_REGISTRY_REGISTRY_H_
