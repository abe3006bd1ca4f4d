#ifndef REGISTRAR_SERVICE_CLUSTER_COMMITTED_TXN_H_
#define REGISTRAR_SERVICE_CLUSTER_COMMITTED_TXN_H_

// A follower's view of one Txn the writer committed (DESIGN.md, "Feed"):
// the etcd events of one etcd revision under the store's prefix, decoded
// back into the WriteBatch that Registry::ApplyCommitted applies.
//
// One etcd revision is one EtcdStore Txn (a group of batches). What each key
// of etcd_layout.h contributes:
//   put    <prefix>/e/<rev>   the Txn's events, in order (every event,
//                             including a record issued and ended within
//                             the Txn, whose r/ key holds only the last)
//   put    <prefix>/l/<id>    a lease granted
//   delete <prefix>/l/<id>    a lease ended
//   delete <prefix>/r/<id>    a tombstone dropped
//   put    <prefix>/m/rev     the Registrar revision after the Txn
// Anything else (r/ puts: their state is in the events; m/clock, m/oldest,
// e/ deletes of CompactEvents, other keys under the prefix) is skipped.

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "etcd/mvcc/mvccpb/kv.pb.h"
#include "service/etcd/etcd_layout.h"
#include "service/store/record_codec.h"
#include "service/store/store.h"

namespace registrar::cluster {

struct CommittedTxn {
  int64_t etcd_revision = 0;
  // The Registrar revision <prefix>/m/rev holds after it; 0 when the Txn
  // did not write that key (it was not a Registrar Txn).
  uint64_t revision = 0;
  WriteBatch batch;
};

// Not thread-safe (one per watch; its callbacks never run concurrently).
class CommittedTxnDecoder {
 public:
  explicit CommittedTxnDecoder(etcd::EtcdLayout layout)
      : layout_(std::move(layout)) {}

  // Splits a watch response's events (in revision order) into one
  // CommittedTxn per etcd revision. DataLoss naming the key when a value
  // does not decode: the follower then reloads.
  absl::StatusOr<std::vector<CommittedTxn>> Decode(
      const std::vector<mvccpb::Event>& events);

 private:
  absl::Status Add(const mvccpb::Event& event, CommittedTxn* txn);

  const etcd::EtcdLayout layout_;
  RecordDecoder decoder_;
};

}  // namespace registrar::cluster

#endif  // REGISTRAR_SERVICE_CLUSTER_COMMITTED_TXN_H_
