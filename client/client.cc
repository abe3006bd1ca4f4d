#include "client/client.h"

#include <algorithm>
#include <chrono>
#include <utility>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace registrar {
namespace {

std::shared_ptr<grpc::Channel> MakeChannel(const ClientOptions& options) {
  grpc::ChannelArguments args;
  args.SetUserAgentPrefix("registrar-client/0.1");
  std::shared_ptr<grpc::ChannelCredentials> credentials =
      options.credentials ? options.credentials
                          : grpc::InsecureChannelCredentials();
  return grpc::CreateCustomChannel(options.target, credentials, args);
}

}  // namespace

// Copies `options`: moving it here could happen before MakeChannel reads it
// (argument evaluation order is unspecified).
Client::Client(ClientOptions options) : Client(MakeChannel(options), options) {}

Client::Client(std::shared_ptr<grpc::Channel> channel, ClientOptions options)
    : Client(v1::Registrar::NewStub(std::move(channel)), std::move(options)) {}

Client::Client(std::unique_ptr<v1::Registrar::StubInterface> stub,
               ClientOptions options)
    : options_(std::move(options)), stub_(std::move(stub)) {}

absl::Duration Client::Backoff(int attempt) const {
  // Exponential growth capped at max_backoff, then "equal jitter": a random
  // point in [d/2, d], so callers retrying together spread out but still
  // wait at least half the nominal delay.
  absl::Duration nominal = options_.initial_backoff;
  for (int i = 1; i < attempt && nominal < options_.max_backoff; ++i) {
    nominal *= 2;
  }
  nominal = std::clamp(nominal, absl::ZeroDuration(), options_.max_backoff);
  if (nominal <= absl::ZeroDuration()) return absl::ZeroDuration();
  // A local generator: only built on the (rare) retry path and keeps Backoff
  // free of shared mutable state.
  absl::BitGen gen;
  const int64_t nanos = absl::ToInt64Nanoseconds(nominal);
  return absl::Nanoseconds(absl::Uniform<int64_t>(absl::IntervalClosedClosed,
                                                  gen, nanos / 2, nanos));
}

template <typename Request, typename Response>
absl::StatusOr<Response> Client::Call(Method<Request, Response> method,
                                      const Request& request,
                                      std::optional<absl::Duration> timeout,
                                      bool retryable) {
  const absl::Time deadline = absl::Now() + timeout.value_or(options_.deadline);
  const int max_attempts = retryable ? std::max(1, options_.max_attempts) : 1;
  absl::Status last;
  for (int attempt = 1;; ++attempt) {
    // A fresh context per attempt (contexts are single-use), all sharing the
    // call's overall deadline.
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    Response response;
    grpc::Status status = ((*stub_).*method)(&context, request, &response);
    if (status.ok()) return response;
    last = grpc_status::ToAbsl(status);
    if (last.code() != absl::StatusCode::kUnavailable ||
        attempt >= max_attempts) {
      return last;
    }
    absl::Duration delay = Backoff(attempt);
    if (std::optional<absl::Duration> hint = grpc_status::GetRetryDelay(last)) {
      delay = std::max(delay, *hint);
    }
    // Sleeping past the deadline would only end in DEADLINE_EXCEEDED; the
    // UNAVAILABLE we have is the more useful answer.
    if (absl::Now() + delay >= deadline) return last;
    absl::SleepFor(delay);
  }
}

absl::StatusOr<v1::IssueResponse> Client::Issue(
    const v1::IssueRequest& request, std::optional<absl::Duration> timeout) {
  return Call(&Stub::Issue, request, timeout, /*retryable=*/false);
}

absl::StatusOr<std::vector<std::string>> Client::IssueIds(
    v1::Kind kind, const v1::Owner& owner, uint32_t count,
    const IssueOptions& issue_options, std::optional<absl::Duration> timeout) {
  v1::IssueRequest request;
  request.set_kind(kind);
  *request.mutable_owner() = owner;
  request.set_count(count);
  request.set_parent_id(issue_options.parent_id);
  request.set_connection_id(issue_options.connection_id);
  request.set_lease_id(issue_options.lease_id);
  request.mutable_labels()->insert(issue_options.labels.begin(),
                                   issue_options.labels.end());
  absl::StatusOr<v1::IssueResponse> response = Issue(request, timeout);
  if (!response.ok()) return response.status();
  const int expected = count == 0 ? 1 : static_cast<int>(count);
  if (response->ids_size() != expected) {
    return absl::InternalError(absl::StrCat("Issue asked for ", expected,
                                            " IDs, server returned ",
                                            response->ids_size()));
  }
  return std::vector<std::string>(response->ids().begin(),
                                  response->ids().end());
}

absl::StatusOr<v1::OpenContextResponse> Client::OpenContext(
    const v1::OpenContextRequest& request,
    std::optional<absl::Duration> timeout) {
  return Call(&Stub::OpenContext, request, timeout, /*retryable=*/false);
}

absl::StatusOr<v1::ValidateResponse> Client::Validate(
    const v1::ValidateRequest& request, std::optional<absl::Duration> timeout) {
  return Call(&Stub::Validate, request, timeout, /*retryable=*/true);
}

absl::StatusOr<v1::CleanupResponse> Client::Cleanup(
    const v1::CleanupRequest& request, std::optional<absl::Duration> timeout) {
  return Call(&Stub::Cleanup, request, timeout, /*retryable=*/true);
}

absl::StatusOr<v1::GrantLeaseResponse> Client::GrantLease(
    const v1::GrantLeaseRequest& request,
    std::optional<absl::Duration> timeout) {
  return Call(&Stub::GrantLease, request, timeout, /*retryable=*/false);
}

absl::StatusOr<v1::KeepAliveResponse> Client::KeepAlive(
    const v1::KeepAliveRequest& request,
    std::optional<absl::Duration> timeout) {
  return Call(&Stub::KeepAlive, request, timeout, /*retryable=*/true);
}

absl::StatusOr<v1::RevokeLeaseResponse> Client::RevokeLease(
    const v1::RevokeLeaseRequest& request,
    std::optional<absl::Duration> timeout) {
  return Call(&Stub::RevokeLease, request, timeout, /*retryable=*/false);
}

absl::StatusOr<v1::DescribeResponse> Client::Describe(
    const v1::DescribeRequest& request, std::optional<absl::Duration> timeout) {
  return Call(&Stub::Describe, request, timeout, /*retryable=*/true);
}

absl::StatusOr<v1::ListOwnedResponse> Client::ListOwned(
    const v1::ListOwnedRequest& request,
    std::optional<absl::Duration> timeout) {
  return Call(&Stub::ListOwned, request, timeout, /*retryable=*/true);
}

absl::Status Client::Watch(
    const v1::WatchRequest& request,
    const std::function<bool(const v1::WatchEvent&)>& on_event,
    grpc::ClientContext* context) {
  grpc::ClientContext own_context;
  if (context == nullptr) context = &own_context;
  std::unique_ptr<grpc::ClientReaderInterface<v1::WatchEvent>> reader =
      stub_->Watch(context, request);
  v1::WatchEvent event;
  bool stopped = false;
  while (reader->Read(&event)) {
    if (!on_event(event)) {
      stopped = true;
      context->TryCancel();
      while (reader->Read(&event)) {
      }
      break;
    }
  }
  grpc::Status status = reader->Finish();
  if (stopped) return absl::OkStatus();
  return grpc_status::ToAbsl(status);
}

}  // namespace registrar
