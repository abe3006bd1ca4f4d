// Fuzzes the text forms the server parses without a key: IDs (ParseId),
// TypeID suffixes (DecodeSuffix, also the ListOwned page token) and the
// printable-UTF-8 check every owner, tenant and label goes through. Checks
// that whatever parses formats back to the same text, and that tag
// verification is total on any parsed ID.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "service/common/text.h"
#include "service/id/id.h"
#include "service/id/key_ring.h"

namespace registrar {
namespace {

const KeyRing& Keys() {
  static const KeyRing* keys = new KeyRing(KeyRing::FromKey(
      1, TagKeyBytes{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}));
  return *keys;
}

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "id_fuzzer: %s\n", what);
  std::abort();
}

void FuzzId(std::string_view text) {
  absl::StatusOr<ParsedId> parsed = ParseId(text);
  if (!parsed.ok()) {
    if (parsed.status().code() != absl::StatusCode::kInvalidArgument) {
      Fail("ParseId failed with a code other than InvalidArgument");
    }
    return;
  }
  if (parsed->kind == Kind::kUnspecified) Fail("parsed an unspecified kind");
  if (!HasV7Layout(parsed->bits)) Fail("parsed an ID without v7 layout");
  // Parsing is exact: the canonical form is the input.
  if (FormatId(parsed->kind, parsed->bits) != text) {
    Fail("FormatId(ParseId(text)) != text");
  }
  if (PackId(UnpackId(parsed->bits)) != parsed->bits) {
    Fail("PackId(UnpackId(id)) != id");
  }
  // Verification never fails on a parsed ID, whatever its key version.
  (void)Keys().Verify(parsed->kind, parsed->bits, "tenant", "user");
}

void FuzzSuffix(std::string_view text) {
  absl::StatusOr<Id128> decoded = DecodeSuffix(text);
  if (!decoded.ok()) return;
  if (EncodeSuffix(*decoded) != text)
    Fail("EncodeSuffix(DecodeSuffix(s)) != s");
}

}  // namespace
}  // namespace registrar

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  registrar::FuzzId(text);
  registrar::FuzzSuffix(text);
  // Past the "<prefix>_", as the suffix of any prefix.
  if (const size_t sep = text.find('_'); sep != std::string_view::npos) {
    registrar::FuzzSuffix(text.substr(sep + 1));
  }
  (void)registrar::IsPrintableUtf8(text);
  return 0;
}
