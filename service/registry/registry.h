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
// Durability: every change is committed to the Store as one atomic batch per
// call (a lease end or a cleanup across shards included) before it is
// applied in memory and before the call is answered, so an acknowledged
// change is as durable as the store makes it, and a change the store
// refuses (UNAVAILABLE, DEADLINE_EXCEEDED) changes nothing. Every change
// takes the one path of shard.h: admit and stage under the shard lock,
// commit with no registry lock held, apply or roll back on the store's
// completion, answer. No store call is made under a registry lock.
//
// Thread-safe. Returned errors name the request field at fault (see
// service/common/field_error.h).

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/functional/any_invocable.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "service/common/clock.h"
#include "service/id/id.h"
#include "service/id/id_generator.h"
#include "service/model/kind.h"
#include "service/model/record.h"
#include "service/registry/commit_queue.h"
#include "service/registry/lessor.h"
#include "service/registry/observer.h"
#include "service/registry/record_table.h"
#include "service/store/store.h"

namespace registrar {

namespace registry_internal {
struct Shard;
struct Ended;
class ParallelLoader;
// Registry-wide counters, shared by all shards.
struct Counters {
  std::atomic<uint64_t> live[kNumKinds] = {};
  std::atomic<uint64_t> tombstones{0};
  // Dropped before their retention ended: their owner held too many.
  std::atomic<uint64_t> tombstones_dropped_early{0};
};
}  // namespace registry_internal

struct RegistryOptions {
  uint32_t shards = 32;
  // Most IDs one Issue mints, items one Validate checks, ids one Cleanup names.
  uint32_t max_batch = 1000;
  // Most live records one owner may hold.
  uint64_t owner_quota = 100'000;
  absl::Duration tombstone_retention = absl::Hours(1);
  // Most tombstones one owner keeps (0: no bound): past it, the owner's
  // oldest are dropped before their retention ends (at the next Tick), so
  // one owner's churn cannot grow memory without limit.
  uint64_t owner_tombstones = 100'000;
  absl::Duration min_lease_ttl = absl::Seconds(1);
  absl::Duration max_lease_ttl = absl::Hours(24);
  uint32_t default_page_size = 100;
  uint32_t max_page_size = 1000;
  // A ListOwned page also ends before its records' estimated encoded size
  // passes this (a page holds at least one record): with large labels, a
  // page of max_page_size records would pass the 4 MiB a gRPC client
  // accepts by default.
  uint64_t max_page_bytes = 1 << 20;
  // How far ahead of use the ID clock's high-water mark is persisted.
  absl::Duration clock_window = absl::Seconds(3);
  // Watch events kept in the store (older ones are compacted away).
  uint64_t event_history = 1'000'000;
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

struct IssueSpec {
  Kind kind = Kind::kUnspecified;
  Owner owner;
  uint32_t count = 1;
  std::string_view parent_id;      // optional text
  std::string_view connection_id;  // optional text
  std::string_view lease_id;       // optional text; connections only
  // When set, the lease must have been granted by this caller.
  std::optional<std::string> lease_caller;
  Labels labels;
  // Not committed by then: DEADLINE_EXCEEDED, nothing recorded.
  absl::Time deadline = absl::InfiniteFuture();
};

struct OpenContextSpec {
  Owner owner;
  std::string_view thread_id;      // optional: reused if live and owned
  std::string_view connection_id;  // optional
  Labels labels;
  absl::Time deadline = absl::InfiniteFuture();
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

struct ListLeasesSpec {
  // Leases of this holder only (exact match); nullopt: every holder's.
  std::optional<std::string_view> holder;
  uint32_t page_size = 0;  // 0: default
  std::string_view page_token;
};

// A live lease as the operator sees it (Admin.ListLeases).
struct LeaseInfo {
  std::string lease_id;
  std::string holder;
  std::string grantor;
  absl::Duration ttl;
  absl::Duration remaining;  // before it expires unless renewed
  uint64_t connections = 0;  // live connections bound to it
};

struct ListLeasesResult {
  std::vector<LeaseInfo> leases;  // in lease ID order
  std::string next_page_token;    // empty on the last page
};

struct RevokeHolderResult {
  std::vector<std::string> revoked;  // lease IDs, in ID order
  uint64_t released = 0;             // records ended with them
  bool more = false;                 // the holder has more leases left
};

class Registry {
 public:
  // `clock`, `ids`, `observer` (nullable) and `store` must outlive the
  // registry. Without a store the registry keeps a MemoryStore of its own.
  Registry(const RegistryOptions& options, const Clock& clock, IdGenerator& ids,
           RegistryObserver* observer, Store* store = nullptr);

