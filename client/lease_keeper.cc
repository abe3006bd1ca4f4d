#include "client/lease_keeper.h"

#include <algorithm>
#include <utility>

#include "absl/memory/memory.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "service/common/status_macros.h"

namespace registrar {

namespace {

const Clock& SystemClockInstance() {
  static const SystemClock* const clock = new SystemClock();
  return *clock;
}

}  // namespace

absl::StatusOr<std::unique_ptr<LeaseKeeper>> LeaseKeeper::Start(
    Client& client, std::string holder, uint32_t ttl_seconds,
    LossCallback on_loss) {
  Options options;
  options.on_loss = std::move(on_loss);
  return Start(client, std::move(holder), ttl_seconds, std::move(options));
}

absl::StatusOr<std::unique_ptr<LeaseKeeper>> LeaseKeeper::Start(
    Client& client, std::string holder, uint32_t ttl_seconds, Options options) {
  if (options.clock == nullptr) options.clock = &SystemClockInstance();
  v1::GrantLeaseRequest request;
  request.set_holder(holder);
  request.set_ttl_seconds(ttl_seconds);
  const absl::Time sent = options.clock->Now();
  ASSIGN_OR_RETURN(v1::GrantLeaseResponse granted, client.GrantLease(request));
  if (granted.lease_id().empty()) {
    return absl::InternalError("GrantLease returned no lease_id");
  }
  // The server may adjust the TTL; trust its answer when it gives one.
  const uint32_t ttl =
      granted.ttl_seconds() != 0 ? granted.ttl_seconds() : ttl_seconds;
  const bool renewal_thread = options.renewal_thread;
  std::unique_ptr<LeaseKeeper> keeper = absl::WrapUnique(
      new LeaseKeeper(client, std::move(holder), granted.lease_id(), ttl, sent,
                      std::move(options)));
  if (renewal_thread) {
    absl::MutexLock lock(&keeper->join_mu_);
    keeper->thread_ = std::thread(&LeaseKeeper::Run, keeper.get());
  }
  return keeper;
}

LeaseKeeper::LeaseKeeper(Client& client, std::string holder,
                         std::string lease_id, uint32_t ttl_seconds,
                         absl::Time sent, Options options)
    : client_(client),
      holder_(std::move(holder)),
      lease_id_(std::move(lease_id)),
      on_loss_(std::move(options.on_loss)),
      clock_(*options.clock),
      ttl_seconds_(ttl_seconds),
      renewed_until_(sent + absl::Seconds(ttl_seconds)),
      next_renewal_(sent + RenewInterval(ttl_seconds)) {}

LeaseKeeper::~LeaseKeeper() { Stop(); }

uint32_t LeaseKeeper::ttl_seconds() const {
  absl::MutexLock lock(&mu_);
  return ttl_seconds_;
}

bool LeaseKeeper::healthy() const {
  absl::MutexLock lock(&mu_);
  return status_.ok();
}

absl::Status LeaseKeeper::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

absl::Time LeaseKeeper::renewed_until() const {
  absl::MutexLock lock(&mu_);
  return renewed_until_;
}

absl::Time LeaseKeeper::next_renewal() const {
  absl::MutexLock lock(&mu_);
  return next_renewal_;
}

absl::Duration LeaseKeeper::RenewInterval(uint32_t ttl_seconds) {
  // ttl/3 leaves room for two more tries before the lease can expire.
  return std::max(absl::Seconds(ttl_seconds) / 3, absl::Milliseconds(100));
}

void LeaseKeeper::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    wake_.SignalAll();
  }
  absl::MutexLock lock(&join_mu_);
  if (!thread_.joinable()) return;
  if (thread_.get_id() == std::this_thread::get_id()) {
    // Called from the loss callback: the thread returns right after it.
    thread_.detach();
    return;
  }
  thread_.join();
}

absl::StatusOr<v1::RevokeLeaseResponse> LeaseKeeper::Revoke(
    std::optional<absl::Duration> timeout) {
  // Stop first so a KeepAlive racing the revoke cannot report a loss.
  Stop();
  {
    absl::MutexLock lock(&mu_);
    if (status_.ok()) {
      status_ = absl::FailedPreconditionError(
          absl::StrCat("lease ", lease_id_, " was revoked"));
    }
  }
  v1::RevokeLeaseRequest request;
  request.set_lease_id(lease_id_);
  return client_.RevokeLease(request, timeout);
}

absl::StatusOr<std::string> LeaseKeeper::OpenConnection(
    const v1::Owner& owner, const std::map<std::string, std::string>& labels,
    std::optional<absl::Duration> timeout) {
  {
    absl::MutexLock lock(&mu_);
    if (!status_.ok()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "lease ", lease_id_, " is no longer held: ", status_.message()));
    }
  }
  IssueOptions options;
  options.lease_id = lease_id_;
  options.labels = labels;
  ASSIGN_OR_RETURN(
      std::vector<std::string> ids,
      client_.IssueIds(v1::KIND_CONNECTION, owner, 1, options, timeout));
  return std::move(ids.front());
}

void LeaseKeeper::Run() {
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      // Waits on the keeper's clock: wakes at the renewal time (or on
      // Stop) and checks the clock again.
      while (!stopping_) {
        const absl::Duration left = next_renewal_ - clock_.Now();
        if (left <= absl::ZeroDuration()) break;
        wake_.WaitWithTimeout(&mu_, left);
      }
      if (stopping_ || !status_.ok()) return;
    }
    Tick();
  }
}

bool LeaseKeeper::Tick() {
  uint32_t ttl;
  absl::Time sent;
  absl::Duration left_on_lease;
  {
    absl::MutexLock lock(&mu_);
    sent = clock_.Now();
    if (stopping_ || !status_.ok() || sent < next_renewal_) return false;
    ttl = ttl_seconds_;
    left_on_lease = renewed_until_ - sent;
  }
  const absl::Duration interval = RenewInterval(ttl);
  // A renewal is worth waiting for as long as the lease surely lives (at
  // least an interval): on a busy machine a slow answer still renews it,
  // where a deadline of one interval would fail it and retry. Stop() waits
  // for it, within the client's deadline.
  const absl::Duration timeout =
      std::min(client_.options().deadline, std::max(left_on_lease, interval));
  v1::KeepAliveRequest request;
  request.set_lease_id(lease_id_);
  absl::StatusOr<v1::KeepAliveResponse> renewed =
      client_.KeepAlive(request, timeout);
  if (renewed.ok()) {
    absl::MutexLock lock(&mu_);
    if (renewed->ttl_seconds() != 0) ttl_seconds_ = renewed->ttl_seconds();
    renewed_until_ = sent + absl::Seconds(ttl_seconds_);
    next_renewal_ = sent + RenewInterval(ttl_seconds_);
    return true;
  }
  if (renewed.status().code() == absl::StatusCode::kNotFound) {
    {
      absl::MutexLock lock(&mu_);
      status_ = renewed.status();
    }
    if (on_loss_) on_loss_(renewed.status());
    return true;
  }
  // Transient (UNAVAILABLE after retries, DEADLINE_EXCEEDED, ...): the
  // lease may still be alive, so try again sooner than the full interval.
  absl::MutexLock lock(&mu_);
  next_renewal_ =
      clock_.Now() + std::max(interval / 3, absl::Milliseconds(100));
  return true;
}

}  // namespace registrar
