#ifndef REGISTRAR_CLIENT_CLIENT_H_
#define REGISTRAR_CLIENT_CLIENT_H_

// Thin, typed C++ client for the registrar.v1.Registrar service.
//
// Every call returns absl::StatusOr<response>. Failures keep the gRPC code
// and message; the server's rich error details (google.rpc.BadRequest,
// RetryInfo, ...) travel in the status payload and are read with the helpers
// in client/rpc_status.h, e.g. grpc_status::GetBadRequest(result.status()).

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/rpc_status.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "registrar/v1/registrar.pb.h"

namespace registrar {

struct ClientOptions {
  // Where the server is:
  //  - one gRPC target, e.g. "127.0.0.1:50051", or a DNS name that resolves
  //    to every replica of a cluster, e.g. "dns:///registrar:50051" (a
  //    Kubernetes headless Service): calls are spread over all the
  //    addresses it resolves to (round robin), skipping unreachable ones;
  //  - or several replicas' "host:port", separated by commas, e.g.
  //    "10.0.0.1:50051,10.0.0.2:50051": one channel each, calls spread
  //    over them in turn and failing over as the Client comment says.
  std::string target = "127.0.0.1:50051";
  // With several endpoints in `target`: how long a call that may not be
  // repeated (Issue, ...) waits for an endpoint that is not connected yet
  // to connect before it moves on to the next one, sending nothing there.
  absl::Duration connect_timeout = absl::Seconds(1);
  // How long a channel whose endpoint went away waits at most between
  // attempts to connect again (gRPC's reconnect backoff starts at a tenth
  // of it, capped at 100 ms, and grows 1.6x). gRPC's own default grows to
  // 120 s: a replica restarted after a few failed attempts would then stay
  // unused for seconds, and with two such replicas and the third killed a
  // client found none connected for 9 s (replicas_chaos_test).
  absl::Duration max_reconnect_backoff = absl::Seconds(1);
  // Default per-call deadline, covering all attempts and backoff sleeps.
  absl::Duration deadline = absl::Seconds(5);
  // Attempts per call (first try included) when a retry is allowed (see the
  // Client comment); values < 1 mean 1.
  int max_attempts = 4;
  // Backoff before the 2nd attempt; doubles per attempt up to max_backoff.
  absl::Duration initial_backoff = absl::Milliseconds(50);
  absl::Duration max_backoff = absl::Seconds(2);

  // Transport security. The channel uses TLS when any tls_* field is set,
  // plaintext otherwise.
  //
  // PEM file of the CA certificate(s) the server's certificate must chain
  // to. Empty with TLS on: the system's default roots.
  std::string tls_ca_file;
  // PEM files of this client's certificate (chain) and private key, for
  // servers that require client certificates (mutual TLS). Both or neither.
  std::string tls_cert_file;
  std::string tls_key_file;
  // The name checked against the server certificate's SAN instead of the
  // host in `target`, e.g. "registrar.internal" when dialing 127.0.0.1.
  std::string tls_server_name;

  // Bearer token sent as "authorization: Bearer <token>" metadata on every
  // call, Watch included; empty sends none. Printable ASCII only. Never
  // logged or put in error messages by this library. Over plaintext anyone
  // on the path can read it: use TLS off loopback.
  std::string bearer_token;

  // Explicit channel credentials, e.g. for a custom TLS setup. When set it
  // wins: tls_ca_file, tls_cert_file and tls_key_file are ignored
  // (tls_server_name still applies). Null: built from the tls_* fields.
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
// passes the call fails with DEADLINE_EXCEEDED (or the last retryable error
// when the next wait would not end before it).
//
// Retries, up to options.max_attempts attempts per call:
//  - UNAVAILABLE: only calls that are safe to repeat (Validate, Describe,
//    ListOwned, KeepAlive, Cleanup) are retried, with exponential backoff
//    and jitter; a RetryInfo in the error's details sets the minimum delay.
//    Issue, OpenContext, GrantLease and RevokeLease are not: a lost reply
//    could mean the server already acted, and repeating would mint or end
//    things twice.
//  - RESOURCE_EXHAUSTED with a google.rpc.RetryInfo detail (the server's
//    per-caller rate limit or in-flight bound): EVERY unary call is retried,
//    Issue and the other non-repeatable ones included, because the server
//    rejected the call before doing anything. The wait is the larger of the
//    RetryInfo delay and the backoff. If that wait would pass the deadline,
//    the call returns the RESOURCE_EXHAUSTED at once (read the delay with
//    grpc_status::GetRetryDelay).
//  - RESOURCE_EXHAUSTED without RetryInfo (an owner's live-record quota, a
//    batch limit: QuotaFailure detail only, see grpc_status::GetQuotaFailure)
//    is never retried; nor is anything else.
// Watch is never retried (see Watch).
//
// Several endpoints (a comma-separated `target`): each call starts on the
// next endpoint in turn, and every retry above goes to the next endpoint
// (without a backoff wait until each endpoint was tried once). A call that
// may not be repeated is never sent to an endpoint that is not connected:
// it first waits up to options.connect_timeout for that endpoint to
// connect and otherwise moves on to the next one (nothing was sent, so
// this costs no attempt); once sent, an UNAVAILABLE without RetryInfo ends
// it as above. UNAVAILABLE marked "not applied" (grpc_status::IsNotApplied:
// a cluster replica that could not pass a change on to the writer) is
// retried for every call, like a throttled RESOURCE_EXHAUSTED.
//
// Credentials: see ClientOptions. Create() reads the TLS files and reports
// problems up front; the constructors cannot fail, so a Client constructed
// from options with unreadable files returns that INVALID_ARGUMENT from
// every call instead.
class Client {
 public:
  // Checks `options` and reads its TLS files, then creates the client.
  // INVALID_ARGUMENT naming the option (and path) when a file cannot be
  // read or holds no PEM data, when only one of tls_cert_file/tls_key_file
  // is set, or when bearer_token has characters metadata cannot carry.
  static absl::StatusOr<std::unique_ptr<Client>> Create(ClientOptions options);

