#ifndef REGISTRAR_CLIENT_CLIENT_H_
#define REGISTRAR_CLIENT_CLIENT_H_

// Thin, typed C++ client for the registrar.v1.Registrar service.
//
// Every call returns absl::StatusOr<response>. Failures keep the gRPC code
// and message; the server's rich error details (google.rpc.BadRequest,
// RetryInfo, ...) travel in the status payload and are read with the helpers
// in client/rpc_status.h, e.g. grpc_status::GetBadRequest(result.status()).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/rpc_status.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "registrar/v1/registrar.pb.h"

namespace registrar {

struct ClientOptions {
  // gRPC target, e.g. "127.0.0.1:50051" or "dns:///registrar:50051".
  std::string target = "127.0.0.1:50051";
  // Default per-call deadline, covering all attempts and backoff sleeps.
  absl::Duration deadline = absl::Seconds(5);
  // Attempts per retryable call (first try included); values < 1 mean 1.
  int max_attempts = 4;
  // Backoff before the 2nd attempt; doubles per attempt up to max_backoff.
  absl::Duration initial_backoff = absl::Milliseconds(50);
  absl::Duration max_backoff = absl::Seconds(2);
  // Channel credentials; null means grpc::InsecureChannelCredentials().
  std::shared_ptr<grpc::ChannelCredentials> credentials;
};

// Optional fields of an IssueIds call.
struct IssueOptions {
  std::string parent_id;      // thread of a run, run of a request
  std::string connection_id;  // connection the records are opened through
  std::string lease_id;       // connections only: the lease to bind to
  std::map<std::string, std::string> labels;
};

// A Registrar client. Thread-safe: one instance (one channel) is meant to be
// shared by every thread of a gateway process. Calls block the caller.
//
// Deadlines: each call gets `timeout` when given, else options.deadline.
// That deadline bounds the whole call, retries and backoff included; when it
// passes the call fails with DEADLINE_EXCEEDED (or the last UNAVAILABLE).
//
// Retries: only calls that are safe to repeat (Validate, Describe,
// ListOwned, KeepAlive, Cleanup) are retried, and only on UNAVAILABLE, up to
// options.max_attempts, with exponential backoff and jitter; a RetryInfo in
// the error's details sets the minimum delay. Issue, OpenContext, GrantLease
// and RevokeLease are never retried: a lost reply could mean the server
// already acted, and repeating would mint or end things twice.
class Client {
 public:
  // Creates a channel to options.target. Does not connect until first use,
  // so an unreachable server shows up as UNAVAILABLE from the calls.
  explicit Client(ClientOptions options = {});
  // Uses an existing channel (options.target and credentials are ignored).
  explicit Client(std::shared_ptr<grpc::Channel> channel,
                  ClientOptions options = {});
  // Uses the given stub, e.g. a mock in tests (target/credentials ignored).
  Client(std::unique_ptr<v1::Registrar::StubInterface> stub,
         ClientOptions options);

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const ClientOptions& options() const { return options_; }

  // Mints request.count() IDs. Not retried.
  absl::StatusOr<v1::IssueResponse> Issue(
      const v1::IssueRequest& request,
      std::optional<absl::Duration> timeout = std::nullopt);

  // Convenience over Issue: mints `count` (0 means 1) IDs of `kind` for
  // `owner` and returns them in increasing order. INTERNAL if the server
  // returns a different number of IDs than asked for. Not retried.
  absl::StatusOr<std::vector<std::string>> IssueIds(
      v1::Kind kind, const v1::Owner& owner, uint32_t count = 1,
      const IssueOptions& issue_options = {},
      std::optional<absl::Duration> timeout = std::nullopt);

  // The gateway's per-message call: thread (reused or new), run, request.
  // Not retried.
  absl::StatusOr<v1::OpenContextResponse> OpenContext(
      const v1::OpenContextRequest& request,
      std::optional<absl::Duration> timeout = std::nullopt);

  // A verdict per item, same order. Retried.
  absl::StatusOr<v1::ValidateResponse> Validate(
      const v1::ValidateRequest& request,
      std::optional<absl::Duration> timeout = std::nullopt);

  // Owner-scoped release. Retried (Cleanup is idempotent). Caveat: if an
  // attempt was applied but its reply lost, the retry reports those records
  // in already_ended rather than released.
  absl::StatusOr<v1::CleanupResponse> Cleanup(
      const v1::CleanupRequest& request,
      std::optional<absl::Duration> timeout = std::nullopt);

  // Not retried (a retry after a lost reply would grant a second lease).
  absl::StatusOr<v1::GrantLeaseResponse> GrantLease(
      const v1::GrantLeaseRequest& request,
      std::optional<absl::Duration> timeout = std::nullopt);

  // Renews a lease; NOT_FOUND once it expired or was revoked. Retried.
  absl::StatusOr<v1::KeepAliveResponse> KeepAlive(
      const v1::KeepAliveRequest& request,
      std::optional<absl::Duration> timeout = std::nullopt);

  // Ends a lease and its connections. Not retried (a retry after a lost
  // reply would return NOT_FOUND and hide what was released).
  absl::StatusOr<v1::RevokeLeaseResponse> RevokeLease(
      const v1::RevokeLeaseRequest& request,
      std::optional<absl::Duration> timeout = std::nullopt);

  // The full record; NOT_FOUND when none is held. Retried.
  absl::StatusOr<v1::DescribeResponse> Describe(
      const v1::DescribeRequest& request,
      std::optional<absl::Duration> timeout = std::nullopt);

  // One page of an owner's records. Retried.
  absl::StatusOr<v1::ListOwnedResponse> ListOwned(
      const v1::ListOwnedRequest& request,
      std::optional<absl::Duration> timeout = std::nullopt);

  // Watch: blocks, calling `on_event` for each event (revision order, from
  // request.start_revision(); 0 = from now) until on_event returns false
  // (then OK), or the stream ends: then the server's status, e.g.
  // OUT_OF_RANGE (start older than the retained history; the message names
  // the oldest available revision), RESOURCE_EXHAUSTED (too slow a reader,
  // or too many watchers), UNAVAILABLE (server shutting down or gone),
  // CANCELLED (`context` cancelled). No deadline and no retry: to resume
  // without gap or duplicate, call again with start_revision = last
  // received revision + 1.
  //
  // `context` (optional) is the call's context: another thread may
  // TryCancel() it to stop the watch; the caller may also set a deadline or
  // metadata on it. It must be fresh (contexts are single-use).
  absl::Status Watch(const v1::WatchRequest& request,
                     const std::function<bool(const v1::WatchEvent&)>& on_event,
                     grpc::ClientContext* context = nullptr);

 private:
  using Stub = v1::Registrar::StubInterface;
  template <typename Request, typename Response>
  using Method = grpc::Status (Stub::*)(grpc::ClientContext*, const Request&,
                                        Response*);

  // Runs one RPC with the deadline and retry policy described above.
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(Method<Request, Response> method,
                                const Request& request,
                                std::optional<absl::Duration> timeout,
                                bool retryable);

  // Backoff before attempt `attempt + 1` (attempt >= 1), jittered.
  absl::Duration Backoff(int attempt) const;

  const ClientOptions options_;
  const std::unique_ptr<Stub> stub_;  // gRPC stubs are thread-safe
};

}  // namespace registrar

#endif  // REGISTRAR_CLIENT_CLIENT_H_