  // Loads what the store holds (records, tombstones, leases with a fresh
  // full TTL, the ID clock's high-water mark) and makes the ID generator
  // persist its high-water mark through the store from now on. Call once,
  // before serving. Connections whose lease is gone are ended as expired.
  absl::Status Recover();
  // Waits for queued tombstone drops (the store must still be running).
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Mints spec.count IDs and records them. InvalidArgument for a missing or
  // misplaced field; ResourceExhausted beyond max_batch or the owner quota;
  // FailedPrecondition for a parent/connection/lease that is not live and
  // the owner's. Nothing is recorded unless everything is.
  absl::StatusOr<std::vector<std::string>> Issue(const IssueSpec& spec);

  // Issue without holding a thread while the store makes the records
  // durable: `done` gets what Issue would return, once, after the commit,
  // on the store's writer thread (or on this thread, before returning, when
  // the store commits at once; see Store::defers_commits). Issue is this
  // call, waited for. Meanwhile the records are held as pending: counted
  // against quota and reached by cascades, invisible to Validate, Describe
  // and ListOwned. If the commit fails they are taken out again.
  using IssueDone =
      absl::AnyInvocable<void(absl::StatusOr<std::vector<std::string>>) &&>;
  void IssueAsync(const IssueSpec& spec, IssueDone done);

  // Reuses spec.thread_id when it is a live thread of the owner, else mints
  // a thread; then mints a run under it and a request under the run, all in
  // one step. FailedPrecondition for a connection that is not live and the
  // owner's; ResourceExhausted over quota.
  absl::StatusOr<OpenContextResult> OpenContext(const OpenContextSpec& spec);
  // OpenContext the way IssueAsync is Issue: `done` runs once the new
  // records are durable; meanwhile they are pending.
  using OpenContextDone =
      absl::AnyInvocable<void(absl::StatusOr<OpenContextResult>) &&>;
  void OpenContextAsync(const OpenContextSpec& spec, OpenContextDone done);

  // The tenants a caller may learn about, for a caller scoped to some
  // tenants: a record of any other tenant is answered as if it did not
  // exist (Validate: by tag, i.e. FORGED; Cleanup: unknown, not refused),
  // so such a caller cannot tell another tenant's real IDs from made-up
  // ones. Empty: every tenant.
  using TenantFilter = std::function<bool(std::string_view tenant)>;

  // The verdict for one ID claimed by `owner` (see design: MALFORMED,
  // WRONG_KIND, then by record, then by tag). Never fails.
  ValidateResult Validate(std::string_view id, Kind expected_kind,
                          const Owner& owner, bool want_record,
                          const TenantFilter& visible = {}) const;

  // Ends records of `owner` (with their cascades). Idempotent; records of
  // other owners are reported refused and never touched. InvalidArgument
  // only for a connection_id that is not a connection ID, or over max_batch.
  absl::StatusOr<CleanupResult> Cleanup(const Owner& owner,
                                        const CleanupTarget& target,
                                        std::string_view reason);
  // Cleanup answered once its batch is committed (`done` runs then, on a
  // store thread or before returning). Everything it ends in the owner's
  // shard is one batch; not committed by `deadline`: DEADLINE_EXCEEDED,
  // nothing ended. `target`'s strings need not outlive the call.
  using CleanupDone =
      absl::AnyInvocable<void(absl::StatusOr<CleanupResult>) &&>;
  void CleanupAsync(const Owner& owner, const CleanupTarget& target,
                    std::string_view reason, absl::Time deadline,
                    CleanupDone done, TenantFilter visible = {});

  // Leases. InvalidArgument for a TTL outside [min_lease_ttl, max_lease_ttl]
  // or an empty holder; NotFound for a lease that is not live.
  //
  // `grantor` is the authenticated caller granting the lease ("" without
  // authentication). KeepAlive and RevokeLease with `caller` set refuse a
  // lease granted by anyone else (PermissionDenied, nothing changed);
  // nullopt skips the check (no authentication, or an admin).
  absl::StatusOr<LeaseGrant> GrantLease(std::string_view holder,
                                        absl::Duration ttl,
                                        std::string grantor = "");
  using GrantDone = absl::AnyInvocable<void(absl::StatusOr<LeaseGrant>) &&>;
  void GrantLeaseAsync(std::string_view holder, absl::Duration ttl,
                       std::string grantor, absl::Time deadline,
                       GrantDone done);
  absl::StatusOr<absl::Duration> KeepAlive(
      std::string_view lease_id,
      const std::optional<std::string>& caller = std::nullopt);
  // Ends the lease and everything bound to it, in every shard, as one
  // batch; returns the IDs it ended.
  absl::StatusOr<std::vector<std::string>> RevokeLease(
      std::string_view lease_id,
      const std::optional<std::string>& caller = std::nullopt);
  using RevokeDone =
      absl::AnyInvocable<void(absl::StatusOr<std::vector<std::string>>) &&>;
  void RevokeLeaseAsync(std::string_view lease_id,
                        const std::optional<std::string>& caller,
                        absl::Time deadline, RevokeDone done);

