#include "service/etcd/lease.h"

#include <utility>

#include "service/etcd/unary_call.h"

namespace registrar::etcd {

namespace pb = ::etcdserverpb;

void Lease::Grant(int64_t ttl_seconds, int64_t id,
                  Callback<pb::LeaseGrantResponse> done) {
  pb::LeaseGrantRequest req;
  req.set_ttl(ttl_seconds);
  req.set_id(id);
  UnaryCall<pb::LeaseGrantRequest, pb::LeaseGrantResponse>::Start(
      conn_, "LeaseGrant", std::move(req), Retry::kOnAnotherMember,
      [](const Endpoint& e, grpc::ClientContext* c,
         const pb::LeaseGrantRequest* q, pb::LeaseGrantResponse* r,
         std::function<void(grpc::Status)> f) {
        e.lease->async()->LeaseGrant(c, q, r, std::move(f));
      },
      std::move(done));
}

void Lease::Revoke(int64_t id, Callback<pb::LeaseRevokeResponse> done) {
  pb::LeaseRevokeRequest req;
  req.set_id(id);
  UnaryCall<pb::LeaseRevokeRequest, pb::LeaseRevokeResponse>::Start(
      conn_, "LeaseRevoke", std::move(req), Retry::kOnAnotherMember,
      [](const Endpoint& e, grpc::ClientContext* c,
         const pb::LeaseRevokeRequest* q, pb::LeaseRevokeResponse* r,
         std::function<void(grpc::Status)> f) {
        e.lease->async()->LeaseRevoke(c, q, r, std::move(f));
      },
      std::move(done));
}

void Lease::TimeToLive(int64_t id, bool keys,
                       Callback<pb::LeaseTimeToLiveResponse> done) {
  pb::LeaseTimeToLiveRequest req;
  req.set_id(id);
  req.set_keys(keys);
  UnaryCall<pb::LeaseTimeToLiveRequest, pb::LeaseTimeToLiveResponse>::Start(
      conn_, "LeaseTimeToLive", std::move(req), Retry::kOnAnotherMember,
      [](const Endpoint& e, grpc::ClientContext* c,
         const pb::LeaseTimeToLiveRequest* q, pb::LeaseTimeToLiveResponse* r,
         std::function<void(grpc::Status)> f) {
        e.lease->async()->LeaseTimeToLive(c, q, r, std::move(f));
      },
      std::move(done));
}

}  // namespace registrar::etcd
