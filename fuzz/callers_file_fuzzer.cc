// Fuzzes the callers file parser (service/auth/callers_file.h) with
// arbitrary text: it must return a table or an InvalidArgument error, never
// crash or take long. An accepted table must be self-consistent.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "absl/status/statusor.h"
#include "service/auth/callers_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using registrar::Caller;
  using registrar::CallerTable;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<CallerTable> table = registrar::ParseCallersFile(text);
  if (!table.ok()) {
    if (table.status().code() != absl::StatusCode::kInvalidArgument) {
      std::fprintf(stderr, "callers_file_fuzzer: unexpected code\n");
      std::abort();
    }
    return 0;
  }
  if (table->size() == 0) {
    std::fprintf(stderr, "callers_file_fuzzer: accepted an empty file\n");
    std::abort();
  }
  for (const Caller& caller : table->callers()) {
    if (caller.name().empty()) std::abort();
    if (caller.all_tenants() != caller.tenants().empty()) std::abort();
    for (const std::string& tenant : caller.tenants()) {
      if (!caller.AllowsTenant(tenant) || tenant == "*") std::abort();
    }
    if (!caller.all_tenants() && caller.AllowsTenant("")) std::abort();
    (void)registrar::CallerRoleName(caller.role());
  }
  // Lookups of input-derived credentials never crash.
  (void)table->FindByToken(text);
  (void)table->FindByCertIdentity(text);
  return 0;
}
