#ifndef REGISTRAR_SERVICE_AUTH_CALLERS_FILE_H_
#define REGISTRAR_SERVICE_AUTH_CALLERS_FILE_H_

// The callers file (--callers_file, format in callers.proto) and the table
// of callers the server authenticates against.
//
// The file is JSON; it holds no secrets (bearer tokens appear only as their
// SHA-256), so it may be world-readable. Parsing checks every entry and
// fails on the first problem with a message naming the entry (index and
// name) and the field; a token hash is never echoed in a message, in case a
// raw token was pasted in its place.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace registrar {

enum class CallerRole : uint8_t {
  kGateway = 1,
  kReader = 2,
  kAdmin = 3,
};

// "gateway", "reader", "admin": for logs and metric labels.
std::string_view CallerRoleName(CallerRole role);

// One authenticated caller. Immutable.
class Caller {
 public:
  const std::string& name() const { return name_; }
  CallerRole role() const { return role_; }
  // True for an admin and for a caller granted "*".
  bool all_tenants() const { return all_tenants_; }
  // The granted tenants, sorted; empty when all_tenants().
  const std::vector<std::string>& tenants() const { return tenants_; }
  // True when the caller may act for `tenant`.
  bool AllowsTenant(std::string_view tenant) const;

 private:
  friend class CallerTableBuilder;

  std::string name_;
  CallerRole role_ = CallerRole::kReader;
  bool all_tenants_ = false;
  std::vector<std::string> tenants_;
};

// The callers of one callers file, indexed by credential. Immutable once
// built, so one table can be shared by every thread; a reload builds a new
// table and swaps it in whole (the old one stays valid for whoever holds
// it). Pointers returned by the lookups live as long as the table.
class CallerTable {
 public:
  // An empty table: nobody authenticates.
  CallerTable() = default;

  // The caller presenting bearer `token` (the metadata value after
  // "Bearer "), or null. The token is hashed first and the table looked up
  // by hash, so lookup time says nothing about the stored hashes.
  const Caller* FindByToken(std::string_view token) const;
  // The caller whose client certificate has `identity` (SAN URI or DNS
  // name, compared exactly), or null.
  const Caller* FindByCertIdentity(std::string_view identity) const;

  // Every caller, in file order.
  const std::vector<Caller>& callers() const { return callers_; }
  size_t size() const { return callers_.size(); }

 private:
  friend class CallerTableBuilder;

  std::vector<Caller> callers_;
  // Raw 32-byte SHA-256 of a token -> index in callers_.
  absl::flat_hash_map<std::string, size_t> by_token_sha256_;
  absl::flat_hash_map<std::string, size_t> by_cert_identity_;
};

struct CallersFileLimits {
  size_t max_file_bytes = size_t{1} << 20;  // 1 MiB
  size_t max_callers = 10'000;
  // A caller's name and tenants follow the service's string rules
  // (non-empty, printable UTF-8, at most --max_string_bytes, default 256).
  size_t max_name_bytes = 256;
  size_t max_tenant_bytes = 256;
  size_t max_cert_identity_bytes = 1024;
};

// Parses and checks the JSON text of a callers file. InvalidArgument, with
// a message naming the entry and field, when anything is wrong:
//  - not JSON, not the CallersFile shape, unknown fields, over the limits;
//  - a caller with an empty, duplicate or non-printable name;
//  - a missing or unknown role;
//  - a gateway or reader without tenants, "*" beside other tenants, an
//    admin with tenants other than "*", a tenant that breaks the service's
//    tenant rules, a duplicate tenant;
//  - a token_sha256 that is not 64 lowercase hex digits; a cert identity
//    that is empty, too long or not printable ASCII;
//  - a token hash or cert identity used twice (by one caller or two);
//  - a caller with no credential (no token hash and no cert identity).
absl::StatusOr<CallerTable> ParseCallersFile(
    std::string_view json, const CallersFileLimits& limits = {});

// Reads and parses the file at `path`; every error names the path. Files
// over limits.max_file_bytes are refused before they are read in full.
absl::StatusOr<CallerTable> LoadCallersFile(
    const std::string& path, const CallersFileLimits& limits = {});

// Lowercase hex SHA-256 of `token`: the token_sha256 value for a token
// (for `registrarctl` and tests).
std::string HashToken(std::string_view token);

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_AUTH_CALLERS_FILE_H_
