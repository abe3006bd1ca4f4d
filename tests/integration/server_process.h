#ifndef REGISTRAR_TESTS_INTEGRATION_SERVER_PROCESS_H_
#define REGISTRAR_TESTS_INTEGRATION_SERVER_PROCESS_H_

// Starts the real `registrar` binary for integration tests: on 127.0.0.1
// with ports picked by the kernel (port 0, read back from --port_file), a
// fresh key file and a private temp dir. The destructor SIGKILLs the server
// if the test did not stop it.

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace registrar::testing {

class ServerProcess {
 public:
  struct Options {
    std::vector<std::string> args;  // extra flags, e.g. "--max_batch=10"
    std::map<std::string, std::string> env;  // extra environment
    bool key_file = true;  // write a key file and pass --key_file
    std::string key_path;  // with key_file: use this existing key file
    // --data_dir; empty: a fresh one inside dir(). A test that restarts the
    // server on the same data passes its own (and removes it itself).
    std::string data_dir;
    absl::Duration start_timeout = absl::Seconds(15);
  };

  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(
      const Options& options);
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start() {
    return Start(Options{});
  }
  ~ServerProcess();

  const std::string& grpc_address() const { return grpc_address_; }
  const std::string& metrics_address() const { return metrics_address_; }
  const std::string& dir() const { return dir_; }
  pid_t pid() const { return pid_; }

  // Sends a signal (SIGTERM, SIGKILL, ...).
  void Signal(int sig);
  // Waits for the process to exit; its exit code, 128+signal when killed by
  // a signal, or nullopt on timeout.
  std::optional<int> WaitForExit(absl::Duration timeout);
  bool running() const { return !exited_; }

  // Everything the server has logged so far.
  std::string Log() const;

 private:
  ServerProcess() = default;

  pid_t pid_ = -1;
  bool exited_ = false;
  int exit_code_ = 0;
  std::string dir_;
  std::string grpc_address_;
  std::string metrics_address_;
};

}  // namespace registrar::testing

#endif  // REGISTRAR_TESTS_INTEGRATION_SERVER_PROCESS_H_
