#ifndef REGISTRAR_CLIENT_LEASE_KEEPER_H_
#define REGISTRAR_CLIENT_LEASE_KEEPER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/client.h"
#include "registrar/v1/registrar.pb.h"
#include "service/common/clock.h"

namespace registrar {

// Holds one Registrar lease for a gateway instance and keeps it alive from a
// background thread, renewing it every ttl/3 (sooner after a failed renewal).
// The schedule runs on an injected Clock (the system clock by default); a
// test with a FakeClock turns the thread off and calls Tick() itself.
// Connection IDs opened through the keeper are bound to the lease, so the
// server releases them when the lease is revoked or expires.
//
// Lifecycle choice: destroying the keeper (or Stop()) only stops renewing;
// it does NOT revoke the lease. A gateway that crashes or is killed cannot
// revoke either, so "stop renewing, let the TTL end it" is the one behaviour
// both paths share, and the TTL bounds how long stale connections live.
// A clean shutdown calls Revoke() to end the lease and its connections at
// once.
//
// Thread-safe: all methods may be called from any thread. The Client passed
// to Start() must outlive the keeper.
class LeaseKeeper {
 public:
  // Called once, from the keeper's thread, when the lease is lost (a
  // KeepAlive answered NOT_FOUND), with that status. It must not destroy the
  // keeper or call Stop()/Revoke() (they join the calling thread); it should
  // only hand the news to the gateway, e.g. to close its WebSockets.
  using LossCallback = std::function<void(const absl::Status&)>;

  struct Options {
    LossCallback on_loss;
    // Time of the renewal schedule and of renewed_until(); the system clock
    // when null. Must outlive the keeper.
    const Clock* clock = nullptr;
    // False: no renewal thread; the caller renews by calling Tick() (tests
    // that step a FakeClock).
    bool renewal_thread = true;
  };

  // Grants a lease for `holder` with `ttl_seconds` and starts renewing it.
  // Fails with the GrantLease error (e.g. INVALID_ARGUMENT for an empty
  // holder or a TTL outside the server's limits); then no thread is started.
  static absl::StatusOr<std::unique_ptr<LeaseKeeper>> Start(
      Client& client, std::string holder, uint32_t ttl_seconds,
      LossCallback on_loss = nullptr);
  static absl::StatusOr<std::unique_ptr<LeaseKeeper>> Start(
      Client& client, std::string holder, uint32_t ttl_seconds,
      Options options);

  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;

  // Stops the renewal thread; does not revoke (see the class comment).
  ~LeaseKeeper();

  // The granted `lease_...` ID; fixed for the keeper's life.
  const std::string& lease_id() const { return lease_id_; }
  const std::string& holder() const { return holder_; }

  // The TTL last granted or renewed by the server (it may adjust the asked
  // value).
  uint32_t ttl_seconds() const ABSL_LOCKS_EXCLUDED(mu_);

  // False once the lease is known to be gone: a KeepAlive got NOT_FOUND, or
  // Revoke() was called. Transient renewal failures (UNAVAILABLE, deadline)
  // leave it true; check renewed_until() to tell how long the lease is
  // certain to have lived.
  bool healthy() const ABSL_LOCKS_EXCLUDED(mu_);

  // OK while healthy; the NOT_FOUND that lost the lease, or FAILED_PRECONDITION
  // after Revoke().
  absl::Status status() const ABSL_LOCKS_EXCLUDED(mu_);

  // Send time of the last successful grant/renewal plus its TTL: the server
  // cannot have expired the lease before this time (it starts counting after
  // it receives the request). In the past means the lease may be gone.
  absl::Time renewed_until() const ABSL_LOCKS_EXCLUDED(mu_);

  // Clock time at which the next KeepAlive is due.
  absl::Time next_renewal() const ABSL_LOCKS_EXCLUDED(mu_);

  // One step of the renewal schedule at the clock's present time: when a
  // KeepAlive is due (and the keeper is healthy and not stopped) sends it,
  // waits for the answer and applies it (a renewal, a loss reported to the
  // loss callback from this thread, or a sooner retry). Returns whether it
  // sent one. The renewal thread calls it when due; without the thread
  // (Options::renewal_thread false) the caller does.
  bool Tick() ABSL_LOCKS_EXCLUDED(mu_);

  // Stops renewing without revoking. Returns at once if the thread is
  // waiting, else after the in-flight KeepAlive (bounded by its deadline).
  // Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // Stops renewing and revokes the lease, ending every connection bound to
  // it (their runs and requests too). Returns the RevokeLease result, e.g.
  // NOT_FOUND if the lease had already expired. Afterwards healthy() is false
  // whatever the result; if the revoke failed the lease ends by its TTL.
  absl::StatusOr<v1::RevokeLeaseResponse> Revoke(
      std::optional<absl::Duration> timeout = std::nullopt)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Issues one KIND_CONNECTION ID for `owner`, bound to this lease, with
  // `labels`. FAILED_PRECONDITION without calling the server if the lease is
  // no longer healthy; otherwise the Issue error, if any.
  absl::StatusOr<std::string> OpenConnection(
      const v1::Owner& owner,
      const std::map<std::string, std::string>& labels = {},
      std::optional<absl::Duration> timeout = std::nullopt)
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  LeaseKeeper(Client& client, std::string holder, std::string lease_id,
              uint32_t ttl_seconds, absl::Time sent, Options options);

  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  // Interval between renewals for a TTL: a third of it, at least 100ms.
  static absl::Duration RenewInterval(uint32_t ttl_seconds);

  Client& client_;
  const std::string holder_;
  const std::string lease_id_;
  const LossCallback on_loss_;
  const Clock& clock_;

  mutable absl::Mutex mu_;
  absl::CondVar wake_;  // signalled by Stop()
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  uint32_t ttl_seconds_ ABSL_GUARDED_BY(mu_);
  absl::Time renewed_until_ ABSL_GUARDED_BY(mu_);
  absl::Time next_renewal_ ABSL_GUARDED_BY(mu_);
  absl::Status status_ ABSL_GUARDED_BY(mu_);

  // Serializes Stop() callers around join(); never held with mu_ while
  // waiting on the thread.
  absl::Mutex join_mu_;
  std::thread thread_ ABSL_GUARDED_BY(join_mu_);
};

}  // namespace registrar

#endif  // REGISTRAR_CLIENT_LEASE_KEEPER_H_
