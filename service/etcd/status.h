#ifndef REGISTRAR_SERVICE_ETCD_STATUS_H_
#define REGISTRAR_SERVICE_ETCD_STATUS_H_

// gRPC status <-> absl::Status for the etcd client, and which failures
// mean "try another member".

#include <string>

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace registrar::etcd {

// Same code (gRPC and absl share the numbering), message prefixed with what
// failed, e.g. "etcd Range on 127.0.0.1:2379: etcdserver: no leader".
inline absl::Status ToAbsl(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      what + ": " + s.error_message());
}

// The member cannot serve us now (down, paused, partitioned, no leader,
// leader changed): the next call should go to another member. etcd returns
// UNAVAILABLE for "no leader", "leader changed" and "request timed out".
inline bool IsMemberFailure(const grpc::Status& s) {
  return s.error_code() == grpc::StatusCode::UNAVAILABLE ||
         s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED;
}

}  // namespace registrar::etcd

#endif  // REGISTRAR_SERVICE_ETCD_STATUS_H_
