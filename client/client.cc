#include "client/client.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>

#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace registrar {
namespace {

// Largest TLS file read (certificate chains and CA bundles are far smaller).
constexpr std::streamsize kMaxPemFileBytes = 4 << 20;

// Reads a PEM file named by option `option`; INVALID_ARGUMENT naming the
// option and the path when it cannot be read or holds no PEM block.
absl::StatusOr<std::string> ReadPemFile(absl::string_view option,
                                        const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(
        option, ": cannot read ", path, ": ", std::strerror(errno)));
  }
  std::string text;
  char buf[8192];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (static_cast<std::streamsize>(text.size()) > kMaxPemFileBytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          option, ": ", path, " is larger than ", kMaxPemFileBytes, " bytes"));
    }
  }
  if (in.bad()) {
    return absl::InvalidArgumentError(
        absl::StrCat(option, ": error reading ", path));
  }
  // gRPC would accept an empty root set and fall back to the system roots,
  // or fail the handshake much later with an obscure message.
  if (!absl::StrContains(text, "-----BEGIN ")) {
    return absl::InvalidArgumentError(
        absl::StrCat(option, ": ", path, " holds no PEM data"));
  }
  return text;
}

bool UsesTls(const ClientOptions& options) {
  return !options.tls_ca_file.empty() || !options.tls_cert_file.empty() ||
         !options.tls_key_file.empty() || !options.tls_server_name.empty();
}

