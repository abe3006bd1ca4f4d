// registrar: the server binary. Flags and environment are described in
// config.cc and the README.

#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/stubs/logging.h"
#include "service/common/rate_limited_log.h"
#include "service/common/text.h"
#include "service/server/config.h"
#include "service/server/server.h"
#include "spdlog/spdlog.h"

namespace registrar {
std::string LogLevelFlag();  // config.cc
}  // namespace registrar

namespace {

// Written to a temporary name and renamed, so a reader never sees half.
bool WritePortFile(const std::string& path, const std::string& grpc,
                   const std::string& metrics) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "grpc=" << grpc << "\nmetrics=" << metrics << "\n";
    if (!out.good()) return false;
  }
  return std::rename(tmp.c_str(), path.c_str()) == 0;
}

// Protobuf's own messages (a string field that is not UTF-8, say) go through
// spdlog, so that every line the server writes has the same format, at most
// one per --log_repeat_interval.
void ProtobufLog(google::protobuf::LogLevel level, const char* filename,
                 int line, const std::string& message) {
  const spdlog::level::level_enum spd =
      level >= google::protobuf::LOGLEVEL_ERROR     ? spdlog::level::err
      : level == google::protobuf::LOGLEVEL_WARNING ? spdlog::level::warn
                                                    : spdlog::level::info;
  // A client sending bad strings would repeat it on every call.
  static registrar::RepeatedLogGate gate;
  uint64_t suppressed = 0;
  if (!gate.Allow(absl::Now(), &suppressed)) return;
  spdlog::log(spd, "protobuf {}:{}: {}{}", filename, line,
              registrar::LogSafe(message, 512),
              registrar::SuppressedNote(suppressed));
}

}  // namespace

int main(int argc, char** argv) {
  // Signals are taken synchronously by sigwait below; block them before any
  // thread starts so no gRPC thread receives them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A file-size limit must fail the write (EFBIG → the store reports it and
  // the call answers UNAVAILABLE), not kill the server.
  signal(SIGXFSZ, SIG_IGN);
  // Debian's abseil is built with deadlock detection on, which keeps a lock
  // graph on every Mutex acquisition (a tenth of the CPU of a commit-heavy
  // load in profiles). Lock order is checked by -Wthread-safety and the
  // TSan build instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  google::protobuf::SetLogHandler(&ProtobufLog);

  absl::StatusOr<registrar::ServerConfig> config =
      registrar::ConfigFromFlags(argc, argv);
  if (!config.ok()) {
    std::fprintf(stderr, "registrar: %s\n",
                 std::string(config.status().message()).c_str());
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(registrar::LogLevelFlag()));
  registrar::UseLogFormat(config->log_format);
  registrar::SetLogRepeatInterval(config->log_repeat_interval);

  absl::StatusOr<std::unique_ptr<registrar::RegistrarServer>> server =
      registrar::RegistrarServer::Start(*config);
  if (!server.ok()) {
    spdlog::critical("cannot start: {}",
                     std::string(server.status().message()));
    return 1;
  }
  spdlog::info(
      "registrar serving gRPC on {}, metrics on http://{}/metrics "
      "(node_id {})",
      (*server)->grpc_address(), (*server)->metrics_address(), config->node_id);
  if (!config->port_file.empty() &&
      !WritePortFile(config->port_file, (*server)->grpc_address(),
                     (*server)->metrics_address())) {
    spdlog::critical("cannot write --port_file={}", config->port_file);
    return 1;
  }

  int received = 0;
  // SIGHUP re-reads the callers file (TLS files are followed by themselves).
  while (sigwait(&signals, &received) == 0 && received == SIGHUP) {
    spdlog::info("received SIGHUP: reloading the callers file");
    (void)(*server)->ReloadCallers();
  }
  spdlog::info("received {}", received == SIGTERM ? "SIGTERM" : "SIGINT");
  (*server)->Shutdown();
  return 0;
}
