#include "service/id/key_ring.h"

#include <sodium.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace registrar {
namespace {

static_assert(crypto_shorthash_siphash24_KEYBYTES == sizeof(TagKeyBytes));
static_assert(crypto_shorthash_siphash24_BYTES == 8);

constexpr size_t kKeyHexDigits = 2 * sizeof(TagKeyBytes);
// Key files are a few lines; anything bigger is not a key file.
constexpr long kMaxKeyFileBytes = 64 * 1024;

// libsodium wants sodium_init() before use (randombytes in particular); a
// function-local static makes that once and thread-safe.
void EnsureSodium() {
  static const bool ok = sodium_init() >= 0;
  if (!ok) {
    std::fputs("registrar: sodium_init() failed\n", stderr);
    std::abort();
  }
}

[[noreturn]] void DieMissingVersion(uint32_t version) {
  // Tagging with a key that is not configured would mint IDs nobody can
  // verify (or, with a made-up key, forgeable ones): a programming error.
  std::fprintf(stderr, "registrar: KeyRing has no key version %u\n", version);
  std::abort();
}

void PutLe(uint64_t v, int bytes, uint8_t* dst) {
  for (int i = 0; i < bytes; ++i) dst[i] = static_cast<uint8_t>(v >> (8 * i));
}

absl::Status LineError(int line, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("key file line ", line, ": ", what));
}

}  // namespace

absl::StatusOr<KeyRing> KeyRing::Parse(std::string_view text) {
  EnsureSodium();
  KeyRing ring;
  int line_no = 0;
  for (absl::string_view line :
       absl::StrSplit(absl::string_view(text.data(), text.size()), '\n')) {
    ++line_no;
    line = absl::StripAsciiWhitespace(line);  // also drops a CR of CRLF
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    absl::string_view version_text = "0";
    absl::string_view hex;
    if (fields.size() == 1) {
      hex = fields[0];
    } else if (fields.size() == 2) {
      version_text = fields[0];
      hex = fields[1];
    } else {
      return LineError(line_no, "expected \"<version> <32 hex digits>\"");
    }
    uint32_t version = 0;
    bool digits = !version_text.empty() && version_text.size() <= 3;
    for (char c : version_text) {
      digits = digits && absl::ascii_isdigit(static_cast<unsigned char>(c));
      if (digits) version = version * 10 + static_cast<uint32_t>(c - '0');
    }
    if (!digits || version > kMaxKeyVersion) {
      return LineError(line_no,
                       absl::StrCat("key version \"",
                                    absl::CEscape(version_text.substr(0, 8)),
                                    "\" is not 0..", kMaxKeyVersion));
    }
    if (hex.size() != kKeyHexDigits) {
      return LineError(line_no, absl::StrCat("key must be ", kKeyHexDigits,
                                             " hex digits, got ", hex.size()));
    }
    for (char c : hex) {
      if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
        return LineError(line_no, "key has a character that is not hex");
      }
    }
    if (ring.keys_.contains(version)) {
      return LineError(line_no,
                       absl::StrCat("duplicate key version ", version));
    }
    std::string bytes = absl::HexStringToBytes(hex);
    TagKeyBytes key;
    std::memcpy(key.data(), bytes.data(), key.size());
    sodium_memzero(bytes.data(), bytes.size());
    ring.keys_.emplace(version, key);
    // The last key listed signs: with only four versions, rotation wraps
    // (after 3 comes 0 again), so "highest" would not name the newest.
    ring.signing_version_ = version;
  }
  if (ring.keys_.empty()) {
    return absl::InvalidArgumentError("key file has no keys");
  }
  return ring;
}

absl::StatusOr<KeyRing> KeyRing::LoadFile(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("key file ", path));
  }
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) {
    text.append(buf, n);
    if (text.size() > static_cast<size_t>(kMaxKeyFileBytes)) break;
  }
  const bool read_error = std::ferror(f) != 0;
  const int read_errno = errno;
  std::fclose(f);
  if (read_error) {
    return absl::ErrnoToStatus(read_errno, absl::StrCat("key file ", path));
  }
  if (text.size() > static_cast<size_t>(kMaxKeyFileBytes)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key file ", path, ": larger than ", kMaxKeyFileBytes, " bytes"));
  }
  absl::StatusOr<KeyRing> ring = Parse(text);
  // Wipe our copy of the secret text before it is freed.
  sodium_memzero(text.data(), text.size());
  if (!ring.ok()) {
    return absl::Status(ring.status().code(),
                        absl::StrCat(path, ": ", ring.status().message()));
  }
  return ring;
}

