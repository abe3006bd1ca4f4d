#include "service/etcd/blocking_kv.h"

#include "absl/strings/str_cat.h"
#include "service/etcd/status.h"

namespace registrar::etcd {
namespace {

// One call on the current member; reports a member failure.
template <class Resp, class Fn>
absl::StatusOr<Resp> Once(Connection& conn, const char* name,
                          absl::Duration timeout, Fn fn) {
  const int member = conn.current();
  conn.KeepForProcess(member);
  std::unique_ptr<grpc::ClientContext> ctx = conn.NewCallContext(timeout);
  Resp resp;
  const grpc::Status s = fn(conn.endpoint(member), ctx.get(), &resp);
  if (s.ok()) return resp;
  if (IsMemberFailure(s)) conn.ReportFailure(member);
  return ToAbsl(
      s, absl::StrCat("etcd ", name, " on ", conn.endpoint(member).address));
}

}  // namespace

absl::StatusOr<etcdserverpb::RangeResponse> BlockingKv::Range(
    const etcdserverpb::RangeRequest& req, absl::Duration timeout) const {
  absl::StatusOr<etcdserverpb::RangeResponse> r;
  for (int attempt = 0; attempt < conn_->size(); ++attempt) {
    r = Once<etcdserverpb::RangeResponse>(
        *conn_, "Range", timeout,
        [&](const Endpoint& e, grpc::ClientContext* c,
            etcdserverpb::RangeResponse* out) {
          return e.kv->Range(c, req, out);
        });
    if (r.ok() || (r.status().code() != absl::StatusCode::kUnavailable &&
                   r.status().code() != absl::StatusCode::kDeadlineExceeded)) {
      break;
    }
  }
  return r;
}

absl::StatusOr<etcdserverpb::TxnResponse> BlockingKv::Txn(
    const etcdserverpb::TxnRequest& req, absl::Duration timeout) const {
  return Once<etcdserverpb::TxnResponse>(
      *conn_, "Txn", timeout,
      [&](const Endpoint& e, grpc::ClientContext* c,
          etcdserverpb::TxnResponse* out) { return e.kv->Txn(c, req, out); });
}

}  // namespace registrar::etcd
