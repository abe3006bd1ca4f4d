#ifndef REGISTRAR_SERVICE_ID_ID_H_
#define REGISTRAR_SERVICE_ID_ID_H_

// The 128-bit ID and its TypeID-compatible text form.
//
// Bit layout (a UUIDv7, RFC 9562), most significant first:
//   hi: 48 unix_ms | 4 version (=7) | 12 seq
//   lo: 2 variant (=0b10) | 14 node | 2 key_version | 46 tag
// Text: `<prefix>_<26 lowercase Crockford base32>`; the 26 characters encode
// 130 bits of which the top two are zero, so the first one is '0'..'7'.

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "service/model/id128.h"
#include "service/model/kind.h"

namespace registrar {

inline constexpr int kTagBits = 46;
inline constexpr uint64_t kTagMask = (uint64_t{1} << kTagBits) - 1;
inline constexpr uint32_t kMaxSeq = 0xFFF;      // 12 bits
inline constexpr uint32_t kMaxNodeId = 0x3FFF;  // 14 bits
inline constexpr uint32_t kMaxKeyVersion = 3;   // 2 bits
inline constexpr int64_t kMaxUnixMs = (int64_t{1} << 48) - 1;

// The fields packed into an Id128.
struct IdFields {
  int64_t unix_ms = 0;       // 48 bits
  uint32_t seq = 0;          // 12 bits
  uint32_t node = 0;         // 14 bits
  uint32_t key_version = 0;  // 2 bits
  uint64_t tag = 0;          // 46 bits
};

// Packs fields (each masked to its width) with version 7 and variant 0b10.
Id128 PackId(const IdFields& f);
// Inverse of PackId; does not check version/variant (ParseId does).
IdFields UnpackId(Id128 id);

// True when version nibble is 7 and variant bits are 0b10.
bool HasV7Layout(Id128 id);

// TypeID prefix of a kind: "thread", "run", "req", "conn", "lease".
// Empty for kUnspecified.
std::string_view KindPrefix(Kind kind);
// Kind of a prefix, kUnspecified when the prefix is not ours.
Kind KindFromPrefix(std::string_view prefix);

// 26-character lowercase Crockford base32 of the 128 bits (TypeID suffix).
std::string EncodeSuffix(Id128 id);
// Decodes a TypeID suffix. Rejects wrong length, characters outside the
// lowercase Crockford alphabet (uppercase and i, l, o, u included) and a
// first character above '7'. Does not check version/variant bits.
absl::StatusOr<Id128> DecodeSuffix(std::string_view suffix);

// Canonical UUID text, e.g. "01890a5d-ac96-774b-bcce-b302099a8057".
std::string FormatUuid(Id128 id);

// `<prefix>_<suffix>`.
std::string FormatId(Kind kind, Id128 id);
// Text form of the parent of a record of `child_kind` ("" for a zero
// parent): a run's thread, a request's run.
std::string FormatParentId(Kind child_kind, Id128 parent);
// Appends FormatId(kind, id) to *out without temporaries.
void AppendId(Kind kind, Id128 id, std::string* out);

struct ParsedId {
  Kind kind = Kind::kUnspecified;
  Id128 bits;
};

// Parses `<prefix>_<suffix>` with one of our prefixes and checks the UUIDv7
// version and variant bits. InvalidArgument, with a message saying what is
// wrong, for anything else (it never pattern-matches: it parses exactly).
// Does not check the tag: that needs the owner (see KeyRing).
absl::StatusOr<ParsedId> ParseId(std::string_view text);

// Longest text ParseId can accept ("thread_" + 26); longer input is rejected
// before any other work.
inline constexpr size_t kMaxIdTextLength = 33;

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_ID_ID_H_
