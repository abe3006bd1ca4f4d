#ifndef REGISTRAR_SERVICE_COMMON_THREAD_NICE_H_
#define REGISTRAR_SERVICE_COMMON_THREAD_NICE_H_

// A thread's nice value (Linux keeps one per thread). Lowering it below the
// process's needs CAP_SYS_NICE or a RLIMIT_NICE that allows it (systemd's
// LimitNICE=); raising it never does.

#include "absl/status/status.h"

namespace registrar {

// Sets the calling thread's nice value (-20 .. 19). The error names the
// value and what the kernel said.
absl::Status SetThisThreadNice(int nice);

// Whether a thread of this process may take `nice`: tried on a short-lived
// thread, so that the answer is the kernel's and no thread is changed.
absl::Status CheckThreadNice(int nice);

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_COMMON_THREAD_NICE_H_
