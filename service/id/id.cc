#include "service/id/id.h"

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "service/common/status_macros.h"

namespace registrar {
namespace {

constexpr std::string_view kAlphabet = "0123456789abcdefghjkmnpqrstvwxyz";
constexpr size_t kSuffixLength = 26;
constexpr uint64_t kVersion = 7;
constexpr uint64_t kVariant = 0b10;
// "thread" is the longest prefix; ParseId's early length cut relies on this.
static_assert(kMaxIdTextLength == sizeof("thread_") - 1 + kSuffixLength);

// Value of each byte in the alphabet, -1 for every other byte (uppercase,
// i l o u, punctuation, NUL, bytes >= 0x80), so decoding is one lookup per
// character whatever the input.
constexpr std::array<int8_t, 256> MakeDecodeTable() {
  std::array<int8_t, 256> table{};
  for (auto& v : table) v = -1;
  for (size_t i = 0; i < kAlphabet.size(); ++i) {
    table[static_cast<uint8_t>(kAlphabet[i])] = static_cast<int8_t>(i);
  }
  return table;
}
constexpr std::array<int8_t, 256> kDecode = MakeDecodeTable();

using U128 = unsigned __int128;

U128 ToU128(Id128 id) { return (U128{id.hi} << 64) | id.lo; }

// Writes the 26 suffix characters to dst. The 130-bit big-endian base32
// number has two leading zero bits, so character 0 holds the top 3 bits.
void WriteSuffix(Id128 id, char* dst) {
  const U128 v = ToU128(id);
  for (size_t i = 0; i < kSuffixLength; ++i) {
    const int shift = 5 * static_cast<int>(kSuffixLength - 1 - i);
    dst[i] = kAlphabet[static_cast<size_t>(v >> shift) & 31];
  }
}

// Printable form of untrusted bytes for an error message. (Debian's abseil
// has its own string_view type, hence the explicit conversion.)
std::string Quote(std::string_view s) {
  return absl::StrCat(
      "\"", absl::CEscape(absl::string_view(s.data(), s.size())), "\"");
}

}  // namespace

Id128 PackId(const IdFields& f) {
  Id128 id;
  id.hi = ((static_cast<uint64_t>(f.unix_ms) & uint64_t{kMaxUnixMs}) << 16) |
          (kVersion << 12) | (f.seq & kMaxSeq);
  id.lo = (kVariant << 62) | (uint64_t{f.node & kMaxNodeId} << 48) |
          (uint64_t{f.key_version & kMaxKeyVersion} << kTagBits) |
          (f.tag & kTagMask);
  return id;
}

IdFields UnpackId(Id128 id) {
  IdFields f;
  f.unix_ms = static_cast<int64_t>(id.hi >> 16);
  f.seq = static_cast<uint32_t>(id.hi & kMaxSeq);
  f.node = static_cast<uint32_t>((id.lo >> 48) & kMaxNodeId);
  f.key_version = static_cast<uint32_t>((id.lo >> kTagBits) & kMaxKeyVersion);
  f.tag = id.lo & kTagMask;
  return f;
}

bool HasV7Layout(Id128 id) {
  return ((id.hi >> 12) & 0xF) == kVersion && (id.lo >> 62) == kVariant;
}

std::string_view KindPrefix(Kind kind) {
  switch (kind) {
    case Kind::kThread:
      return "thread";
    case Kind::kRun:
      return "run";
    case Kind::kRequest:
      return "req";
    case Kind::kConnection:
      return "conn";
    case Kind::kLease:
      return "lease";
    case Kind::kUnspecified:
      break;
  }
  return {};
}

Kind KindFromPrefix(std::string_view prefix) {
  if (prefix == "thread") return Kind::kThread;
  if (prefix == "run") return Kind::kRun;
  if (prefix == "req") return Kind::kRequest;
  if (prefix == "conn") return Kind::kConnection;
  if (prefix == "lease") return Kind::kLease;
  return Kind::kUnspecified;
}

std::string EncodeSuffix(Id128 id) {
  std::string out(kSuffixLength, '\0');
  WriteSuffix(id, out.data());
  return out;
}

absl::StatusOr<Id128> DecodeSuffix(std::string_view suffix) {
  if (suffix.size() != kSuffixLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("id: suffix must be ", kSuffixLength, " characters, got ",
                     suffix.size()));
  }
  U128 v = 0;
  for (size_t i = 0; i < kSuffixLength; ++i) {
    const int8_t d = kDecode[static_cast<uint8_t>(suffix[i])];
    if (d < 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "id: suffix character ", i + 1, " ", Quote(suffix.substr(i, 1)),
          " is not lowercase Crockford base32 (0-9 a-z without i l o u)"));
    }
    v = (v << 5) | static_cast<U128>(d);
  }
  // Only 128 of the 130 bits exist: a first character above '7' would
  // overflow them.
  if (suffix[0] > '7') {
    return absl::InvalidArgumentError(absl::StrCat(
        "id: suffix must start with 0-7, got ", Quote(suffix.substr(0, 1))));
  }
  return Id128{static_cast<uint64_t>(v >> 64), static_cast<uint64_t>(v)};
}

