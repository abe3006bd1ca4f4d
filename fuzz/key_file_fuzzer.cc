// Fuzzes the tag key file parser (KeyRing::Parse): it must reject anything
// but the documented format without crashing, and a ring it accepts must
// serialise to text that parses to the same ring.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "absl/status/statusor.h"
#include "service/id/key_ring.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using registrar::KeyRing;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<KeyRing> ring = KeyRing::Parse(text);
  if (!ring.ok()) return 0;
  if (!ring->has_version(ring->signing_version())) {
    std::fprintf(stderr, "key_file_fuzzer: signing version not in ring\n");
    std::abort();
  }
  absl::StatusOr<KeyRing> again = KeyRing::Parse(ring->ToFileText());
  if (!again.ok() || again->ToFileText() != ring->ToFileText() ||
      again->signing_version() != ring->signing_version()) {
    std::fprintf(stderr, "key_file_fuzzer: ToFileText does not round-trip\n");
    std::abort();
  }
  return 0;
}
