// registrar-echo: a bare callback gRPC server for registrar-bench's `echo`
// baseline. It serves registrar.v1.Registrar (same service, methods and
// messages as registrar) with the gRPC server settings registrar uses
// (service/server/server.cc: callback API, default health service enabled,
// the same max receive message size; requests and responses on a protobuf
// arena, as registrar parses them), and every handler answers at once from
// pre-made data:
//   Issue        `count` IDs of the requested kind's shape (pre-made)
//   OpenContext  the request's thread_id (thread_reused) or a pre-made
//                thread, plus a pre-made run and request
//   Validate     one VALID verdict per item (the item's id copied)
//   Cleanup      by ids: all of them released; by connection: it and
//                --cleanup_children pre-made IDs released
//   GrantLease / KeepAlive / RevokeLease / Describe / ListOwned: minimal
//                replies; Watch: UNIMPLEMENTED
// No storage, no checks, no metrics interceptor: what is left is gRPC,
// protobuf and the network, i.e. the ceiling of any gRPC service on this
// machine, measured with exactly the client code path registrar gets.
//
//   registrar-echo --listen=127.0.0.1:0 --port_file=/tmp/echo.ports
// writes "grpc=<host:port>" to the port file once serving; SIGTERM or
// SIGINT stops it.

#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/support/message_allocator.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "bench/programs/bench_common.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "registrar/v1/registrar.pb.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50052",
          "gRPC listen address (host:port; port 0 picks a free port)");
ABSL_FLAG(std::string, port_file, "",
          "Write \"grpc=<host:port>\" here once serving");
ABSL_FLAG(uint32_t, max_message_bytes, 4 << 20,
          "Largest request accepted (registrar's default)");
ABSL_FLAG(int, cleanup_children, 0,
          "Cleanup by connection_id reports the connection and this many "
          "more IDs released (match registrar-bench --children)");

namespace registrar::bench {
namespace {

namespace v1 = ::registrar::v1;
constexpr int kPremade = 1000;  // registrar's max_batch

// Request and response of a call on one protobuf arena, freed at once when
// the call is done (registrar parses into an arena too).
template <typename Req, typename Resp>
class ArenaHolder final : public grpc::MessageHolder<Req, Resp> {
 public:
  ArenaHolder() {
    this->set_request(google::protobuf::Arena::CreateMessage<Req>(&arena_));
    this->set_response(google::protobuf::Arena::CreateMessage<Resp>(&arena_));
  }
  void Release() override { delete this; }

 private:
  google::protobuf::Arena arena_;
};

template <typename Req, typename Resp>
class ArenaAllocator final : public grpc::MessageAllocator<Req, Resp> {
 public:
  grpc::MessageHolder<Req, Resp>* AllocateMessages() override {
    return new ArenaHolder<Req, Resp>;
  }
};

class EchoService final : public v1::Registrar::CallbackService {
 public:
  explicit EchoService(int cleanup_children)
      : cleanup_children_(cleanup_children) {
    SetMessageAllocatorFor_Issue(&issue_);
    SetMessageAllocatorFor_OpenContext(&open_context_);
    SetMessageAllocatorFor_Validate(&validate_);
    SetMessageAllocatorFor_Cleanup(&cleanup_);
    SetMessageAllocatorFor_GrantLease(&grant_lease_);
    SetMessageAllocatorFor_KeepAlive(&keep_alive_);
    SetMessageAllocatorFor_RevokeLease(&revoke_lease_);
    SetMessageAllocatorFor_Describe(&describe_);
    SetMessageAllocatorFor_ListOwned(&list_owned_);
    std::mt19937_64 rng(std::random_device{}());
    // Pre-made IDs per kind: the first character of the 26 is 0-7.
    for (IdKind kind : {IdKind::kThread, IdKind::kRun, IdKind::kRequest,
                        IdKind::kConnection}) {
      std::vector<std::string>& ids = ids_[static_cast<int>(kind)];
      for (int i = 0; i < kPremade; ++i) {
        ids.push_back(MakeTypeId(IdPrefix(kind), rng(), rng()));
      }
    }
    lease_ = MakeTypeId("lease", rng(), rng());
  }

  grpc::ServerUnaryReactor* Issue(grpc::CallbackServerContext* ctx,
                                  const v1::IssueRequest* req,
                                  v1::IssueResponse* resp) override {
    const std::vector<std::string>& ids = Premade(req->kind());
    const uint32_t n = req->count() == 0 ? 1 : req->count();
    for (uint32_t i = 0; i < n; ++i) resp->add_ids(ids[i % ids.size()]);
    return Ok(ctx);
  }

  grpc::ServerUnaryReactor* OpenContext(
      grpc::CallbackServerContext* ctx, const v1::OpenContextRequest* req,
      v1::OpenContextResponse* resp) override {
    if (req->thread_id().empty()) {
      resp->set_thread_id(Premade(v1::KIND_THREAD)[0]);
    } else {
      resp->set_thread_id(req->thread_id());
      resp->set_thread_reused(true);
    }
    resp->set_run_id(Premade(v1::KIND_RUN)[0]);
    resp->set_request_id(Premade(v1::KIND_REQUEST)[0]);
    return Ok(ctx);
  }

  grpc::ServerUnaryReactor* Validate(grpc::CallbackServerContext* ctx,
                                     const v1::ValidateRequest* req,
                                     v1::ValidateResponse* resp) override {
    resp->mutable_results()->Reserve(req->items_size());
    for (const v1::ValidateItem& item : req->items()) {
      v1::ValidateResult* r = resp->add_results();
      r->set_id(item.id());
      r->set_verdict(v1::VERDICT_VALID);
    }
    return Ok(ctx);
  }

