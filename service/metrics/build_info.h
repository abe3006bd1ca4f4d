#ifndef REGISTRAR_SERVICE_METRICS_BUILD_INFO_H_
#define REGISTRAR_SERVICE_METRICS_BUILD_INFO_H_

#include <string_view>

namespace registrar {

// The CMake project version this binary was built as ("0.1.0").
std::string_view BuildVersion();

// The git commit the build was configured at (full hash), or "unknown" when
// the source was not a git checkout (or git was missing). Re-run CMake to
// refresh it after a commit.
std::string_view BuildRevision();

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_METRICS_BUILD_INFO_H_
