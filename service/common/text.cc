#include "service/common/text.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>

namespace registrar {
namespace {

// Decodes one UTF-8 character at `p`: its length (1..4) and code point, or
// 0 when the bytes there are not well-formed UTF-8 (truncated, overlong,
// surrogate, past U+10FFFF, a stray continuation byte).
int DecodeUtf8(const unsigned char* p, const unsigned char* end, uint32_t* cp) {
  const unsigned char c = *p;
  int len;
  if (c < 0x80) {
    *cp = c;
    return 1;
  } else if ((c & 0xE0) == 0xC0) {
    *cp = c & 0x1F;
    len = 2;
  } else if ((c & 0xF0) == 0xE0) {
    *cp = c & 0x0F;
    len = 3;
  } else if ((c & 0xF8) == 0xF0) {
    *cp = c & 0x07;
    len = 4;
  } else {
    return 0;
  }
  if (end - p < len) return 0;
  for (int i = 1; i < len; ++i) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    *cp = (*cp << 6) | (p[i] & 0x3F);
  }
  static constexpr uint32_t kMinForLength[] = {0, 0, 0x80, 0x800, 0x10000};
  if (*cp < kMinForLength[len] || (*cp >= 0xD800 && *cp <= 0xDFFF) ||
      *cp > 0x10FFFF) {
    return 0;
  }
  return len;
}

bool IsControl(uint32_t cp) {
  return cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp <= 0x9F);
}

// Printable, but able to break or reorder a line on a terminal or viewer.
bool IsLineOrBidiControl(uint32_t cp) {
  return cp == 0x2028 || cp == 0x2029 || (cp >= 0x202A && cp <= 0x202E) ||
         (cp >= 0x2066 && cp <= 0x2069) || cp == 0x200E || cp == 0x200F ||
         cp == 0x061C;
}

void AppendHexByte(unsigned char b, std::string* out) {
  char buf[5];
  std::snprintf(buf, sizeof(buf), "\\x%02x", b);
  out->append(buf, 4);
}

}  // namespace

bool IsPrintableUtf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    uint32_t cp;
    const int len = DecodeUtf8(p, end, &cp);
    if (len == 0 || IsControl(cp)) return false;
    p += len;
  }
  return true;
}

std::string LogSafe(std::string_view s, size_t max_bytes) {
  const auto* begin = reinterpret_cast<const unsigned char*>(s.data());
  const auto* p = begin;
  const auto* end = p + s.size();
  const auto* stop = s.size() > max_bytes ? p + max_bytes : end;
  std::string out;
  out.reserve(std::min(s.size(), max_bytes) + 24);
  while (p < stop) {
    uint32_t cp;
    const int len = DecodeUtf8(p, end, &cp);
    if (len == 0) {
      AppendHexByte(*p, &out);
      ++p;
      continue;
    }
    if (p + len > stop) break;  // never split a character
    switch (cp) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (cp < 0x80 && IsControl(cp)) {
          AppendHexByte(static_cast<unsigned char>(cp), &out);
        } else if (IsControl(cp) || IsLineOrBidiControl(cp)) {
          char buf[12];
          const int n = std::snprintf(buf, sizeof(buf), "\\u{%04x}", cp);
          out.append(buf, n);
        } else {
          out.append(reinterpret_cast<const char*>(p), len);
        }
    }
    p += len;
  }
  if (p < end) {
    out += "...(";
    out += std::to_string(s.size());
    out += " bytes)";
  }
  return out;
}

void AppendJsonString(std::string_view s, std::string* out) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  out->push_back('"');
  while (p < end) {
    uint32_t cp;
    const int len = DecodeUtf8(p, end, &cp);
    if (len == 0) {
      out->append("\\ufffd");
      ++p;
      continue;
    }
    if (cp == '"') {
      out->append("\\\"");
    } else if (cp == '\\') {
      out->append("\\\\");
    } else if (cp == '\n') {
      out->append("\\n");
    } else if (cp == '\t') {
      out->append("\\t");
    } else if (IsControl(cp) || IsLineOrBidiControl(cp)) {
      char buf[8];
      const int n = std::snprintf(buf, sizeof(buf), "\\u%04x", cp);
      out->append(buf, n);
    } else {
      out->append(reinterpret_cast<const char*>(p), len);
    }
    p += len;
  }
  out->push_back('"');
}

std::string JsonTimestamp(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

std::string SafeMessage(std::string_view message, size_t max_bytes) {
  if (message.size() <= max_bytes && IsPrintableUtf8(message)) {
    return std::string(message);
  }
  return LogSafe(message, max_bytes);
}

}  // namespace registrar
