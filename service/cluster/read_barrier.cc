#include "service/cluster/read_barrier.h"

#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace registrar::cluster {
namespace {

// Between a probe etcd could not answer and the next.
constexpr absl::Duration kProbePause = absl::Milliseconds(100);

// The Registrar revision a probe's answer names.
absl::StatusOr<uint64_t> RevisionOf(
    const absl::StatusOr<etcdserverpb::RangeResponse>& resp) {
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

}  // namespace

ReadBarrier::ReadBarrier(std::shared_ptr<etcd::Connection> conn,
                         const etcd::EtcdLayout& layout, FollowerFeed& feed,
                         absl::Duration probe_timeout)
    : revision_key_(layout.RevisionKey()),
      kv_(conn),
      feed_(feed),
      probe_timeout_(probe_timeout),
      timer_(conn->timer()) {}

ReadBarrier::~ReadBarrier() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  auto quiet = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !in_flight_ && running_ == 0;
  };
  mu_.Await(absl::Condition(&quiet));
}

void ReadBarrier::WaitAsync(absl::Time deadline, Done done) {
  uint64_t probe = 0;
  {
    absl::MutexLock lock(&mu_);
    // A probe that starts after now: the one in flight may predate us.
    waiters_.push_back({started_ + 1, deadline, std::move(done)});
    if (in_flight_) return;
    in_flight_ = true;
    probe = ++started_;
  }
  SendProbe(probe);
}

void ReadBarrier::SendProbe(uint64_t probe) {
  etcdserverpb::RangeRequest req;
  req.set_key(revision_key_);
  // serializable stays false: the member answers only after confirming
  // with a quorum that it is current (a linearizable read).
  kv_.Range(
      std::move(req),
      [this, probe](absl::StatusOr<etcdserverpb::RangeResponse> r) {
        Probed(probe, RevisionOf(r));
      },
      probe_timeout_);
}

void ReadBarrier::Probed(uint64_t probe, absl::StatusOr<uint64_t> revision) {
  std::vector<Waiter> ready;
  uint64_t next = 0;
  bool pause = false;
  const absl::Time now = absl::Now();
  {
    absl::MutexLock lock(&mu_);
    // etcd could not be asked: the reads with time for another probe wait
    // for it (sent after a pause); the others get the error.
    const bool again =
        revision.status().code() == absl::StatusCode::kUnavailable &&
        !stopping_;
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (it->need <= probe &&
          !(again && it->deadline > now + kProbePause + probe_timeout_)) {
        ready.push_back(std::move(*it));
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
    // Reads that arrived meanwhile share the next probe.
    if (!waiters_.empty()) next = ++started_;
    in_flight_ = next != 0;
    pause = next != 0 && again;
    ++running_;
  }
  if (pause) {
    timer_.After(kProbePause, [this, next] { SendProbe(next); });
  } else if (next != 0) {
    SendProbe(next);
  }
  for (Waiter& w : ready) {
    if (!revision.ok()) {
      w.done(revision.status());
    } else if (w.deadline <= now) {
      w.done(absl::DeadlineExceededError(
          "the cluster's revision was not learned before the deadline"));
    } else {
      feed_.OnApplied(*revision, w.deadline, std::move(w.done));
    }
  }
  absl::MutexLock lock(&mu_);
  --running_;
}

absl::Status ReadBarrier::Wait(absl::Time deadline) {
  struct State {
    absl::Mutex mu;
    std::optional<absl::Status> result ABSL_GUARDED_BY(mu);
  };
  auto state = std::make_shared<State>();
  WaitAsync(deadline, [state](absl::Status s) {
    absl::MutexLock lock(&state->mu);
    if (!state->result.has_value()) state->result = std::move(s);
  });
  absl::MutexLock lock(&state->mu);
  state->mu.AwaitWithDeadline(
      absl::Condition(
          +[](std::optional<absl::Status>* r) { return r->has_value(); },
          &state->result),
      deadline + absl::Milliseconds(100));  // the feed's own verdict first
  if (!state->result.has_value()) {
    return absl::DeadlineExceededError(
        "the cluster's revision was not applied before the deadline");
  }
  return *state->result;
}

uint64_t ReadBarrier::probes() const {
  absl::MutexLock lock(&mu_);
  return started_;
}

}  // namespace registrar::cluster