KeyRing KeyRing::Generate() {
  EnsureSodium();
  TagKeyBytes key;
  randombytes_buf(key.data(), key.size());
  return FromKey(0, key);
}

KeyRing KeyRing::FromKey(uint32_t version, const TagKeyBytes& key) {
  EnsureSodium();
  KeyRing ring;
  ring.keys_.emplace(version, key);
  ring.signing_version_ = version;
  return ring;
}

uint64_t KeyRing::ComputeTag(uint32_t key_version, Kind kind, const IdFields& f,
                             std::string_view tenant,
                             std::string_view user_id) const {
  auto it = keys_.find(key_version);
  if (it == keys_.end()) DieMissingVersion(key_version);

  // Fixed-width fields, then each owner string with its length in front, so
  // no two different (fields, tenant, user) give the same message.
  constexpr size_t kFixed = 1 + 6 + 2 + 2;
  const size_t size = kFixed + 4 + tenant.size() + 4 + user_id.size();
  // Owners are at most 256 + 256 bytes at the RPC boundary: the stack buffer
  // covers them; only an oversized caller pays for a heap buffer.
  uint8_t stack_buf[kFixed + 4 + 256 + 4 + 256];
  std::vector<uint8_t> heap_buf;
  uint8_t* msg = stack_buf;
  if (size > sizeof(stack_buf)) {
    heap_buf.resize(size);
    msg = heap_buf.data();
  }
  uint8_t* p = msg;
  *p++ = static_cast<uint8_t>(kind);
  PutLe(static_cast<uint64_t>(f.unix_ms) & uint64_t{kMaxUnixMs}, 6, p);
  p += 6;
  PutLe(f.seq & kMaxSeq, 2, p);
  p += 2;
  PutLe(f.node & kMaxNodeId, 2, p);
  p += 2;
  PutLe(tenant.size(), 4, p);
  p += 4;
  if (!tenant.empty()) std::memcpy(p, tenant.data(), tenant.size());
  p += tenant.size();
  PutLe(user_id.size(), 4, p);
  p += 4;
  if (!user_id.empty()) std::memcpy(p, user_id.data(), user_id.size());

  uint8_t out[crypto_shorthash_siphash24_BYTES];
  crypto_shorthash_siphash24(out, msg, size, it->second.data());
  uint64_t h = 0;
  for (int i = 7; i >= 0; --i) h = (h << 8) | out[i];
  return h & kTagMask;
}

std::string KeyRing::Fingerprint(uint32_t version) const {
  auto it = keys_.find(version);
  if (it == keys_.end()) DieMissingVersion(version);
  static constexpr std::string_view kText = "registrar tag key fingerprint";
  uint8_t out[crypto_shorthash_siphash24_BYTES];
  crypto_shorthash_siphash24(out,
                             reinterpret_cast<const uint8_t*>(kText.data()),
                             kText.size(), it->second.data());
  return absl::StrCat(version, ":",
                      absl::BytesToHexString(absl::string_view(
                          reinterpret_cast<const char*>(out), sizeof(out))));
}

std::vector<std::string> KeyRing::Fingerprints() const {
  std::vector<std::string> out;
  for (const auto& [version, key] : keys_) {
    if (version != signing_version_) out.push_back(Fingerprint(version));
  }
  out.push_back(Fingerprint(signing_version_));
  return out;
}

bool KeyRing::Verify(Kind kind, Id128 id, std::string_view tenant,
                     std::string_view user_id) const {
  const IdFields f = UnpackId(id);
  if (!has_version(f.key_version)) return false;
  return ComputeTag(f.key_version, kind, f, tenant, user_id) == f.tag;
}

std::string KeyRing::ToFileText() const {
  std::string out =
      "# registrar ID tag keys: <version> <32 hex digits>; the last line "
      "signs, every line verifies.\n";
  auto line = [&](uint32_t version, const TagKeyBytes& key) {
    absl::StrAppend(&out, version, " ",
                    absl::BytesToHexString(absl::string_view(
                        reinterpret_cast<const char*>(key.data()), key.size())),
                    "\n");
  };
  for (const auto& [version, key] : keys_) {
    if (version != signing_version_) line(version, key);
  }
  line(signing_version_, keys_.at(signing_version_));
  return out;
}

}  // namespace registrar
