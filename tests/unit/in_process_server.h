#ifndef REGISTRAR_TESTS_UNIT_IN_PROCESS_SERVER_H_
#define REGISTRAR_TESTS_UNIT_IN_PROCESS_SERVER_H_

// A real gRPC server in the test's process, on 127.0.0.1:0, serving one
// service, with a plain generated Registrar stub connected to it: for tests
// that drive RegistrarService through its RPCs without a server binary.
// Header-only.

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <chrono>
#include <memory>

#include "absl/strings/str_cat.h"
#include "registrar/v1/registrar.grpc.pb.h"

namespace registrar::testing {

class InProcessServer {
 public:
  // Starts serving `service` (which must outlive the server); started()
  // says whether it did.
  explicit InProcessServer(grpc::Service* service) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(service);
    server_ = builder.BuildAndStart();
    if (started()) {
      stub_ = v1::Registrar::NewStub(
          grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_),
                              grpc::InsecureChannelCredentials()));
    }
  }
  ~InProcessServer() { Stop(); }

  bool started() const { return server_ != nullptr && port_ != 0; }
  v1::Registrar::Stub& stub() { return *stub_; }

  // Shuts down at once (cancelling calls) and waits. Idempotent.
  void Stop() {
    if (server_ == nullptr) return;
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
    server_.reset();
  }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Registrar::Stub> stub_;
};

}  // namespace registrar::testing

#endif  // REGISTRAR_TESTS_UNIT_IN_PROCESS_SERVER_H_
