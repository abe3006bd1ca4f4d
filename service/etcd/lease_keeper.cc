#include "service/etcd/lease_keeper.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "etcd/etcdserver/etcdserverpb/rpc.grpc.pb.h"
#include "service/etcd/status.h"

namespace registrar::etcd {

namespace pb = ::etcdserverpb;

absl::StatusOr<std::shared_ptr<LeaseKeeper>> LeaseKeeper::Start(
    std::shared_ptr<Connection> conn, const Clock& clock,
    LeaseKeeperOptions options,
    std::function<void(const absl::Status&)> on_lost) {
  if (options.ttl - options.margin <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "lease keeper: margin must be shorter than the lease TTL");
  }
  if (options.interval <= absl::ZeroDuration()) {
    options.interval = options.ttl / 3;
  }
  if (options.answer_timeout <= absl::ZeroDuration()) {
    options.answer_timeout = std::min(options.interval, absl::Seconds(1));
  }
  std::shared_ptr<LeaseKeeper> k(new LeaseKeeper(
      std::move(conn), clock, std::move(options), std::move(on_lost)));
  k->ScheduleTick();
  k->Tick();
  return k;
}

LeaseKeeper::LeaseKeeper(std::shared_ptr<Connection> conn, const Clock& clock,
                         LeaseKeeperOptions options,
                         std::function<void(const absl::Status&)> on_lost)
    : conn_(std::move(conn)),
      clock_(clock),
      options_(std::move(options)),
      on_lost_(std::move(on_lost)),
      valid_until_(options_.granted_at + options_.ttl - options_.margin) {}

LeaseKeeper::~LeaseKeeper() { Stop(); }

bool LeaseKeeper::Alive() const {
  absl::MutexLock lock(&mu_);
  return !lost_ && clock_.Now() < valid_until_;
}

absl::Time LeaseKeeper::valid_until() const {
  absl::MutexLock lock(&mu_);
  return valid_until_;
}

int64_t LeaseKeeper::answered() const {
  absl::MutexLock lock(&mu_);
  return answered_;
}

void LeaseKeeper::ScheduleTick() {
  if (options_.tick <= absl::ZeroDuration()) return;
  conn_->timer().After(options_.tick,
                       [weak = std::weak_ptr<LeaseKeeper>(weak_from_this())] {
                         if (auto k = weak.lock()) {
                           k->Tick();
                           k->ScheduleTick();
                         }
                       });
}

void LeaseKeeper::Tick() {
  bool report = false;
  std::shared_ptr<Stream> send_on;
  std::shared_ptr<Stream> cancel;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_ || lost_) return;
    const absl::Time now = clock_.Now();
    if (now >= valid_until_) {
      report = MarkLost(absl::DeadlineExceededError(absl::StrCat(
          "etcd lease ", options_.lease_id,
          ": no keep-alive answered in time; it may have expired")));
    } else if (in_flight_) {
      // Unanswered for answer_timeout: the member may be paused, dead or
      // without a leader. Drop the stream; the next tick sends on the next
      // member.
      if (now - in_flight_since_ >= options_.answer_timeout && stream_) {
        cancel = std::move(stream_);
      }
    } else if (now - last_sent_ >= options_.interval) {
      if (!stream_) stream_ = OpenStream();
      in_flight_ = true;
      in_flight_since_ = now;
      last_sent_ = now;
      send_on = stream_;
    }
  }
  if (cancel) cancel->Cancel();
  if (send_on) {
    pb::LeaseKeepAliveRequest req;
    req.set_id(options_.lease_id);
    send_on->Write(std::move(req));
  }
  if (report) ReportLost();
}

std::shared_ptr<LeaseKeeper::Stream> LeaseKeeper::OpenStream() {
  const int member = conn_->current();
  const Endpoint& endpoint = conn_->endpoint(member);
  auto ctx = conn_->NewStreamContext();
  // A member without a leader cannot renew: fail instead of waiting.
  ctx->AddMetadata("hasleader", "true");
  // Answers and ends of an older stream must not count for this one.
  const uint64_t generation = ++stream_generation_;
  Stream::Handlers h;
  std::weak_ptr<LeaseKeeper> weak = weak_from_this();
  h.on_read = [weak, generation](pb::LeaseKeepAliveResponse& resp) {
    if (auto k = weak.lock()) k->Answered(generation, resp);
  };
  h.on_done = [weak, generation, member](const grpc::Status& s) {
    if (auto k = weak.lock()) k->StreamEnded(generation, member, s);
  };
  auto stream = Stream::Start(
      std::move(ctx),
      [&endpoint](grpc::ClientContext* c,
                  grpc::ClientBidiReactor<pb::LeaseKeepAliveRequest,
                                          pb::LeaseKeepAliveResponse>* r) {
        endpoint.lease->async()->LeaseKeepAlive(c, r);
      },
      std::nullopt, std::move(h));
  conn_->KeepForProcess(member);
  return stream;
}

void LeaseKeeper::Answered(uint64_t generation,
                           const pb::LeaseKeepAliveResponse& resp) {
  bool report = false;
  {
    absl::MutexLock lock(&mu_);
    // One keep-alive in flight per stream: an answer on the current stream
    // answers the one sent at in_flight_since_.
    if (generation != stream_generation_ || !in_flight_ || stopped_ || lost_) {
      return;
    }
    in_flight_ = false;
    ++answered_;
    if (resp.ttl() <= 0) {
      report = MarkLost(absl::NotFoundError(absl::StrCat(
          "etcd lease ", options_.lease_id, " expired or was revoked")));
    } else {
      valid_until_ =
          std::max(valid_until_, in_flight_since_ + absl::Seconds(resp.ttl()) -
                                     options_.margin);
    }
  }
  if (report) ReportLost();
}

void LeaseKeeper::StreamEnded(uint64_t generation, int member,
                              const grpc::Status& s) {
  absl::MutexLock lock(&mu_);
  if (generation != stream_generation_) return;  // an older stream
  // CANCELLED while still keeping: Tick dropped a stalled stream.
  if (IsMemberFailure(s) || s.ok() ||
      (s.error_code() == grpc::StatusCode::CANCELLED && !stopped_ && !lost_)) {
    conn_->ReportFailure(member);
  }
  stream_.reset();
  // What was in flight is lost with the stream; send again at once.
  in_flight_ = false;
  last_sent_ = absl::InfinitePast();
}

bool LeaseKeeper::MarkLost(absl::Status why) {
  if (lost_) return false;
  lost_ = true;
  lost_why_ = std::move(why);
  if (stream_) stream_->Cancel();
  stream_.reset();
  return true;
}

void LeaseKeeper::ReportLost() {
  absl::Status why;
  {
    absl::MutexLock lock(&mu_);
    if (stopped_) return;
    why = lost_why_;
  }
  if (on_lost_) on_lost_(why);
}

void LeaseKeeper::Stop() {
  std::shared_ptr<Stream> stream;
  {
    absl::MutexLock lock(&mu_);
    stopped_ = true;
    stream = std::move(stream_);
  }
  if (stream) stream->Cancel();
}

}  // namespace registrar::etcd
