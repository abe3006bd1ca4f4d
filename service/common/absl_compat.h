#ifndef REGISTRAR_SERVICE_COMMON_ABSL_COMPAT_H_
#define REGISTRAR_SERVICE_COMMON_ABSL_COMPAT_H_

// Debian 12's abseil is built with ABSL_OPTION_USE_STD_STRING_VIEW 0, so
// absl::string_view is its own type. Our interfaces use std::string_view;
// this converts at the few places that call into abseil string APIs.

#include <string_view>

#include "absl/strings/string_view.h"

namespace registrar {

inline absl::string_view AsAbsl(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}
inline std::string_view AsStd(absl::string_view s) {
  return std::string_view(s.data(), s.size());
}

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_COMMON_ABSL_COMPAT_H_
