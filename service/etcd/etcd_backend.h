#ifndef REGISTRAR_SERVICE_ETCD_ETCD_BACKEND_H_
#define REGISTRAR_SERVICE_ETCD_ETCD_BACKEND_H_

// What a replica needs from etcd to start (--store=etcd): a connection, a
// node id claimed under its own etcd lease, and the store, fenced on that
// claim. The server's only entry point into service/etcd.
//
// Node ids (issue 13 item 3): the claim (node_id_claimer.h) holds
// <prefix>/nodes/<id> under the replica's lease. Every store Txn requires
// that key still be on that lease (checked by etcd) and the claim still be
// held by the fencing clock (checked locally, before etcd could expire the
// lease), so once the claim is lost no batch commits: no ID minted after
// that is ever recorded or returned, and the store reports the loss
// (ABORTED from CheckWritable: the server goes NOT_SERVING). The ID clock
// high-water mark is stored once per prefix, as the maximum over every
// node, so a replica that reuses a freed id starts above every ID that
// node id minted.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "service/common/clock.h"
#include "service/etcd/connection.h"
#include "service/etcd/etcd_store.h"
#include "service/etcd/node_id_claimer.h"

namespace registrar::etcd {

struct EtcdBackendOptions {
  ConnectionOptions connection;
  EtcdStoreOptions store;
  // TTL of the node id claim's etcd lease.
  absl::Duration claim_ttl = absl::Seconds(10);
  // Who holds the claim (stored as the claim key's value).
  std::string holder;
};

struct EtcdBackend {
  std::shared_ptr<Connection> connection;
  std::shared_ptr<NodeIdClaimer> claim;
  std::unique_ptr<EtcdStore> store;  // not loaded yet
};

// The write fence of a store written with `claim`'s node id: no Txn once
// the claim is no longer held (checked locally; UNAVAILABLE), and every Txn
// requires the claim key still be on the claim's lease (checked by etcd).
EtcdStore::WriteFence NodeIdFence(const std::shared_ptr<NodeIdClaimer>& claim);

// Claims the lowest free node id under <prefix>/nodes/ on a lease of its
// own (options.claim_ttl), kept alive until lost or released; a loss is
// logged. Errors as OpenEtcdBackend's.
absl::StatusOr<std::shared_ptr<NodeIdClaimer>> ClaimNodeId(
    std::shared_ptr<Connection> conn, const EtcdBackendOptions& options,
    const Clock& clock);

// Connects, claims a node id and creates the store. INVALID_ARGUMENT for
// bad options (naming them), UNAVAILABLE (with the cause) when etcd does
// not answer, RESOURCE_EXHAUSTED when every node id is taken. clock must
// outlive the backend.
absl::StatusOr<EtcdBackend> OpenEtcdBackend(const EtcdBackendOptions& options,
                                            const Clock& clock);

}  // namespace registrar::etcd

#endif  // REGISTRAR_SERVICE_ETCD_ETCD_BACKEND_H_
