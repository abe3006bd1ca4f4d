#include "service/cluster/read_barrier.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace registrar::cluster {

ReadBarrier::ReadBarrier(std::shared_ptr<etcd::Connection> conn,
                         const etcd::EtcdLayout& layout, FollowerFeed& feed)
    : revision_key_(layout.RevisionKey()), kv_(std::move(conn)), feed_(feed) {}

absl::StatusOr<uint64_t> ReadBarrier::Probe() const {
  etcdserverpb::RangeRequest req;
  req.set_key(revision_key_);
  // serializable stays false: the member answers only after confirming
  // with a quorum that it is current (a linearizable read).
  absl::StatusOr<etcdserverpb::RangeResponse> resp = kv_.Range(req);
  if (!resp.ok()) {
    return absl::UnavailableError(
        absl::StrCat("cannot ask etcd for the cluster's revision: ",
                     resp.status().message()));
  }
  if (resp->kvs_size() == 0) return 0;  // nothing written yet
  etcd::RevisionValue v;
  if (absl::Status s = etcd::DecodeRevisionValue(resp->kvs(0).value(), &v);
      !s.ok()) {
    return s;
  }
  return v.revision;
}

absl::Status ReadBarrier::Wait(absl::Time deadline) {
  uint64_t target = 0;
  {
    absl::MutexLock lock(&mu_);
    // A probe that starts after now: the one in flight may predate us.
    const uint64_t need = started_ + 1;
    for (;;) {
      if (done_ >= need) {
        if (!result_.ok()) return result_.status();
        target = *result_;
        break;
      }
      if (!in_flight_) {
        in_flight_ = true;
        const uint64_t mine = ++started_;
        mu_.Unlock();
        absl::StatusOr<uint64_t> r = Probe();
        mu_.Lock();
        in_flight_ = false;
        done_ = mine;
        result_ = std::move(r);
        continue;
      }
      auto finished = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return !in_flight_;
      };
      if (!mu_.AwaitWithDeadline(absl::Condition(&finished), deadline)) {
        return absl::DeadlineExceededError(
            "the cluster's revision was not learned before the deadline");
      }
    }
  }
  return feed_.WaitApplied(target, deadline);
}

uint64_t ReadBarrier::probes() const {
  absl::MutexLock lock(&mu_);
  return started_;
}

}  // namespace registrar::cluster
