#ifndef REGISTRAR_TESTS_UNIT_CLIENT_FAKE_REGISTRAR_H_
#define REGISTRAR_TESTS_UNIT_CLIENT_FAKE_REGISTRAR_H_

// A small real gRPC server for client tests: a callback implementation of
// registrar.v1.Registrar's Issue and Watch that can fail the first calls
// with a chosen status and rich details (QuotaFailure, RetryInfo), and
// records when each call arrived, its `authorization` metadata and the
// peer's TLS identity; GrantLease and KeepAlive answer with the asked TTL
// (KeepAlive fails with a chosen code when told) and record each
// KeepAlive's deadline.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/support/server_callback.h"
#include "registrar/v1/registrar.grpc.pb.h"

namespace registrar::client_test {

struct ObservedCall {
  absl::Time at;
  std::optional<std::string> authorization;      // the metadata value, if sent
  std::string peer_identity;                     // TLS peer identity, if any
  absl::Time deadline = absl::InfiniteFuture();  // KeepAlive only
};

class FakeRegistrar final : public v1::Registrar::CallbackService {
 public:
  // The next `count` Issue calls fail with `code`, a QuotaFailure and, when
  // `retry_delay` is set, a RetryInfo with that delay.
  void FailIssue(int count, std::optional<absl::Duration> retry_delay,
                 grpc::StatusCode code = grpc::StatusCode::RESOURCE_EXHAUSTED) {
    absl::MutexLock lock(&mu_);
    failures_left_ = count;
    retry_delay_ = retry_delay;
    failure_code_ = code;
  }

  // The failures FailIssue sets up carry the ErrorInfo of a replica that
  // did nothing with the call (grpc_status::IsNotApplied).
  void MarkFailuresNotApplied() {
    absl::MutexLock lock(&mu_);
    not_applied_ = true;
  }

  std::vector<ObservedCall> issue_calls() const {
    absl::MutexLock lock(&mu_);
    return issue_calls_;
  }
  std::vector<ObservedCall> watch_calls() const {
    absl::MutexLock lock(&mu_);
    return watch_calls_;
  }
  std::vector<ObservedCall> keep_alive_calls() const {
    absl::MutexLock lock(&mu_);
    return keep_alive_calls_;
  }
  // Every KeepAlive from now on fails with `code` (OK: they succeed).
  void FailKeepAlive(grpc::StatusCode code) {
    absl::MutexLock lock(&mu_);
    keep_alive_code_ = code;
  }

  grpc::ServerUnaryReactor* GrantLease(
      grpc::CallbackServerContext* context,
      const v1::GrantLeaseRequest* request,
      v1::GrantLeaseResponse* response) override {
    response->set_lease_id("lease_01m890mrhve008000me8f7x900");
    response->set_ttl_seconds(request->ttl_seconds());
    {
      absl::MutexLock lock(&mu_);
      lease_ttl_ = request->ttl_seconds();
    }
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* KeepAlive(
      grpc::CallbackServerContext* context, const v1::KeepAliveRequest* request,
      v1::KeepAliveResponse* response) override {
    grpc::Status status = grpc::Status::OK;
    {
      absl::MutexLock lock(&mu_);
      ObservedCall call = Observe(*context);
      call.deadline = absl::FromChrono(context->deadline());
      keep_alive_calls_.push_back(call);
      if (keep_alive_code_ != grpc::StatusCode::OK) {
        status = grpc::Status(keep_alive_code_, "told to fail");
      }
      response->set_lease_id(request->lease_id());
      response->set_ttl_seconds(lease_ttl_);
    }
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(status);
    return reactor;
  }

  grpc::ServerUnaryReactor* Issue(grpc::CallbackServerContext* context,
                                  const v1::IssueRequest* request,
                                  v1::IssueResponse* response) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    grpc::Status status = grpc::Status::OK;
    {
      absl::MutexLock lock(&mu_);
      issue_calls_.push_back(Observe(*context));
      if (failures_left_ > 0) {
        --failures_left_;
        status = Failure();
      }
    }
    if (status.ok()) {
      const uint32_t count = request->count() == 0 ? 1 : request->count();
      for (uint32_t i = 0; i < count; ++i) {
        response->add_ids("thread_01m890mrhve008000me8f7x90" +
                          std::to_string(i % 10));
      }
    }
    reactor->Finish(status);
    return reactor;
  }