// The token must fit an HTTP/2 header value. Never echo it.
absl::Status CheckBearerToken(const std::string& token) {
  for (const char c : token) {
    if (c < 0x20 || c > 0x7e) {
      return absl::InvalidArgumentError(
          "bearer_token has a character that is not printable ASCII "
          "(metadata cannot carry it)");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials(
    const ClientOptions& options) {
  if (options.credentials) return options.credentials;
  if (!UsesTls(options)) return grpc::InsecureChannelCredentials();
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        options.tls_cert_file.empty()
            ? "tls_key_file is set but tls_cert_file is not: give both"
            : "tls_cert_file is set but tls_key_file is not: give both");
  }
  grpc::SslCredentialsOptions ssl;
  if (!options.tls_ca_file.empty()) {
    absl::StatusOr<std::string> roots =
        ReadPemFile("tls_ca_file", options.tls_ca_file);
    if (!roots.ok()) return roots.status();
    ssl.pem_root_certs = *std::move(roots);
  }
  if (!options.tls_cert_file.empty()) {
    absl::StatusOr<std::string> chain =
        ReadPemFile("tls_cert_file", options.tls_cert_file);
    if (!chain.ok()) return chain.status();
    absl::StatusOr<std::string> key =
        ReadPemFile("tls_key_file", options.tls_key_file);
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(chain);
    ssl.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(ssl);
}

// The bearer token checked, then the channel credentials: what every
// channel of a Client needs, and every option error Create() reports.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> CheckedCredentials(
    const ClientOptions& options) {
  if (absl::Status st = CheckBearerToken(options.bearer_token); !st.ok()) {
    return st;
  }
  return MakeCredentials(options);
}

// The endpoints of `target`: several when it lists "host:port"s separated
// by commas, else `target` itself (a URI such as "ipv4:a,b" keeps its
// commas: gRPC reads it).
std::vector<std::string> SplitTarget(const std::string& target) {
  if (absl::StrContains(target, ":///") || absl::StartsWith(target, "ipv4:") ||
      absl::StartsWith(target, "ipv6:") || absl::StartsWith(target, "unix:")) {
    return {target};
  }
  std::vector<std::string> out;
  for (absl::string_view part : absl::StrSplit(target, ',')) {
    part = absl::StripAsciiWhitespace(part);
    if (!part.empty()) out.emplace_back(part);
  }
  if (out.empty()) out.push_back(target);
  return out;
}

// Spread calls over every address a name resolves to, skipping those that
// cannot be reached (the default, pick_first, sticks to one address).
constexpr char kServiceConfig[] =
    R"({"loadBalancingConfig": [{"round_robin": {}}]})";

absl::StatusOr<std::shared_ptr<grpc::Channel>> ChannelTo(
    const std::string& target, const ClientOptions& options,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  grpc::ChannelArguments args;
  args.SetUserAgentPrefix("registrar-client/0.1");
  args.SetServiceConfigJSON(kServiceConfig);
  const int max_backoff_ms = static_cast<int>(std::clamp<int64_t>(
      absl::ToInt64Milliseconds(options.max_reconnect_backoff), 1, 120'000));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, max_backoff_ms);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS,
              std::min(100, std::max(1, max_backoff_ms / 10)));
  if (!options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  return grpc::CreateCustomChannel(target, credentials, args);
}

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::Channel>> Client::CreateChannel(
    const ClientOptions& options) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      CheckedCredentials(options);
  if (!credentials.ok()) return credentials.status();
  return ChannelTo(SplitTarget(options.target).front(), options, *credentials);
}

// Every endpoint of options.target, as Client(ClientOptions) makes them
// (not CreateChannel's first one only), with its errors returned here.
absl::StatusOr<std::unique_ptr<Client>> Client::Create(ClientOptions options) {
  Setup setup = SetupFrom(options);
  if (!setup.error.ok()) return setup.error;
  return std::unique_ptr<Client>(
      new Client(std::move(setup), std::move(options)));
}

Client::Setup Client::SetupFrom(const ClientOptions& options) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> credentials =
      CheckedCredentials(options);
  if (!credentials.ok()) return Setup{credentials.status(), {}};
  Setup setup;
  for (std::string& target : SplitTarget(options.target)) {
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
        ChannelTo(target, options, *credentials);
    if (!channel.ok()) return Setup{channel.status(), {}};
    Endpoint& e = setup.endpoints.emplace_back();
    e.target = std::move(target);
    e.channel = *std::move(channel);
    e.stub = v1::Registrar::NewStub(e.channel);
  }
  return setup;
}

Client::Setup Client::SetupFromStub(std::unique_ptr<Stub> stub,
                                    std::shared_ptr<grpc::Channel> channel) {
  Setup setup;
  Endpoint& e = setup.endpoints.emplace_back();
  e.channel = std::move(channel);
  e.stub = std::move(stub);
  return setup;
}

// Copies `options`: moving it here could happen before SetupFrom reads it
// (argument evaluation order is unspecified).
Client::Client(ClientOptions options) : Client(SetupFrom(options), options) {}

Client::Client(std::shared_ptr<grpc::Channel> channel, ClientOptions options)
    : Client(SetupFromStub(v1::Registrar::NewStub(channel), channel),
             std::move(options)) {}

Client::Client(std::unique_ptr<v1::Registrar::StubInterface> stub,
               ClientOptions options)
    : Client(SetupFromStub(std::move(stub), nullptr), std::move(options)) {}

// The token is checked here, on the member, for the constructors that take
// a channel or stub (SetupFrom has checked it for the others).
Client::Client(Setup setup, ClientOptions options)
    : options_(std::move(options)),
      setup_error_(setup.error.ok() ? CheckBearerToken(options_.bearer_token)
                                    : std::move(setup.error)),
      endpoints_(std::move(setup.endpoints)) {}

size_t Client::FirstEndpoint() {
  if (endpoints_.size() <= 1) return 0;
  return next_endpoint_.fetch_add(1, std::memory_order_relaxed) %
         endpoints_.size();
}

bool Client::Connected(const Endpoint& endpoint, absl::Time until) {
  if (endpoint.channel == nullptr) return true;  // a given stub: just send
  grpc_connectivity_state state =
      endpoint.channel->GetState(/*try_to_connect=*/true);
  while (state != GRPC_CHANNEL_READY) {
    // A failed connection is retried only after gRPC's reconnect backoff
    // (up to minutes): not worth waiting for within a call.
    if (state == GRPC_CHANNEL_TRANSIENT_FAILURE ||
        state == GRPC_CHANNEL_SHUTDOWN) {
      return false;
    }
    if (!endpoint.channel->WaitForStateChange(state,
                                              absl::ToChronoTime(until))) {
      return false;
    }
    state = endpoint.channel->GetState(/*try_to_connect=*/true);
  }
  return true;
}

void Client::PrepareContext(grpc::ClientContext& context) const {
  if (!options_.bearer_token.empty()) {
    context.AddMetadata("authorization",
                        absl::StrCat("Bearer ", options_.bearer_token));
  }
}

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
                                      bool repeatable) {
  if (!setup_error_.ok()) return setup_error_;
  const absl::Time deadline = absl::Now() + timeout.value_or(options_.deadline);
  const int max_attempts = std::max(1, options_.max_attempts);
  const size_t n = endpoints_.size();
  size_t at = FirstEndpoint();
  size_t tried = 0;  // endpoints tried since the last backoff wait
  absl::Status last;
  for (int attempt = 1;; ++attempt) {
    bool sent = true;
    // A call that may not be repeated goes only to a connected endpoint:
    // this one or the next in turn that is, or connects in time.
    if (!repeatable && n > 1) {
      size_t skipped = 0;
      while (skipped < n &&
             !Connected(
                 endpoints_[at],
                 std::min(deadline, absl::Now() + options_.connect_timeout))) {
        at = (at + 1) % n;
        ++skipped;
      }
      if (skipped == n) {
        sent = false;
        last = absl::UnavailableError(
            absl::StrCat("none of ", options_.target, " is connected"));
      }
    }
    if (sent) {
      // A fresh context per attempt (contexts are single-use), all sharing
      // the call's overall deadline.
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(deadline));
      PrepareContext(context);
      Response response;
      grpc::Status status =
          ((*endpoints_[at].stub).*method)(&context, request, &response);
      if (status.ok()) return response;
      last = grpc_status::ToAbsl(status);
    }
    const std::optional<absl::Duration> hint = grpc_status::GetRetryDelay(last);
    // Throttled (RESOURCE_EXHAUSTED + RetryInfo) or not applied (a replica
    // that could not pass the call on): rejected before the server did
    // anything, so every call may be repeated; likewise when nothing was
    // sent.
    const bool rejected = grpc_status::IsRetryableThrottle(last) ||
                          grpc_status::IsNotApplied(last);
    const bool unavailable =
        (repeatable || !sent) && last.code() == absl::StatusCode::kUnavailable;
    if (!(rejected || unavailable) || attempt >= max_attempts) return last;
    // The next attempt goes to the next endpoint, at once until every
    // endpoint was tried; then after a backoff wait.
    at = (at + 1) % n;
    if (sent && !hint && ++tried < n) continue;  // next endpoint at once
    tried = 0;
    absl::Duration delay = Backoff(attempt);
    if (hint) delay = std::max(delay, *hint);
    // Sleeping past the deadline would only end in DEADLINE_EXCEEDED; the
    // error we have (with its RetryInfo) is the more useful answer.
    if (absl::Now() + delay >= deadline) return last;
    absl::SleepFor(delay);
  }
}

