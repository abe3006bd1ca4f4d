#ifndef REGISTRAR_SERVICE_CLUSTER_READ_BARRIER_H_
#define REGISTRAR_SERVICE_CLUSTER_READ_BARRIER_H_

// Consistent reads on a follower (DESIGN.md, "the barrier"): before a read
// answers, the follower has applied at least the Registrar revision etcd
// held when the read began, so it reflects every change any replica
// acknowledged before that.
//
// The revision is learned by a linearizable Range of <prefix>/m/rev (not a
// progress notification: etcd #15220). Probes are shared: a read that
// arrives while a probe is in flight cannot use that probe's answer (it may
// have been read before the read's causes were committed), so it waits for
// the next probe, which every read arriving meanwhile shares. At most one
// probe is in flight; under load the probe rate follows etcd's round trip,
// not the read rate. Thread-safe; Wait blocks its caller.

#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/cluster/follower_feed.h"
#include "service/etcd/blocking_kv.h"
#include "service/etcd/connection.h"
#include "service/etcd/etcd_layout.h"

namespace registrar::cluster {

class ReadBarrier {
 public:
  // `feed` must outlive the barrier.
  ReadBarrier(std::shared_ptr<etcd::Connection> conn,
              const etcd::EtcdLayout& layout, FollowerFeed& feed);

  // Returns once the feed has applied what etcd held when Wait was called.
  // DEADLINE_EXCEEDED when that takes past `deadline`; UNAVAILABLE when
  // etcd cannot be asked; the feed's status when it has ended.
  absl::Status Wait(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  // Probes sent so far (shared by every Wait that arrived meanwhile).
  uint64_t probes() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  // The Registrar revision etcd holds now (one linearizable Range).
  absl::StatusOr<uint64_t> Probe() const;

  const std::string revision_key_;
  etcd::BlockingKv kv_;
  FollowerFeed& feed_;

  mutable absl::Mutex mu_;
  uint64_t started_ ABSL_GUARDED_BY(mu_) = 0;  // probes started
  uint64_t done_ ABSL_GUARDED_BY(mu_) = 0;     // the last finished probe
  bool in_flight_ ABSL_GUARDED_BY(mu_) = false;
  absl::StatusOr<uint64_t> result_ ABSL_GUARDED_BY(mu_) = 0;  // of `done_`
};

}  // namespace registrar::cluster

#endif  // REGISTRAR_SERVICE_CLUSTER_READ_BARRIER_H_
