#include "service/common/thread_nice.h"

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "absl/strings/str_cat.h"

namespace registrar {

absl::Status SetThisThreadNice(int nice) {
  const auto tid = static_cast<id_t>(syscall(SYS_gettid));
  if (setpriority(PRIO_PROCESS, tid, nice) != 0) {
    const int err = errno;
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot set a thread's nice value to ", nice, ": ", std::strerror(err),
        err == EACCES || err == EPERM
            ? " (lowering it needs CAP_SYS_NICE or RLIMIT_NICE, e.g. "
              "systemd's LimitNICE=)"
            : ""));
  }
  return absl::OkStatus();
}

absl::Status CheckThreadNice(int nice) {
  absl::Status status;
  std::thread probe([&status, nice] { status = SetThisThreadNice(nice); });
  probe.join();
  return status;
}

}  // namespace registrar
