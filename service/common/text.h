#ifndef REGISTRAR_SERVICE_COMMON_TEXT_H_
#define REGISTRAR_SERVICE_COMMON_TEXT_H_

// Text rules shared by the request checks (service/api) and the callers file
// (service/auth): owners, tenants, holders and caller names are printable
// UTF-8, so they are safe to log, compare and print.

#include <string_view>

namespace registrar {

// True for well-formed UTF-8 with no control characters (C0, DEL, C1).
// Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
bool IsPrintableUtf8(std::string_view s);

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_COMMON_TEXT_H_
