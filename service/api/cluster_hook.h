#ifndef REGISTRAR_SERVICE_API_CLUSTER_HOOK_H_
#define REGISTRAR_SERVICE_API_CLUSTER_HOOK_H_

// What the RPC layer asks of a replica that shares its etcd prefix with
// others (service/cluster/DESIGN.md). Implemented in service/cluster; the
// handlers know only this interface: which registry answers now, whether a
// read may answer yet, and whether a changing call is taken here or handed
// to the writer.

#include <functional>
#include <memory>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/status.h"
#include "service/api/method.h"
#include "service/registry/registry.h"

namespace registrar {

// Thread-safe; every method may be called from any gRPC thread.
class ClusterHook {
 public:
  virtual ~ClusterHook() = default;

  // The registry that answers a call starting now (a replica replaces it
  // when its role changes). The call holds it until it is finished.
  virtual std::shared_ptr<Registry> registry() = 0;

  // Before a read answers (Validate, Describe, ListOwned, Watch's start):
  // `ready` gets OK once this replica reflects every change any replica
  // acknowledged before now; else the status to answer (DEADLINE_EXCEEDED
  // past `deadline`, UNAVAILABLE when etcd cannot be asked). It runs once,
  // before returning or later on another thread; no thread waits
  // meanwhile.
  using ReadReady = std::function<void(absl::Status)>;
  virtual void BeforeRead(absl::Time deadline, ReadReady ready) = 0;

  // For a call that changes state (MethodInfo::changes_state), or one only
  // the writer can answer (Admin.ListLeases: only the writer renews leases,
  // so only it knows when they expire): false when this replica takes it
  // itself. True when it does not: the call was
  // handed on (or refused) and `done` runs exactly once, later or before
  // returning, with the status to finish the call with (*response then
  // holds the reply). Never blocks.
  using ForwardDone = std::function<void(const grpc::Status&)>;
  virtual bool Forward(grpc::CallbackServerContext* ctx, Method method,
                       const grpc::ByteBuffer& request,
                       grpc::ByteBuffer* response, ForwardDone done) = 0;
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_API_CLUSTER_HOOK_H_