  // Most leases one RevokeHolder call revokes.
  static constexpr size_t kMaxLeasesPerRevoke = 100;

  // Revokes up to kMaxLeasesPerRevoke live leases of `holder` (exact
  // match), each exactly as RevokeLease does with no caller check (one
  // batch per lease: the lease and everything bound to it end as
  // RELEASED); `done` runs once every one is committed or failed. A lease
  // whose end fails is put back (calling again retries it); the call then
  // fails with that error (saying how many were revoked, when some were).
  // InvalidArgument for an empty holder.
  using RevokeHolderDone =
      absl::AnyInvocable<void(absl::StatusOr<RevokeHolderResult>) &&>;
  void RevokeHolderAsync(std::string_view holder, absl::Time deadline,
                         RevokeHolderDone done);
  absl::StatusOr<RevokeHolderResult> RevokeHolder(std::string_view holder);

  // The live leases, of one holder or all, in lease ID order, paginated
  // like ListOwned (page_size and max_page_bytes). InvalidArgument for a
  // page_token this registry did not issue.
  absl::StatusOr<ListLeasesResult> ListLeases(const ListLeasesSpec& spec) const;

  // The record of an ID. InvalidArgument when the text does not parse,
  // NotFound when no record of that kind is held.
  absl::StatusOr<RecordView> Describe(std::string_view id) const;

  // An owner's records in ID order, paginated.
  absl::StatusOr<ListOwnedResult> ListOwned(const ListOwnedSpec& spec) const;

  // Expires due leases (ending their connections as EXPIRED; waits for
  // those commits) and queues the drop of tombstones past retention. Call
  // periodically, from one thread; returns IDs it expired.
  std::vector<std::string> Tick();

  // ----- Followers (service/cluster/DESIGN.md)

  // Applies a change the cluster's writer committed, as a follower reads it
  // back from the store (its watch of etcd): `committed` holds the events
  // of one or more batches with their revisions, in order, the leases they
  // granted and deleted and the tombstones they dropped. Records, owner
  // indexes and leases change as they did on the writer, with nothing
  // written to the store, no ID minted and the observer not told (the
  // writer counts the change). Applied in this order: leases granted,
  // events, leases deleted, tombstones dropped. Idempotent: an event at or
  // below the revision its record already has is skipped, as is the grant
  // of a lease already held. A follower never calls Tick (it would expire
  // leases its writer keeps alive). Returns the events applied.
  uint64_t ApplyCommitted(const WriteBatch& committed);

  // The follower becomes the writer, keeping what it applied instead of
  // reloading (its store has turned writer: EtcdStore::TakeOver):
  // every lease restarts its full TTL (nothing mass-expires; the renewals
  // happened on the old writer) and the ID generator mints above
  // `clock_high_water_ms` and persists its high-water mark through the
  // store, as after Recover. Call once, before the first change.
  void TakeOver(uint64_t clock_high_water_ms);

  RegistryStats Stats() const;
  // What the record tables of all shards hold (walks every shard).
  RecordTable::Memory MemoryUsage() const;
  Store& store() const { return *store_; }
  const RegistryOptions& options() const { return options_; }

 private:
  using Shard = registry_internal::Shard;
  using Ended = registry_internal::Ended;

  // Issue's checks that need no lock, and its minted IDs.
  struct PreparedIssue {
    Kind kind = Kind::kUnspecified;
    Kind parent_kind = Kind::kUnspecified;
    Id128 parent, connection, lease;
    std::vector<Id128> minted;
    uint32_t shard = 0;
  };
  absl::StatusOr<PreparedIssue> PrepareIssue(const IssueSpec& spec);
  // Under the shard's lock: quota and references checked, the lease
  // attached (*bound), the records to add built. Nothing changed on error.
  // `table` is the owner's shard's, whose lock the caller holds.
  absl::Status AdmitIssue(RecordTable& table, const IssueSpec& spec,
                          const PreparedIssue& p,
                          std::vector<RecordView>* records,
                          std::vector<BoundConnection>* bound);
  // The answer for committed records (and the observer told).
  std::vector<std::string> IssuedIds(const PreparedIssue& p);