absl::StatusOr<v1::IssueResponse> Client::Issue(
    const v1::IssueRequest& request, std::optional<absl::Duration> timeout) {
  return Call(&Stub::Issue, request, timeout, /*repeatable=*/false);
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
  return Call(&Stub::OpenContext, request, timeout, /*repeatable=*/false);
}

absl::StatusOr<v1::ValidateResponse> Client::Validate(
    const v1::ValidateRequest& request, std::optional<absl::Duration> timeout) {
  return Call(&Stub::Validate, request, timeout, /*repeatable=*/true);
}

absl::StatusOr<v1::CleanupResponse> Client::Cleanup(
    const v1::CleanupRequest& request, std::optional<absl::Duration> timeout) {
  return Call(&Stub::Cleanup, request, timeout, /*repeatable=*/true);
}

absl::StatusOr<v1::GrantLeaseResponse> Client::GrantLease(
    const v1::GrantLeaseRequest& request,
    std::optional<absl::Duration> timeout) {
  return Call(&Stub::GrantLease, request, timeout, /*repeatable=*/false);
}

absl::StatusOr<v1::KeepAliveResponse> Client::KeepAlive(
    const v1::KeepAliveRequest& request,
    std::optional<absl::Duration> timeout) {
  return Call(&Stub::KeepAlive, request, timeout, /*repeatable=*/true);
}

absl::StatusOr<v1::RevokeLeaseResponse> Client::RevokeLease(
    const v1::RevokeLeaseRequest& request,
    std::optional<absl::Duration> timeout) {
  return Call(&Stub::RevokeLease, request, timeout, /*repeatable=*/false);
}

absl::StatusOr<v1::DescribeResponse> Client::Describe(
    const v1::DescribeRequest& request, std::optional<absl::Duration> timeout) {
  return Call(&Stub::Describe, request, timeout, /*repeatable=*/true);
}

absl::StatusOr<v1::ListOwnedResponse> Client::ListOwned(
    const v1::ListOwnedRequest& request,
    std::optional<absl::Duration> timeout) {
  return Call(&Stub::ListOwned, request, timeout, /*repeatable=*/true);
}

absl::Status Client::Watch(
    const v1::WatchRequest& request,
    const std::function<bool(const v1::WatchEvent&)>& on_event,
    grpc::ClientContext* context) {
  if (!setup_error_.ok()) return setup_error_;
  grpc::ClientContext own_context;
  if (context == nullptr) context = &own_context;
  PrepareContext(*context);
  std::unique_ptr<grpc::ClientReaderInterface<v1::WatchEvent>> reader =
      endpoints_[FirstEndpoint()].stub->Watch(context, request);
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
