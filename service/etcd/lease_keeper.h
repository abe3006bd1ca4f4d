#ifndef REGISTRAR_SERVICE_ETCD_LEASE_KEEPER_H_
#define REGISTRAR_SERVICE_ETCD_LEASE_KEEPER_H_

// Keeps one etcd lease alive over a LeaseKeepAlive stream, and knows, on
// the injected clock, until when the lease is certainly alive.
//
// Fencing rule. etcd restarts a lease's TTL when its leader receives a
// keep-alive, which is after we sent it. So when the keep-alive sent at
// clock time S is answered with TTL T > 0, the lease lives at least until
// S + T; before the first answer, until the grant's send time + TTL. The
// keeper holds the lease valid until
//     valid_until = (send time of the last answered keep-alive) + T - margin
// and reports it lost once the clock passes valid_until, or at once when
// etcd answers TTL 0 (expired or revoked). Loss is measured on our clock
// only: a process paused (SIGSTOP, a VM stall) past valid_until sees
// Alive() false as soon as it runs again, before any network reply, so it
// stops using the lease while etcd (which expires it no earlier than
// S + T) may not have given it to anyone yet. margin covers the rate drift
// between our clock and etcd's leader over one TTL, and the time between a
// caller's Alive() check and its use of what the lease guards.
//
// Keep-alives go out every `interval` (default TTL / 3) on the clock;
// Tick() decides, and a Timer tick calls it every `tick` of real time
// unless `tick` is zero (tests with a FakeClock call Tick themselves). A
// stream that fails, or a keep-alive unanswered for `answer_timeout`
// (default the shorter of `interval` and 1 s: an answer takes
// milliseconds), moves to the next member and sends again at once. That
// timeout is what lets a lease ride out an etcd leader's death: the stream
// may sit on a member that lost its leader (or is the dead one), and with
// the whole interval to wait there, then another member to try, the send
// time of the last answer could fall more than TTL - margin behind
// (measured: every replica of tests/cluster/replicas_chaos_test lost its
// node id in one of 20 etcd leader kills with TTL 10 s). on_lost runs
// once, on a gRPC or timer thread, never under the keeper's lock; it must
// not block. Thread-safe.

#include <cstdint>
#include <functional>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "etcd/etcdserver/etcdserverpb/rpc.pb.h"
#include "service/common/clock.h"
#include "service/etcd/bidi_stream.h"
#include "service/etcd/connection.h"

namespace registrar::etcd {

struct LeaseKeeperOptions {
  int64_t lease_id = 0;
  absl::Duration ttl;  // as granted
  // Clock time just before the LeaseGrant was sent.
  absl::Time granted_at;
  absl::Duration margin = absl::Milliseconds(500);
  // Zero: TTL / 3.
  absl::Duration interval = absl::ZeroDuration();
  // Zero: min(interval, 1 s).
  absl::Duration answer_timeout = absl::ZeroDuration();
  // Real-time period of the self-driven Tick; zero: only explicit Tick().
  absl::Duration tick = absl::Milliseconds(100);
};

class LeaseKeeper : public std::enable_shared_from_this<LeaseKeeper> {
 public:
  // INVALID_ARGUMENT when ttl - margin is not positive. clock must outlive
  // the keeper.
  static absl::StatusOr<std::shared_ptr<LeaseKeeper>> Start(
      std::shared_ptr<Connection> conn, const Clock& clock,
      LeaseKeeperOptions options,
      std::function<void(const absl::Status&)> on_lost);
  ~LeaseKeeper();

  // The lease is held now: not lost, and the clock is before valid_until.
  bool Alive() const;
  absl::Time valid_until() const;
  // Keep-alives etcd answered so far.
  int64_t answered() const;
  int64_t lease_id() const { return options_.lease_id; }

  // Sends a keep-alive when one is due; reports loss when valid_until has
  // passed.
  void Tick();
  // Stops keep-alives (the lease then expires by its TTL unless revoked).
  // on_lost is not called after Stop returns, unless it was running.
  void Stop();

 private:
  using Stream = BidiStream<etcdserverpb::LeaseKeepAliveRequest,
                            etcdserverpb::LeaseKeepAliveResponse>;

  LeaseKeeper(std::shared_ptr<Connection> conn, const Clock& clock,
              LeaseKeeperOptions options,
              std::function<void(const absl::Status&)> on_lost);
  void ScheduleTick();
  std::shared_ptr<Stream> OpenStream() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Answered(uint64_t generation,
                const etcdserverpb::LeaseKeepAliveResponse& resp);
  void StreamEnded(uint64_t generation, int member, const grpc::Status& s);
  // Marks the lease lost; true if this call did (the caller then reports).
  bool MarkLost(absl::Status why) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReportLost();

  const std::shared_ptr<Connection> conn_;
  const Clock& clock_;
  const LeaseKeeperOptions options_;
  const std::function<void(const absl::Status&)> on_lost_;

  mutable absl::Mutex mu_;
  absl::Time valid_until_ ABSL_GUARDED_BY(mu_);
  absl::Time last_sent_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool in_flight_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time in_flight_since_ ABSL_GUARDED_BY(mu_);
  int64_t answered_ ABSL_GUARDED_BY(mu_) = 0;
  std::shared_ptr<Stream> stream_ ABSL_GUARDED_BY(mu_);
  uint64_t stream_generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  bool lost_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status lost_why_ ABSL_GUARDED_BY(mu_);
};

}  // namespace registrar::etcd

#endif  // REGISTRAR_SERVICE_ETCD_LEASE_KEEPER_H_