  grpc::ServerWriteReactor<v1::WatchEvent>* Watch(
      grpc::CallbackServerContext* context,
      const v1::WatchRequest* request) override {
    {
      absl::MutexLock lock(&mu_);
      watch_calls_.push_back(Observe(*context));
    }
    return new OneEventWriter(request->start_revision());
  }

 private:
  // Writes one event, then ends the stream with OK.
  class OneEventWriter : public grpc::ServerWriteReactor<v1::WatchEvent> {
   public:
    explicit OneEventWriter(uint64_t revision) {
      event_.set_revision(revision);
      event_.set_type(v1::EVENT_TYPE_ISSUED);
      StartWrite(&event_);
    }
    void OnWriteDone(bool /*ok*/) override { Finish(grpc::Status::OK); }
    void OnDone() override { delete this; }

   private:
    v1::WatchEvent event_;
  };

  static ObservedCall Observe(const grpc::CallbackServerContext& context) {
    ObservedCall call;
    call.at = absl::Now();
    const auto& metadata = context.client_metadata();
    if (auto it = metadata.find("authorization"); it != metadata.end()) {
      call.authorization = std::string(it->second.data(), it->second.size());
    }
    if (auto auth = context.auth_context();
        auth && auth->IsPeerAuthenticated()) {
      for (const grpc::string_ref& id : auth->GetPeerIdentity()) {
        if (!call.peer_identity.empty()) call.peer_identity += ",";
        call.peer_identity.append(id.data(), id.size());
      }
    }
    return call;
  }

  grpc::Status Failure() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const std::string message = "caller request rate exceeded";
    google::rpc::Status details;
    details.set_code(static_cast<int>(failure_code_));
    details.set_message(message);
    google::rpc::QuotaFailure quota;
    quota.add_violations()->set_subject("caller:test");
    details.add_details()->PackFrom(quota);
    if (not_applied_) {
      google::rpc::ErrorInfo info;
      info.set_domain("registrar.dev");
      info.set_reason("NOT_APPLIED");
      details.add_details()->PackFrom(info);
    }
    if (retry_delay_.has_value()) {
      google::rpc::RetryInfo retry;
      const int64_t ms = absl::ToInt64Milliseconds(*retry_delay_);
      retry.mutable_retry_delay()->set_seconds(ms / 1000);
      retry.mutable_retry_delay()->set_nanos(
          static_cast<int32_t>((ms % 1000) * 1'000'000));
      details.add_details()->PackFrom(retry);
    }
    return grpc::Status(failure_code_, message, details.SerializeAsString());
  }

  mutable absl::Mutex mu_;
  int failures_left_ ABSL_GUARDED_BY(mu_) = 0;
  std::optional<absl::Duration> retry_delay_ ABSL_GUARDED_BY(mu_);
  bool not_applied_ ABSL_GUARDED_BY(mu_) = false;
  grpc::StatusCode failure_code_ ABSL_GUARDED_BY(mu_) =
      grpc::StatusCode::RESOURCE_EXHAUSTED;
  std::vector<ObservedCall> issue_calls_ ABSL_GUARDED_BY(mu_);
  std::vector<ObservedCall> watch_calls_ ABSL_GUARDED_BY(mu_);
  std::vector<ObservedCall> keep_alive_calls_ ABSL_GUARDED_BY(mu_);
  grpc::StatusCode keep_alive_code_ ABSL_GUARDED_BY(mu_) = grpc::StatusCode::OK;
  uint32_t lease_ttl_ ABSL_GUARDED_BY(mu_) = 0;
};

// A FakeRegistrar listening on a free loopback port.
class FakeServer {
 public:
  explicit FakeServer(std::shared_ptr<grpc::ServerCredentials> credentials =
                          grpc::InsecureServerCredentials()) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", std::move(credentials), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
  }
  ~FakeServer() { Stop(); }

  // Stops serving and closes the port (later connections are refused).
  void Stop() {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
    if (server_) server_->Wait();
    server_.reset();
  }

  bool started() const { return server_ != nullptr && port_ > 0; }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  FakeRegistrar& service() { return service_; }

 private:
  FakeRegistrar service_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

}  // namespace registrar::client_test

#endif  // REGISTRAR_TESTS_UNIT_CLIENT_FAKE_REGISTRAR_H_
