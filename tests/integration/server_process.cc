#include "tests/integration/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "service/id/key_ring.h"

#ifndef REGISTRAR_BINARY
#error "REGISTRAR_BINARY must be defined to the server binary's path"
#endif

namespace registrar::testing {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "grpc=host:port\nmetrics=host:port\n" → the two addresses.
bool ParsePortFile(const std::string& text, std::string* grpc,
                   std::string* metrics) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("grpc=", 0) == 0) *grpc = line.substr(5);
    if (line.rfind("metrics=", 0) == 0) *metrics = line.substr(8);
  }
  return !grpc->empty() && !metrics->empty();
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(
    const Options& options) {
  std::unique_ptr<ServerProcess> p(new ServerProcess());
  char dir_template[] = "/tmp/registrar-test-XXXXXX";
  if (mkdtemp(dir_template) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp: ", strerror(errno)));
  }
  p->dir_ = dir_template;
  const std::string port_file = p->dir_ + "/ports";
  const std::string log_file = p->dir_ + "/server.log";

  std::vector<std::string> args = {
      REGISTRAR_BINARY,
      "--listen=127.0.0.1:0",
      "--metrics_listen=127.0.0.1:0",
      "--port_file=" + port_file,
      "--shutdown_drain=0s",
      "--data_dir=" +
          (options.data_dir.empty() ? p->dir_ + "/data" : options.data_dir)};
  if (options.key_file && !options.key_path.empty()) {
    args.push_back("--key_file=" + options.key_path);
  } else if (options.key_file) {
    const std::string key_file = p->dir_ + "/tag.key";
    std::ofstream(key_file) << KeyRing::Generate().ToFileText();
    args.push_back("--key_file=" + key_file);
  }
  args.insert(args.end(), options.args.begin(), options.args.end());

  const pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    const int fd = open(log_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    for (const auto& [k, v] : options.env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  p->pid_ = pid;

  const absl::Time deadline = absl::Now() + options.start_timeout;
  while (absl::Now() < deadline) {
    if (ParsePortFile(ReadFile(port_file), &p->grpc_address_,
                      &p->metrics_address_)) {
      return p;
    }
    if (p->WaitForExit(absl::Milliseconds(20)).has_value()) {
      return absl::InternalError(absl::StrCat("registrar exited with ",
                                              p->exit_code_,
                                              " before serving:\n", p->Log()));
    }
  }
  return absl::DeadlineExceededError(
      absl::StrCat("registrar did not start in time:\n", p->Log()));
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0 && !exited_) {
    kill(pid_, SIGKILL);
    WaitForExit(absl::Seconds(10));
  }
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

void ServerProcess::Signal(int sig) {
  if (pid_ > 0 && !exited_) kill(pid_, sig);
}

std::optional<int> ServerProcess::WaitForExit(absl::Duration timeout) {
  if (exited_) return exit_code_;
  const absl::Time deadline = absl::Now() + timeout;
  do {
    int status = 0;
    const pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      exited_ = true;
      exit_code_ =
          WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return exit_code_;
    }
    // A real child process: waitpid has no timeout, so poll it (bounded).
    absl::SleepFor(absl::Milliseconds(10));
  } while (absl::Now() < deadline);
  return std::nullopt;
}

std::string ServerProcess::Log() const {
  return ReadFile(dir_ + "/server.log");
}

}  // namespace registrar::testing
