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
// not the read rate. A probe that etcd cannot answer (a member took it and
// then lost its leader; an election) is sent again after a short pause,
// for the reads whose deadline leaves time; each sending waits at most
// probe_timeout, since a member that lost its leader answers a read it
// took only after etcd's request timeout (5 s and more). Thread-safe;
// WaitAsync holds no thread, Wait blocks its caller.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "service/cluster/follower_feed.h"
#include "service/etcd/connection.h"
#include "service/etcd/etcd_layout.h"
#include "service/etcd/kv.h"
#include "service/etcd/timer.h"

namespace registrar::cluster {

class ReadBarrier {
 public:
  // `feed` must outlive the barrier. probe_timeout: how long one sending
  // of a probe to one member may take (--etcd_txn_attempt_timeout).
  ReadBarrier(std::shared_ptr<etcd::Connection> conn,
              const etcd::EtcdLayout& layout, FollowerFeed& feed,
              absl::Duration probe_timeout = absl::Seconds(1));
  // Waits for the probe in flight (its answer is bounded by probe_timeout
  // on each member) and the callbacks it is running; a probe that fails
  // then is not sent again.
  ~ReadBarrier();
  ReadBarrier(const ReadBarrier&) = delete;
  ReadBarrier& operator=(const ReadBarrier&) = delete;

  // `done` gets OK once the feed has applied what etcd held when WaitAsync
  // was called; DEADLINE_EXCEEDED when that takes past `deadline`;
  // UNAVAILABLE when etcd cannot be asked; the feed's status when it has
  // ended. It runs once, on a gRPC or timer thread (or before returning),
  // with no lock of the barrier held. No thread waits meanwhile.
  using Done = std::function<void(absl::Status)>;
  void WaitAsync(absl::Time deadline, Done done) ABSL_LOCKS_EXCLUDED(mu_);

  // WaitAsync, waited for by the caller.
  absl::Status Wait(absl::Time deadline) ABSL_LOCKS_EXCLUDED(mu_);

  // Probes sent so far (shared by every Wait that arrived meanwhile).
  uint64_t probes() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Waiter {
    uint64_t need;  // the probe whose answer it may use
    absl::Time deadline;
    Done done;
  };
  // Sends probe number `probe`: one linearizable Range of m/rev.
  void SendProbe(uint64_t probe);
  // The probe's answer: hands its waiters to the feed, starts the next
  // probe if others arrived meanwhile.
  void Probed(uint64_t probe, absl::StatusOr<uint64_t> revision)
      ABSL_LOCKS_EXCLUDED(mu_);

  const std::string revision_key_;
  etcd::Kv kv_;
  FollowerFeed& feed_;
  const absl::Duration probe_timeout_;
  etcd::Timer& timer_;

  mutable absl::Mutex mu_;
  uint64_t started_ ABSL_GUARDED_BY(mu_) = 0;  // probes started
  // A probe is being sent, or will be after a pause.
  bool in_flight_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int running_ ABSL_GUARDED_BY(mu_) = 0;  // Probed calls in progress
  std::vector<Waiter> waiters_ ABSL_GUARDED_BY(mu_);
};

}  // namespace registrar::cluster

#endif  // REGISTRAR_SERVICE_CLUSTER_READ_BARRIER_H_
