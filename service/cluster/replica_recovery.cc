// A replica's recoveries on its role thread: replacing a writer whose
// process is gone, and claiming a node id again after the claim was lost.

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "service/cluster/replica.h"
#include "service/cluster/replica_parts.h"
#include "service/cluster/writer_probe.h"
#include "service/etcd/lease.h"
#include "service/etcd/sync_call.h"
#include "spdlog/spdlog.h"

namespace registrar::cluster {
namespace {

// A writer that refuses connections is probed this many times, this far
// apart, before its etcd lease is revoked; and not again for a while.
constexpr int kRefusalsToRevoke = 2;
constexpr absl::Duration kProbeTimeout = absl::Milliseconds(200);
constexpr absl::Duration kProbeApart = absl::Milliseconds(100);
constexpr absl::Duration kRevokeBackoff = absl::Seconds(1);
// A failed claim or rejoin is tried again after this long.
constexpr absl::Duration kReclaimBackoff = absl::Seconds(1);

}  // namespace

void Replica::ReplaceDeadWriter() {
  int64_t suspect;
  {
    absl::MutexLock lock(&shared_->mu);
    suspect = std::exchange(shared_->unreachable_writer, 0);
  }
  std::shared_ptr<etcd::Election> e = election();
  std::optional<etcd::LeaderInfo> leader;
  if (e != nullptr) leader = e->leader();
  // Certain, unlike a refused probe: no backoff, each such lease once.
  if (leader.has_value() && IsPredecessor(*leader) &&
      leader->lease != last_revoked_) {
    // This process listens on that address: the writer named there is a
    // process that had it before (killed, then this one started on the
    // same address before its lease ran out). Everyone who forwards to it
    // reaches this follower instead, until that lease goes.
    RevokeWriterLease(*leader,
                      "is this replica's own address under another etcd "
                      "lease (a previous process on this address)");
    return;
  }
  if (suspect == 0 || absl::Now() < next_revoke_) return;
  // Replaced already, or this replica: nothing to do.
  if (!leader.has_value() || leader->is_me || leader->lease == 0 ||
      leader->create_revision != suspect) {
    return;
  }
  // Revoking the lease of a live writer would be safe (its writes compare
  // its election key and node id claim, both on that lease) but would
  // depose it: only a writer whose address refuses connections, twice, is
  // taken for dead.
  for (int i = 0; i < kRefusalsToRevoke; ++i) {
    if (i > 0) absl::SleepFor(kProbeApart);
    if (ProbeAddress(leader->value, kProbeTimeout) != Reachability::kRefused) {
      return;
    }
  }
  leader = e->leader();
  if (!leader.has_value() || leader->create_revision != suspect) return;
  next_revoke_ = absl::Now() + kRevokeBackoff;
  RevokeWriterLease(*leader, "refuses connections");
}

bool Replica::IsPredecessor(const etcd::LeaderInfo& leader) const {
  if (leader.is_me || leader.lease == 0) return false;
  absl::MutexLock lock(&mu_);
  return !advertise_.empty() && leader.value == advertise_;
}

void Replica::RevokeWriterLease(const etcd::LeaderInfo& leader,
                                std::string_view why) {
  last_revoked_ = leader.lease;
  spdlog::warn(
      "cluster: the writer {} {}: revoking its etcd lease {:x} so that the "
      "next replica takes over now, not after the lease's TTL",
      leader.value, std::string(why), leader.lease);
  absl::StatusOr<etcdserverpb::LeaseRevokeResponse> r =
      etcd::SyncCall<etcdserverpb::LeaseRevokeResponse>([&](auto cb) {
        etcd::Lease(conn_).Revoke(leader.lease, std::move(cb));
      });
  if (r.ok() || absl::IsNotFound(r.status())) {
    dead_writers_revoked_.fetch_add(1);
  } else {
    spdlog::warn("cluster: revoking the dead writer's lease failed: {}",
                 std::string(r.status().message()));
  }
}

void Replica::Reclaim() {
  if (!options_.reclaim || absl::Now() < next_reclaim_) return;
  next_reclaim_ = absl::Now() + kReclaimBackoff;
  const std::shared_ptr<etcd::NodeIdClaimer> lost = claim();
  // Whatever this replica was, it is nothing now: a writer generation's
  // store refuses (its fence checks the claim and `retired`), and the
  // election's key went with the claim's lease.
  current()->retired->store(true);
  std::shared_ptr<etcd::Election> left;
  {
    absl::MutexLock lock(&shared_->mu);
    left = std::move(shared_->election);
  }
  left.reset();
  absl::StatusOr<std::shared_ptr<etcd::NodeIdClaimer>> fresh =
      options_.reclaim();
  if (!fresh.ok()) {
    spdlog::warn("cluster: claiming a node id again failed ({}); retrying",
                 std::string(fresh.status().message()));
    return;
  }
  // Minting with the new id is safe at once: only a writer generation
  // mints, and the next one starts above the prefix's ID clock high-water
  // mark, which is above every ID minted with any node id.
  ids_.set_node_id(static_cast<uint32_t>((*fresh)->id()));
  {
    absl::MutexLock lock(&mu_);
    claim_ = *fresh;
  }
  reclaimed_.fetch_add(1);
  rejoin_.store(true);
  spdlog::warn(
      "cluster: node id {} was lost; claimed node id {}: rejoining the "
      "cluster",
      lost->id(), (*fresh)->id());
  Rejoin();
}

void Replica::Rejoin() {
  if (absl::Now() < next_build_) return;
  // A generation of the lost claim: a writer's is retired, and a
  // follower's store carries the old claim's fence. Load afresh.
  if (current()->retired->load()) {
    const absl::Time start = absl::Now();
    absl::StatusOr<std::shared_ptr<Generation>> built = Build(false);
    if (!built.ok()) {
      spdlog::warn("cluster: loading failed ({}); trying again",
                   std::string(built.status().message()));
      next_build_ = absl::Now() + kReclaimBackoff;
      return;
    }
    Install(*std::move(built));
    spdlog::info("cluster: this replica is a follower again (loaded in {})",
                 absl::FormatDuration(absl::Now() - start));
  }
  bool campaigned;
  {
    absl::MutexLock lock(&mu_);
    campaigned = !advertise_.empty();
  }
  if (campaigned) {
    if (absl::Status s = EnterElection(); !s.ok()) {
      spdlog::warn("cluster: {}; trying again", std::string(s.message()));
      next_build_ = absl::Now() + kReclaimBackoff;
      return;
    }
  }
  rejoin_.store(false);
  shared_->Wake();
}

}  // namespace registrar::cluster