  grpc::ServerUnaryReactor* Cleanup(grpc::CallbackServerContext* ctx,
                                    const v1::CleanupRequest* req,
                                    v1::CleanupResponse* resp) override {
    if (req->has_ids()) {
      *resp->mutable_released() = req->ids().ids();
    } else if (req->target_case() == v1::CleanupRequest::kConnectionId) {
      resp->add_released(req->connection_id());
      const std::vector<std::string>& runs = Premade(v1::KIND_RUN);
      for (int i = 0; i < cleanup_children_; ++i) {
        resp->add_released(runs[i % runs.size()]);
      }
    }
    return Ok(ctx);
  }

  grpc::ServerUnaryReactor* GrantLease(grpc::CallbackServerContext* ctx,
                                       const v1::GrantLeaseRequest* req,
                                       v1::GrantLeaseResponse* resp) override {
    resp->set_lease_id(lease_);
    resp->set_ttl_seconds(req->ttl_seconds());
    return Ok(ctx);
  }

  grpc::ServerUnaryReactor* KeepAlive(grpc::CallbackServerContext* ctx,
                                      const v1::KeepAliveRequest* req,
                                      v1::KeepAliveResponse* resp) override {
    resp->set_lease_id(req->lease_id());
    resp->set_ttl_seconds(60);
    return Ok(ctx);
  }

  grpc::ServerUnaryReactor* RevokeLease(grpc::CallbackServerContext* ctx,
                                        const v1::RevokeLeaseRequest*,
                                        v1::RevokeLeaseResponse*) override {
    return Ok(ctx);
  }

  grpc::ServerUnaryReactor* Describe(grpc::CallbackServerContext* ctx,
                                     const v1::DescribeRequest* req,
                                     v1::DescribeResponse* resp) override {
    resp->mutable_record()->set_id(req->id());
    resp->mutable_record()->set_state(v1::STATE_LIVE);
    return Ok(ctx);
  }

  grpc::ServerUnaryReactor* ListOwned(grpc::CallbackServerContext* ctx,
                                      const v1::ListOwnedRequest*,
                                      v1::ListOwnedResponse*) override {
    return Ok(ctx);
  }

 private:
  static grpc::ServerUnaryReactor* Ok(grpc::CallbackServerContext* ctx) {
    grpc::ServerUnaryReactor* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  const std::vector<std::string>& Premade(v1::Kind kind) const {
    switch (kind) {
      case v1::KIND_RUN:
        return ids_[static_cast<int>(IdKind::kRun)];
      case v1::KIND_REQUEST:
        return ids_[static_cast<int>(IdKind::kRequest)];
      case v1::KIND_CONNECTION:
        return ids_[static_cast<int>(IdKind::kConnection)];
      default:
        return ids_[static_cast<int>(IdKind::kThread)];
    }
  }

  ArenaAllocator<v1::IssueRequest, v1::IssueResponse> issue_;
  ArenaAllocator<v1::OpenContextRequest, v1::OpenContextResponse> open_context_;
  ArenaAllocator<v1::ValidateRequest, v1::ValidateResponse> validate_;
  ArenaAllocator<v1::CleanupRequest, v1::CleanupResponse> cleanup_;
  ArenaAllocator<v1::GrantLeaseRequest, v1::GrantLeaseResponse> grant_lease_;
  ArenaAllocator<v1::KeepAliveRequest, v1::KeepAliveResponse> keep_alive_;
  ArenaAllocator<v1::RevokeLeaseRequest, v1::RevokeLeaseResponse> revoke_lease_;
  ArenaAllocator<v1::DescribeRequest, v1::DescribeResponse> describe_;
  ArenaAllocator<v1::ListOwnedRequest, v1::ListOwnedResponse> list_owned_;
  const int cleanup_children_;
  std::vector<std::string> ids_[4];
  std::string lease_;
};

std::string HostOf(const std::string& address) {
  const size_t colon = address.rfind(':');
  return colon == std::string::npos ? address : address.substr(0, colon);
}

int Main() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  EchoService service(absl::GetFlag(FLAGS_cleanup_children));
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  const std::string listen = absl::GetFlag(FLAGS_listen);
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(absl::GetFlag(FLAGS_max_message_bytes)));
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "registrar-echo: cannot listen on %s\n",
                 listen.c_str());
    return 1;
  }
  const std::string address = HostOf(listen) + ":" + std::to_string(port);
  const std::string port_file = absl::GetFlag(FLAGS_port_file);
  if (!port_file.empty()) {
    const std::string tmp = port_file + ".tmp";
    {
      std::ofstream out(tmp, std::ios::trunc);
      out << "grpc=" << address << "\n";
      if (!out.good()) return 1;
    }
    if (std::rename(tmp.c_str(), port_file.c_str()) != 0) return 1;
  }
  std::fprintf(stderr, "registrar-echo serving on %s\n", address.c_str());
  int received = 0;
  sigwait(&signals, &received);
  server->Shutdown(std::chrono::system_clock::now());
  server->Wait();
  return 0;
}

}  // namespace
}  // namespace registrar::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "registrar-echo: registrar.v1.Registrar answering at once from "
      "pre-made data; the ceiling baseline for registrar-bench "
      "--backend=echo.");
  absl::ParseCommandLine(argc, argv);
  return registrar::bench::Main();
}
