#ifndef REGISTRAR_SERVICE_COMMON_TEXT_H_
#define REGISTRAR_SERVICE_COMMON_TEXT_H_

// Text rules shared by the request checks (service/api), the callers file
// (service/auth) and every log line or error message that carries text a
// caller chose: owners, tenants, holders and caller names are printable
// UTF-8, and anything else a caller sent is escaped and bounded by
// LogSafe / SafeMessage before it reaches a log line or a status message.

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace registrar {

// True for well-formed UTF-8 with no control characters (C0, DEL, C1).
// Overlong forms, surrogates and code points past U+10FFFF are not UTF-8.
bool IsPrintableUtf8(std::string_view s);

// How many bytes of a caller's string a log line or message carries.
inline constexpr size_t kLogTextBytes = 128;
// The bound of a whole status message sent to a caller (far below gRPC's
// 8 KiB metadata default).
inline constexpr size_t kMaxStatusMessageBytes = 1024;

// `s` made safe for one log line or message: a backslash and a double
// quote are escaped (`\\`, `\"`), so are \n \r \t, every other control
// character (C0, DEL, C1), the Unicode line and paragraph separators and
// the bidirectional overrides (as `\xNN` or `\u{NNNN}`), and every byte that
// is not part of well-formed UTF-8 (`\xNN`). At most `max_bytes` bytes of
// `s` are carried (never splitting a character); when more were sent,
// "...(N bytes)" follows, N being the size of `s`. The output is printable
// UTF-8 of at most about 4 * max_bytes + 24 bytes.
std::string LogSafe(std::string_view s, size_t max_bytes = kLogTextBytes);

// A whole message (ours, possibly carrying caller text): returned as is when
// it is printable UTF-8 of at most `max_bytes`; otherwise escaped and
// bounded like LogSafe.
std::string SafeMessage(std::string_view message,
                        size_t max_bytes = kMaxStatusMessageBytes);

// Appends `s` to *out as a JSON string (quoted): `"` and `\\` escaped,
// control characters (C0, DEL, C1) and the line/bidi controls LogSafe
// escapes as \uXXXX, each byte that is not well-formed UTF-8 as U+FFFD. The
// result is always valid JSON, whatever `s` holds. (No length bound: bound
// caller text with LogSafe first.)
void AppendJsonString(std::string_view s, std::string* out);

// The "ts" of a JSON log line: UTC with microseconds,
// "2026-12-02T10:40:26.123456Z".
std::string JsonTimestamp(absl::Time t);

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_COMMON_TEXT_H_