  // OpenContext's minted IDs and parsed references; thread_reused is set
  // under the shard lock by AdmitOpenContext.
  struct PreparedContext {
    Id128 connection, wanted_thread, new_thread, run, request;
    Id128 lease;  // none: OpenContext binds nothing to a lease
    bool thread_reused = false;
    uint32_t shard = 0;
  };
  absl::StatusOr<PreparedContext> PrepareOpenContext(
      const OpenContextSpec& spec);
  absl::Status AdmitOpenContext(RecordTable& table, const OpenContextSpec& spec,
                                PreparedContext& p,
                                std::vector<RecordView>* records);
  OpenContextResult OpenedContext(const PreparedContext& p);

  // The one way new records are added (Issue, OpenContext), per shard.h:
  // under the lock of `p.shard`, `admit` checks the call and builds the
  // records (binding them to `p.lease` in *bound); they are staged as
  // pending and their batch queued; once committed they are applied and
  // `done` gets `answer(p)`, else the error (and they are taken out).
  template <typename Prepared, typename Result>
  void AddRecords(Prepared p, absl::Time deadline,
                  absl::FunctionRef<absl::Status(RecordTable&, Prepared&,
                                                 std::vector<RecordView>*,
                                                 std::vector<BoundConnection>*)>
                      admit,
                  Result (Registry::*answer)(const Prepared&),
                  absl::AnyInvocable<void(absl::StatusOr<Result>) &&> done);

  // Ending records, per shard.h: one batch across every shard the change
  // touches (registry_end.cc).
  struct EndOp;
  // Locks op's shards (ascending), collects what to end, and stages and
  // queues it; or, when another change is ending some of it, queues a
  // barrier after that change and starts again on its completion.
  void StartEnd(std::unique_ptr<EndOp> op);
  // The batch's completion: applies or rolls back, then op->done.
  void FinishEnd(std::unique_ptr<EndOp> op, const WriteBatch& batch,
                 absl::Status status);
  // Ends every live connection a lease carried (and their cascades) and
  // deletes the lease, as one batch. On failure the lease is reinstated.
  using EndLeaseDone = absl::AnyInvocable<void(absl::Status, Ended&) &&>;
  void EndLeaseAsync(EndedLease lease, EndCause cause, absl::Time deadline,
                     EndLeaseDone done);
  // A revoked lease's end (RevokeLease, RevokeHolder): EndLeaseAsync, the
  // observer told; `done` gets the IDs it ended.
  void EndRevokedLease(EndedLease lease, absl::Time deadline, RevokeDone done);
  // The page size a List call asked for, within the options' bounds.
  uint32_t PageSize(uint32_t asked) const;
  // Queues the drop of tombstones past retention, per shard.
  void DropExpiredTombstones(absl::Time now);

  uint32_t ShardIndex(const Owner& owner) const;
  Shard& ShardFor(const Owner& owner) const;

  // Looks an ID up in every shard but `skip` (null: all shards), for
  // NOT_OWNER/refused answers. Kind of the record found, or kUnspecified
  // (also when its tenant is not `visible`).
  Kind FindElsewhere(Id128 id, const Shard* skip,
                     const TenantFilter& visible) const;

  // Counts new live records in the per-kind gauges.
  void CountLive(absl::Span<const RecordView> records);
  // Queues `batch` (under shard locks, or none); `done` runs on its
  // completion, timed for the observer.
  void Enqueue(WriteBatch batch, CommitQueue::Done done);
  // Tells the observer what a call ended.
  void Report(const Ended& ended);
  // IDs mint above the mark, which the generator persists through the
  // store before minting past it (Recover, TakeOver).
  void AdoptClockHighWater(uint64_t clock_high_water_ms);
  absl::Time Now() const { return clock_.Now(); }

  const RegistryOptions options_;
  const Clock& clock_;
  IdGenerator& ids_;
  RegistryObserver* const observer_;
  std::vector<std::unique_ptr<Shard>> shards_;
  Lessor lessor_;
  std::unique_ptr<Store> owned_store_;
  Store* store_;
  CommitQueue commits_;
  // Tombstone drops queued and not completed: nobody waits for them but
  // the destructor (every other change is answered, or waited for, by its
  // caller).
  absl::Mutex drops_mu_;
  int64_t drops_in_flight_ ABSL_GUARDED_BY(drops_mu_) = 0;
  registry_internal::Counters counters_;
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_REGISTRY_REGISTRY_H_
