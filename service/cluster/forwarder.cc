#include "service/cluster/forwarder.h"

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/time/clock.h"

namespace registrar::cluster {
namespace {

// What the writer needs of the caller: who it is (authorization) and how
// to trace it.
constexpr const char* kPassedOn[] = {"authorization", "x-request-id",
                                     "traceparent"};

// One forwarded call's state, until its completion.
struct ForwardedCall {
  grpc::ClientContext context;
  grpc::ByteBuffer request;
  std::shared_ptr<grpc::GenericStub> stub;  // outlives the call
  std::function<void(const grpc::Status&)> done;
};

}  // namespace

Forwarder::Forwarder(std::shared_ptr<grpc::ChannelCredentials> credentials,
                     std::string self, std::string server_name,
                     absl::Duration max_time)
    : credentials_(std::move(credentials)),
      self_(std::move(self)),
      server_name_(std::move(server_name)),
      max_time_(max_time) {}

bool Forwarder::WasForwarded(const grpc::CallbackServerContext& ctx) {
  return ctx.client_metadata().count(kForwardedHeader) > 0;
}

bool Forwarder::NeverSent(const grpc::Status& status) {
  // gRPC's own message when the channel's load balancer has no connection
  // to give the call (pick_first in TRANSIENT_FAILURE): it failed before
  // any byte was sent. The writer's own errors never start with it.
  return status.error_code() == grpc::StatusCode::UNAVAILABLE &&
         absl::StartsWith(status.error_message(),
                          "failed to connect to all addresses");
}

std::shared_ptr<grpc::GenericStub> Forwarder::StubFor(
    const std::string& address) {
  absl::MutexLock lock(&mu_);
  ++forwarded_;
  if (stub_ == nullptr || address != address_) {
    address_ = address;
    grpc::ChannelArguments args;
    if (!server_name_.empty()) args.SetSslTargetNameOverride(server_name_);
    channel_ = grpc::CreateCustomChannel(address, credentials_, args);
    stub_ = std::make_shared<grpc::GenericStub>(channel_);
  }
  return stub_;
}

void Forwarder::Forward(const std::string& address, const std::string& method,
                        grpc::CallbackServerContext* ctx,
                        const grpc::ByteBuffer& request,
                        grpc::ByteBuffer* response,
                        std::function<void(const grpc::Status&)> done) {
  auto* call = new ForwardedCall;
  call->stub = StubFor(address);
  call->request = request;  // shares the slices
  call->done = std::move(done);
  call->context.set_deadline(
      std::min(ctx->deadline(), absl::ToChronoTime(absl::Now() + max_time_)));
  const auto& metadata = ctx->client_metadata();
  for (const char* key : kPassedOn) {
    auto [begin, end] = metadata.equal_range(key);
    for (auto it = begin; it != end; ++it) {
      call->context.AddMetadata(
          key, std::string(it->second.data(), it->second.size()));
    }
  }
  call->context.AddMetadata(kForwardedHeader, self_);
  call->stub->UnaryCall(&call->context, method, grpc::StubOptions(),
                        &call->request, response, [call](grpc::Status status) {
                          call->done(status);
                          delete call;
                        });
}

uint64_t Forwarder::forwarded() const {
  absl::MutexLock lock(&mu_);
  return forwarded_;
}

}  // namespace registrar::cluster
