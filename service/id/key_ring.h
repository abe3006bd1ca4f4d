#ifndef REGISTRAR_SERVICE_ID_KEY_RING_H_
#define REGISTRAR_SERVICE_ID_KEY_RING_H_

// The secret keys of the ID tag: a keyed PRF (SipHash-2-4, libsodium's
// crypto_shorthash) over kind, ms, seq, node and owner, truncated to 46 bits.
// Anyone holding the key can tell a genuine ID of an owner from anything
// else without reading a record.

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "service/id/id.h"
#include "service/model/kind.h"

namespace registrar {

using TagKeyBytes = std::array<uint8_t, 16>;

// Immutable after construction; safe to share between threads.
class KeyRing {
 public:
  // Parses a key file: one key per line, `<version> <32 hex digits>` with
  // version 0..3, or a single bare `<32 hex digits>` line meaning version 0.
  // Blank lines and lines starting with '#' are ignored. The last key listed
  // signs (so versions can wrap: 3 then 0); every listed version verifies.
  static absl::StatusOr<KeyRing> Parse(std::string_view text);
  // Reads and parses a file; errors name the path.
  static absl::StatusOr<KeyRing> LoadFile(const std::string& path);
  // A fresh random version-0 key (libsodium randombytes).
  static KeyRing Generate();
  // One key with the given version.
  static KeyRing FromKey(uint32_t version, const TagKeyBytes& key);

  // Version used for newly minted IDs.
  uint32_t signing_version() const { return signing_version_; }
  bool has_version(uint32_t version) const { return keys_.contains(version); }

  // 46-bit tag of an ID's fields (tag field ignored) for an owner under
  // `key_version`. Precondition: has_version(key_version).
  uint64_t ComputeTag(uint32_t key_version, Kind kind, const IdFields& f,
                      std::string_view tenant, std::string_view user_id) const;

  // True when `id` carries the tag of (kind, owner) under the key version
  // recorded in the ID and that version is configured.
  bool Verify(Kind kind, Id128 id, std::string_view tenant,
              std::string_view user_id) const;

  // A public name of the key of `version`, "<version>:<16 hex digits>": a
  // SipHash of a fixed text under the key, so equal keys have equal
  // fingerprints and the key cannot be learnt from it. Precondition:
  // has_version(version).
  std::string Fingerprint(uint32_t version) const;
  // Fingerprints of every key held, the signing one last.
  std::vector<std::string> Fingerprints() const;

  // Serialises in the Parse format (for `registrarctl keygen` and tests).
  std::string ToFileText() const;

 private:
  std::map<uint32_t, TagKeyBytes> keys_;
  uint32_t signing_version_ = 0;
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_ID_KEY_RING_H_
