#ifndef REGISTRAR_TESTS_INTEGRATION_OWN_SERVER_TEST_H_
#define REGISTRAR_TESTS_INTEGRATION_OWN_SERVER_TEST_H_

// A fixture for tests that start their own server (memory store) with their
// own flags, in a private directory, and talk to it with a raw stub; plus
// small helpers for reading what it logged. Header-only.

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "registrar/v1/registrar.grpc.pb.h"
#include "service/common/text.h"
#include "tests/integration/test_util.h"

namespace registrar::testing {

// Non-empty lines of `text`.
inline std::vector<std::string> NonEmptyLines(const std::string& text) {
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!line.empty()) lines.emplace_back(line);
  }
  return lines;
}

// What `command` (run by /bin/sh) wrote to stdout.
inline std::string CommandOutput(const std::string& command) {
  std::string out;
  if (FILE* p = popen(command.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
    pclose(p);
  }
  return out;
}

class OwnServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/own_server_" + std::to_string(getpid());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override {
    if (server_ != nullptr && server_->running()) {
      EXPECT_EQ(StopServer(*server_), 0) << LogSafe(server_->Log(), 4000);
    }
    std::filesystem::remove_all(dir_);
  }

  // Starts the server with `args` and --store=memory; a fatal failure when
  // it does not start.
  void Start(std::vector<std::string> args) {
    ServerProcess::Options options;
    options.args = std::move(args);
    options.args.push_back("--store=memory");
    server_ = StartOrFail(options);
    ASSERT_NE(server_, nullptr);
    stub_ = v1::Registrar::NewStub(grpc::CreateChannel(
        server_->grpc_address(), grpc::InsecureChannelCredentials()));
  }

  std::string dir_;
  std::unique_ptr<ServerProcess> server_;
  std::unique_ptr<v1::Registrar::Stub> stub_;
};

}  // namespace registrar::testing

#endif  // REGISTRAR_TESTS_INTEGRATION_OWN_SERVER_TEST_H_
