#ifndef REGISTRAR_SERVICE_ETCD_BLOCKING_KV_H_
#define REGISTRAR_SERVICE_ETCD_BLOCKING_KV_H_

// etcd's KV on gRPC's synchronous stubs, for threads that must block
// (EtcdStore's writer, the Store interface's synchronous reads). Unlike
// kv.h's callbacks, a blocking call needs no thread of gRPC's callback
// pool, which the server's handlers share: a handler blocked in
// Store::Commit (the ID clock's high-water mark) cannot then starve the
// etcd call it waits for. Same failover as unary_call.h: a member failure
// moves the connection to the next member; Range is retried there, Txn is
// not (its outcome is unknown). timeout: of each call, when shorter than
// the connection's call_timeout. Thread-safe.

#include <memory>

#include "absl/status/statusor.h"
#include "etcd/etcdserver/etcdserverpb/rpc.pb.h"
#include "service/etcd/connection.h"

namespace registrar::etcd {

class BlockingKv {
 public:
  explicit BlockingKv(std::shared_ptr<Connection> conn)
      : conn_(std::move(conn)) {}

  absl::StatusOr<etcdserverpb::RangeResponse> Range(
      const etcdserverpb::RangeRequest& req,
      absl::Duration timeout = absl::InfiniteDuration()) const;
  absl::StatusOr<etcdserverpb::TxnResponse> Txn(
      const etcdserverpb::TxnRequest& req,
      absl::Duration timeout = absl::InfiniteDuration()) const;

 private:
  const std::shared_ptr<Connection> conn_;
};

}  // namespace registrar::etcd

#endif  // REGISTRAR_SERVICE_ETCD_BLOCKING_KV_H_