std::string FormatUuid(Id128 id) {
  static constexpr char kHex[] = "0123456789abcdef";
  char buf[36];
  size_t pos = 0;
  for (int nibble = 0; nibble < 32; ++nibble) {
    if (nibble == 8 || nibble == 12 || nibble == 16 || nibble == 20) {
      buf[pos++] = '-';
    }
    const uint64_t word = nibble < 16 ? id.hi : id.lo;
    const int shift = 60 - 4 * (nibble % 16);
    buf[pos++] = kHex[(word >> shift) & 0xF];
  }
  return std::string(buf, sizeof(buf));
}

std::string FormatParentId(Kind child_kind, Id128 parent) {
  if (parent.is_zero()) return "";
  return FormatId(ParentKindOf(child_kind), parent);
}

std::string FormatId(Kind kind, Id128 id) {
  std::string out;
  AppendId(kind, id, &out);
  return out;
}

void AppendId(Kind kind, Id128 id, std::string* out) {
  const std::string_view prefix = KindPrefix(kind);
  const size_t start = out->size();
  out->resize(start + prefix.size() + 1 + kSuffixLength);
  char* dst = out->data() + start;
  prefix.copy(dst, prefix.size());
  dst[prefix.size()] = '_';
  WriteSuffix(id, dst + prefix.size() + 1);
}

absl::StatusOr<ParsedId> ParseId(std::string_view text) {
  // Bound the work (and the size of any error message) before looking at
  // the content.
  if (text.size() > kMaxIdTextLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("id: too long (", text.size(), " bytes, at most ",
                     kMaxIdTextLength, ")"));
  }
  if (text.empty()) return absl::InvalidArgumentError("id: empty");
  const size_t sep = text.find('_');
  if (sep == std::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("id: no '_' between prefix and suffix in ", Quote(text)));
  }
  const std::string_view prefix = text.substr(0, sep);
  ParsedId parsed;
  parsed.kind = KindFromPrefix(prefix);
  if (parsed.kind == Kind::kUnspecified) {
    return absl::InvalidArgumentError(
        absl::StrCat("id: unknown prefix ", Quote(prefix)));
  }
  ASSIGN_OR_RETURN(parsed.bits, DecodeSuffix(text.substr(sep + 1)));
  const uint64_t version = (parsed.bits.hi >> 12) & 0xF;
  if (version != kVersion) {
    return absl::InvalidArgumentError(
        absl::StrCat("id: UUID version must be 7, got ", version));
  }
  const uint64_t variant = parsed.bits.lo >> 62;
  if (variant != kVariant) {
    return absl::InvalidArgumentError(absl::StrCat(
        "id: UUID variant bits must be 10, got ", variant >> 1, variant & 1));
  }
  return parsed;
}

}  // namespace registrar