  // A channel as Create() and Client(ClientOptions) make them: credentials
  // and channel arguments from `options`, to options.target or, when it
  // lists several endpoints, to the first. Errors as for Create(). For
  // callers that need a channel for other services (e.g. health checks).
  static absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateChannel(
      const ClientOptions& options);

  // Creates a channel to options.target. Does not connect until first use,
  // so an unreachable server shows up as UNAVAILABLE from the calls. Errors
  // that Create() would return are returned by every call instead.
  explicit Client(ClientOptions options = {});
  // Uses an existing channel (options.target and the transport fields are
  // ignored; bearer_token is sent).
  explicit Client(std::shared_ptr<grpc::Channel> channel,
                  ClientOptions options = {});
  // Uses the given stub, e.g. a mock in tests (target and transport fields
  // ignored; bearer_token is sent).
  Client(std::unique_ptr<v1::Registrar::StubInterface> stub,
         ClientOptions options);

  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  const ClientOptions& options() const { return options_; }

  // Mints request.count() IDs. Retried only when throttled (see above).
  absl::StatusOr<v1::IssueResponse> Issue(
      const v1::IssueRequest& request,
      std::optional<absl::Duration> timeout = std::nullopt);

  // Convenience over Issue: mints `count` (0 means 1) IDs of `kind` for
  // `owner` and returns them in increasing order. INTERNAL if the server
  // returns a different number of IDs than asked for. Retried only when
  // throttled.
  absl::StatusOr<std::vector<std::string>> IssueIds(
      v1::Kind kind, const v1::Owner& owner, uint32_t count = 1,
      const IssueOptions& issue_options = {},
      std::optional<absl::Duration> timeout = std::nullopt);

  // The gateway's per-message call: thread (reused or new), run, request.
  // Retried only when throttled.
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

  // Retried only when throttled (a retry after a lost reply would grant a
  // second lease).
  absl::StatusOr<v1::GrantLeaseResponse> GrantLease(
      const v1::GrantLeaseRequest& request,
      std::optional<absl::Duration> timeout = std::nullopt);

  // Renews a lease; NOT_FOUND once it expired or was revoked. Retried.
  absl::StatusOr<v1::KeepAliveResponse> KeepAlive(
      const v1::KeepAliveRequest& request,
      std::optional<absl::Duration> timeout = std::nullopt);

  // Ends a lease and its connections. Retried only when throttled (a retry
  // after a lost reply would return NOT_FOUND and hide what was released).
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
  // or too many watchers; with a RetryInfo when the server is throttling:
  // grpc_status::IsRetryableThrottle), UNAVAILABLE (server shutting down or
  // gone), CANCELLED (`context` cancelled). No deadline and no retry: to
  // resume without gap or duplicate, call again with start_revision = last
  // received revision + 1.
  //
  // `context` (optional) is the call's context: another thread may
  // TryCancel() it to stop the watch; the caller may also set a deadline or
  // metadata on it (the bearer token is added to it). It must be fresh
  // (contexts are single-use).
  absl::Status Watch(const v1::WatchRequest& request,
                     const std::function<bool(const v1::WatchEvent&)>& on_event,
                     grpc::ClientContext* context = nullptr);

 private:
  using Stub = v1::Registrar::StubInterface;
  template <typename Request, typename Response>
  using Method = grpc::Status (Stub::*)(grpc::ClientContext*, const Request&,
                                        Response*);

  // One server address: its channel (null when the Client was given a
  // stub) and stub.
  struct Endpoint {
    std::string target;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<Stub> stub;
  };

  // Runs one RPC with the deadline and retry policy described above;
  // `repeatable`: safe to retry on UNAVAILABLE.
  template <typename Request, typename Response>
  absl::StatusOr<Response> Call(Method<Request, Response> method,
                                const Request& request,
                                std::optional<absl::Duration> timeout,
                                bool repeatable);

  // Adds the call metadata every call carries (the bearer token).
  void PrepareContext(grpc::ClientContext& context) const;

  // Backoff before attempt `attempt + 1` (attempt >= 1), jittered.
  absl::Duration Backoff(int attempt) const;

  // True once `endpoint` is connected; false when it is not connected
  // and does not connect before `until` (nothing is sent either way).
  static bool Connected(const Endpoint& endpoint, absl::Time until);

  // What Client(ClientOptions) builds before delegating: the endpoints, or
  // the error Create() would return.
  struct Setup {
    absl::Status error;
    std::vector<Endpoint> endpoints;
  };
  static Setup SetupFrom(const ClientOptions& options);
  static Setup SetupFromStub(std::unique_ptr<Stub> stub,
                             std::shared_ptr<grpc::Channel> channel);
  Client(Setup setup, ClientOptions options);

  // The first endpoint of a call (round robin over the endpoints).
  size_t FirstEndpoint();

  const ClientOptions options_;
  const absl::Status setup_error_;  // OK unless the options were unusable
  // gRPC stubs and channels are thread-safe; empty when setup_error_ is set.
  const std::vector<Endpoint> endpoints_;
  std::atomic<uint32_t> next_endpoint_{0};
};

}  // namespace registrar

#endif  // REGISTRAR_CLIENT_CLIENT_H_
