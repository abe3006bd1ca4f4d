#ifndef REGISTRAR_TESTS_INTEGRATION_TEST_UTIL_H_
#define REGISTRAR_TESTS_INTEGRATION_TEST_UTIL_H_

// Small helpers shared by the integration tests: owners, clients, status
// text for gtest output, starting and stopping servers, a fixture base for
// suites that share one server, running registrarctl, and a few one-call
// wrappers. Header-only.

#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/client.h"
#include "client/rpc_status.h"
#include "gtest/gtest.h"
#include "registrar/v1/registrar.pb.h"
#include "tests/integration/server_process.h"
#include "tests/time_scale.h"

#ifndef REGISTRARCTL_BINARY
#error "REGISTRARCTL_BINARY must be defined to the CLI's path"
#endif

namespace registrar::testing {

inline v1::Owner MakeOwner(const std::string& tenant,
                           const std::string& user_id) {
  v1::Owner owner;
  owner.set_tenant(tenant);
  owner.set_user_id(user_id);
  return owner;
}

inline std::string OwnerText(const v1::Owner& owner) {
  return absl::StrCat(owner.tenant(), "/", owner.user_id());
}

// absl::Status as a std::string (gtest prints Debian abseil's Status badly),
// with the BadRequest field violations appended.
inline std::string StatusText(const absl::Status& status) {
  std::string out = std::string(absl::StatusCodeToString(status.code()));
  if (!status.message().empty()) {
    absl::StrAppend(&out, ": ", std::string(status.message()));
  }
  if (auto bad = grpc_status::GetBadRequest(status)) {
    for (const auto& v : bad->field_violations()) {
      absl::StrAppend(&out, " [", v.field(), ": ", v.description(), "]");
    }
  }
  return out;
}

// Polls `done` (which asks a real server) every 20 ms until it returns
// true or `bound` (scaled by SanitizerTimeScale) has passed; returns
// whether it did. For conditions a server process reaches by its own clock
// or on its own (a lease expiring, a file reloaded), which it tells no
// one: a bounded poll of a real child process, not a fixed sleep.
template <typename Pred>
bool PollUntil(Pred done, absl::Duration bound) {
  const absl::Time deadline = absl::Now() + bound * SanitizerTimeScale();
  for (;;) {
    if (done()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
}

template <typename T>
std::string StatusText(const absl::StatusOr<T>& s) {
  return StatusText(s.status());
}

inline std::unique_ptr<Client> MakeClient(
    const ServerProcess& server, absl::Duration deadline = absl::Seconds(5)) {
  ClientOptions options;
  options.target = server.grpc_address();
  options.deadline = deadline;
  return std::make_unique<Client>(options);
}

// Starts a server; fails the test (and returns null) when it does not.
inline std::unique_ptr<ServerProcess> StartOrFail(
    const ServerProcess::Options& options) {
  auto server = ServerProcess::Start(options);
  if (!server.ok()) {
    ADD_FAILURE() << StatusText(server.status());
    return nullptr;
  }
  return *std::move(server);
}

// SIGTERM and wait; the exit code (nullopt on timeout).
inline std::optional<int> StopServer(
    ServerProcess& server, absl::Duration timeout = absl::Seconds(20)) {
  server.Signal(SIGTERM);
  return server.WaitForExit(timeout);
}

// SIGKILL and wait; a fatal failure unless it died of the signal within
// 10 s (wrap in ASSERT_NO_FATAL_FAILURE to stop the test there).
inline void KillNine(ServerProcess& server) {
  server.Signal(SIGKILL);
  ASSERT_EQ(server.WaitForExit(absl::Seconds(10)), 128 + SIGKILL);
}

// Base of a fixture whose tests share one server: the suite's
// SetUpTestSuite calls StartSharedServer, and the server is stopped (exit 0
// expected) after the suite. Every test gets its own client and owner
// "acme/<test name>". A fixture that overrides SetUp calls this one first,
// in ASSERT_NO_FATAL_FAILURE.
class SharedServerTest : public ::testing::Test {
 protected:
  static void StartSharedServer(const ServerProcess::Options& options = {}) {
    auto server = ServerProcess::Start(options);
    ASSERT_TRUE(server.ok()) << StatusText(server.status());
    server_ = server->release();
  }

  static void TearDownTestSuite() {
    if (server_ != nullptr) {
      EXPECT_EQ(StopServer(*server_), 0) << server_->Log();
      delete server_;
      server_ = nullptr;
    }
  }

  void SetUp() override {
    ASSERT_NE(server_, nullptr);
    client_ = MakeClient(*server_);
    owner_ = MakeOwner(
        "acme",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }

  static inline ServerProcess* server_ = nullptr;
  std::unique_ptr<Client> client_;
  v1::Owner owner_;
};

// The whole content of the file at `path` ("" when it cannot be read).
inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// `s` in single quotes for /bin/sh.
inline std::string ShellQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

struct CliResult {
  int exit_code = -1;  // -1: did not exit normally (or did not start)
  std::string out;
  std::string err;
};

// Runs `registrarctl args...` through /bin/sh, each argument quoted, with
// `env_prefix` (e.g. "VAR=x ") before it; its exit code, stdout and stderr.
// Its stderr goes to the file `err_file` and is read back from there; with
// an empty `err_file` it goes to stdout instead (2>&1) and err stays empty.
inline CliResult RunCli(const std::vector<std::string>& args,
                        const std::string& err_file,
                        const std::string& env_prefix = "") {
  std::string command = env_prefix + ShellQuote(REGISTRARCTL_BINARY);
  for (const std::string& a : args) command += " " + ShellQuote(a);
  command += err_file.empty() ? " 2>&1" : " 2>" + ShellQuote(err_file);
  CliResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) {
    ADD_FAILURE() << "popen failed: " << command;
    return result;
  }
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) result.out.append(buf, n);
  const int status = pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (!err_file.empty()) result.err = ReadFile(err_file);
  return result;
}

template <typename Container>
std::set<std::string> ToSet(const Container& c) {
  return std::set<std::string>(c.begin(), c.end());
}

template <typename Container>
std::vector<std::string> Sorted(const Container& c) {
  std::vector<std::string> v(c.begin(), c.end());
  std::sort(v.begin(), v.end());
  return v;
}

inline std::string VerdictName(v1::Verdict v) { return v1::Verdict_Name(v); }

// Validates one ID claimed by `owner` (expected_kind optional); the verdict,
// or VERDICT_UNSPECIFIED with a test failure if the call failed.
inline v1::Verdict VerdictOf(Client& client, const std::string& id,
                             const v1::Owner& owner,
                             v1::Kind expected_kind = v1::KIND_UNSPECIFIED) {
  v1::ValidateRequest request;
  *request.mutable_owner() = owner;
  v1::ValidateItem* item = request.add_items();
  item->set_id(id);
  item->set_expected_kind(expected_kind);
  absl::StatusOr<v1::ValidateResponse> response = client.Validate(request);
  if (!response.ok() || response->results_size() != 1) {
    ADD_FAILURE() << "Validate(" << id
                  << ") failed: " << StatusText(response.status());
    return v1::VERDICT_UNSPECIFIED;
  }
  return response->results(0).verdict();
}

// Every record of `owner` (all pages), live only or with ended ones.
inline absl::StatusOr<std::vector<v1::Record>> ListAll(Client& client,
                                                       const v1::Owner& owner,
                                                       bool include_ended,
                                                       uint32_t page_size = 0) {
  std::vector<v1::Record> out;
  v1::ListOwnedRequest request;
  *request.mutable_owner() = owner;
  request.set_include_ended(include_ended);
  request.set_page_size(page_size);
  for (int page = 0; page < 100000; ++page) {
    absl::StatusOr<v1::ListOwnedResponse> response = client.ListOwned(request);
    if (!response.ok()) return response.status();
    for (const v1::Record& r : response->records()) out.push_back(r);
    if (response->next_page_token().empty()) return out;
    request.set_page_token(response->next_page_token());
  }
  return absl::InternalError("ListOwned did not end");
}

// "id:STATE" strings of `owner`'s records (with ended ones): a snapshot to
// compare before and after a call that must change nothing.
inline std::vector<std::string> Snapshot(Client& client,
                                         const v1::Owner& owner) {
  absl::StatusOr<std::vector<v1::Record>> records =
      ListAll(client, owner, /*include_ended=*/true);
  if (!records.ok()) {
    ADD_FAILURE() << "ListOwned(" << OwnerText(owner)
                  << ") failed: " << StatusText(records.status());
    return {};
  }
  std::vector<std::string> out;
  for (const v1::Record& r : *records) {
    out.push_back(absl::StrCat(r.id(), ":", v1::State_Name(r.state())));
  }
  return out;
}

}  // namespace registrar::testing

#endif  // REGISTRAR_TESTS_INTEGRATION_TEST_UTIL_H_
