#include "service/etcd/etcd_backend.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "service/common/status_macros.h"
#include "service/etcd/sync_call.h"
#include "spdlog/spdlog.h"

namespace registrar::etcd {

EtcdStore::WriteFence NodeIdFence(const std::shared_ptr<NodeIdClaimer>& claim) {
  std::weak_ptr<NodeIdClaimer> held = claim;
  EtcdStore::WriteFence fence;
  fence.check = [held, id = claim->id()]() -> absl::Status {
    std::shared_ptr<NodeIdClaimer> c = held.lock();
    if (c != nullptr && c->Held()) return absl::OkStatus();
    return absl::UnavailableError(
        absl::StrCat("this replica lost its node id ", id,
                     " (its etcd lease was not renewed in time)"));
  };
  pb::Compare on_lease;
  on_lease.set_key(claim->key());
  on_lease.set_target(pb::Compare::LEASE);
  on_lease.set_result(pb::Compare::EQUAL);
  on_lease.set_lease(claim->lease_id());
  fence.compares.push_back(std::move(on_lease));
  return fence;
}

absl::StatusOr<std::shared_ptr<NodeIdClaimer>> ClaimNodeId(
    std::shared_ptr<Connection> conn, const EtcdBackendOptions& options,
    const Clock& clock) {
  NodeIdClaimerOptions claim;
  claim.prefix = options.store.prefix + "/nodes/";
  claim.ttl = options.claim_ttl;
  claim.margin = std::min(absl::Seconds(2), options.claim_ttl / 3);
  claim.holder = options.holder;
  absl::StatusOr<std::shared_ptr<NodeIdClaimer>> claimed =
      SyncCall<std::shared_ptr<NodeIdClaimer>>([&](auto cb) {
        NodeIdClaimer::Claim(
            std::move(conn), clock, claim,
            [](const absl::Status& lost) {
              spdlog::error(
                  "node id claim lost ({}): this replica mints no more IDs "
                  "with it and refuses changes (NOT_SERVING) until it has "
                  "claimed another",
                  std::string(lost.message()));
            },
            std::move(cb));
      });
  if (!claimed.ok()) {
    return absl::Status(claimed.status().code(),
                        absl::StrCat("claiming a node id in etcd: ",
                                     claimed.status().message()));
  }
  return claimed;
}

absl::StatusOr<EtcdBackend> OpenEtcdBackend(const EtcdBackendOptions& options,
                                            const Clock& clock) {
  EtcdBackend b;
  absl::StatusOr<std::shared_ptr<Connection>> conn =
      Connection::Create(options.connection);
  if (!conn.ok()) return conn.status();
  b.connection = *std::move(conn);
  ASSIGN_OR_RETURN(b.claim, ClaimNodeId(b.connection, options, clock));

  absl::StatusOr<std::unique_ptr<EtcdStore>> store =
      EtcdStore::Create(b.connection, options.store);
  if (!store.ok()) return store.status();
  b.store = *std::move(store);
  b.store->SetWriteFence(NodeIdFence(b.claim));
  return b;
}

}  // namespace registrar::etcd
