#include "service/auth/callers_file.h"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "service/auth/callers.pb.h"
#include "service/common/absl_compat.h"
#include "service/common/text.h"

namespace registrar {
namespace {

using Sha256 = std::array<unsigned char, crypto_hash_sha256_BYTES>;

constexpr std::string_view kAllTenants = "*";
constexpr size_t kSha256HexLength = 2 * crypto_hash_sha256_BYTES;
// Longest piece of a bad value quoted back in an error message.
constexpr size_t kMaxQuotedBytes = 64;
// The format nests 4 deep ({"callers": [{"tenants": [...]}]}). Protobuf's
// JSON parser (3.21) takes super-linear time in the nesting depth (100,000
// nested arrays: over 10 minutes), so deeper input is refused before it.
constexpr int kMaxJsonDepth = 8;

Sha256 HashBytes(std::string_view data) {
  // sodium_init picks implementations and must run first; it is idempotent
  // and thread-safe, and SHA-256 has no failure mode after it.
  static const bool initialized = sodium_init() >= 0;
  (void)initialized;
  Sha256 out;
  crypto_hash_sha256(out.data(),
                     reinterpret_cast<const unsigned char*>(data.data()),
                     data.size());
  return out;
}

// Untrusted text for an error message: escaped and cut short.
std::string Quote(std::string_view s) {
  const bool cut = s.size() > kMaxQuotedBytes;
  if (cut) s = s.substr(0, kMaxQuotedBytes);
  return absl::StrCat("\"", absl::CEscape(AsAbsl(s)), cut ? "\"..." : "\"");
}

// "callers[3] ("gw-eu")", or "callers[3]" when the name is unusable.
std::string EntryLabel(int index, const auth::Caller& c,
                       const CallersFileLimits& limits) {
  std::string label = absl::StrCat("callers[", index, "]");
  if (!c.name().empty() && c.name().size() <= limits.max_name_bytes &&
      IsPrintableUtf8(c.name())) {
    absl::StrAppend(&label, " (", Quote(c.name()), ")");
  }
  return label;
}

absl::Status Invalid(std::string_view where, std::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat("callers file: ", AsAbsl(where), ": ", AsAbsl(what)));
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Decodes 64 lowercase hex digits; the error never shows the value.
absl::Status DecodeSha256Hex(std::string_view hex, Sha256* out) {
  if (hex.size() != kSha256HexLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("must be ", kSha256HexLength,
                     " lowercase hex digits (the SHA-256 of the token), got ",
                     hex.size(), " characters"));
  }
  for (size_t i = 0; i < crypto_hash_sha256_BYTES; ++i) {
    const int hi = HexDigit(hex[2 * i]);
    const int lo = HexDigit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      const size_t bad = hi < 0 ? 2 * i : 2 * i + 1;
      const char c = hex[bad];
      const bool upper = (c >= 'A' && c <= 'F');
      return absl::InvalidArgumentError(
          absl::StrCat("character ", bad + 1, " is not a lowercase hex digit",
                       upper ? " (write the hash in lowercase)" : ""));
    }
    (*out)[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return absl::OkStatus();
}

// Printable ASCII without spaces: what a SAN URI or DNS name looks like.
bool IsIdentityText(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) > 0x20 &&
           static_cast<unsigned char>(c) < 0x7F;
  });
}

absl::Status CheckText(std::string_view value, size_t max_bytes) {
  if (value.empty()) return absl::InvalidArgumentError("is empty");
  if (value.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("is ", value.size(), " bytes, limit is ", max_bytes));
  }
  if (!IsPrintableUtf8(value)) {
    return absl::InvalidArgumentError(absl::StrCat(
        Quote(value), " is not printable UTF-8 without control characters"));
  }
  return absl::OkStatus();
}

// Refuses JSON nested deeper than kMaxJsonDepth, in one pass over the text.
// Brackets inside strings do not count; anything else that is not JSON is
// left for the parser to report.
absl::Status CheckJsonDepth(std::string_view json) {
  int depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // skip the escaped character
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) {
        return absl::InvalidArgumentError(
            absl::StrCat("callers file: nested deeper than ", kMaxJsonDepth,
                         " levels (at byte ", i + 1, ")"));
      }
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return absl::OkStatus();
}

const google::protobuf::util::JsonParseOptions& ParseOptions() {
  static const auto* options = [] {
    auto* o = new google::protobuf::util::JsonParseOptions;
    o->ignore_unknown_fields = false;  // a misspelt field is an error
    o->case_insensitive_enum_parsing = false;
    return o;
  }();
  return *options;
}

std::string ProtobufMessage(const google::protobuf::util::Status& status) {
  return std::string(status.message().data(), status.message().size());
}

// The JSON did not parse as a CallersFile. Finds which entry is at fault,
// to name it; falls back to protobuf's own message.
absl::Status DiagnoseParseError(
    std::string_view json, const google::protobuf::util::Status& original) {
  namespace pb = google::protobuf;
  const pb::StringPiece input(json.data(), json.size());
  pb::Value root;
  if (pb::util::Status s = pb::util::JsonStringToMessage(input, &root);
      !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("callers file: not valid JSON: ", ProtobufMessage(s)));
  }
  if (root.kind_case() != pb::Value::kStructValue) {
    return Invalid("top level", "must be a JSON object: {\"callers\": [...]}");
  }
  for (const auto& [key, value] : root.struct_value().fields()) {
    if (key != "callers") {
      return Invalid("top level",
                     absl::StrCat("unknown field ", Quote(key),
                                  " (the only field is \"callers\")"));
    }
    if (value.kind_case() != pb::Value::kListValue &&
        value.kind_case() != pb::Value::kNullValue) {
      return Invalid("callers", "must be an array of caller objects");
    }
  }
  const auto& fields = root.struct_value().fields();
  auto it = fields.find("callers");
  if (it != fields.end() && it->second.kind_case() == pb::Value::kListValue) {
    const pb::ListValue& list = it->second.list_value();
    for (int i = 0; i < list.values_size(); ++i) {
      const pb::Value& entry = list.values(i);
      std::string where = absl::StrCat("callers[", i, "]");
      if (entry.kind_case() != pb::Value::kStructValue) {
        return Invalid(where, "must be an object");
      }
      const auto& entry_fields = entry.struct_value().fields();
      auto name = entry_fields.find("name");
      if (name != entry_fields.end() &&
          name->second.kind_case() == pb::Value::kStringValue &&
          !name->second.string_value().empty()) {
        absl::StrAppend(&where, " (", Quote(name->second.string_value()), ")");
      }
      auto role = entry_fields.find("role");
      if (role != entry_fields.end() &&
          role->second.kind_case() == pb::Value::kStringValue) {
        auth::Role parsed;
        if (!auth::Role_Parse(role->second.string_value(), &parsed)) {
          return Invalid(
              absl::StrCat(where, ".role"),
              absl::StrCat("unknown role ", Quote(role->second.string_value()),
                           " (expected ROLE_GATEWAY, ROLE_READER or "
                           "ROLE_ADMIN)"));
        }
      }
      std::string entry_json;
      if (!pb::util::MessageToJsonString(entry.struct_value(), &entry_json)
               .ok()) {
        continue;
      }
      auth::Caller caller;
      if (pb::util::Status s = pb::util::JsonStringToMessage(
              entry_json, &caller, ParseOptions());
          !s.ok()) {
        return Invalid(where, ProtobufMessage(s));
      }
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "callers file: cannot be parsed: ", ProtobufMessage(original)));
}

}  // namespace

std::string_view CallerRoleName(CallerRole role) {
  switch (role) {
    case CallerRole::kGateway:
      return "gateway";
    case CallerRole::kReader:
      return "reader";
    case CallerRole::kAdmin:
      return "admin";
  }
  return "unknown";
}

bool Caller::AllowsTenant(std::string_view tenant) const {
  if (all_tenants_) return true;
  return std::binary_search(tenants_.begin(), tenants_.end(), tenant,
                            std::less<>());
}

const Caller* CallerTable::FindByToken(std::string_view token) const {
  if (token.empty() || by_token_sha256_.empty()) return nullptr;
  const Sha256 digest = HashBytes(token);
  auto it = by_token_sha256_.find(absl::string_view(
      reinterpret_cast<const char*>(digest.data()), digest.size()));
  return it == by_token_sha256_.end() ? nullptr : &callers_[it->second];
}

const Caller* CallerTable::FindByCertIdentity(std::string_view identity) const {
  if (identity.empty()) return nullptr;
  auto it = by_cert_identity_.find(AsAbsl(identity));
  return it == by_cert_identity_.end() ? nullptr : &callers_[it->second];
}

// Builds a CallerTable from a parsed file, checking every rule.
class CallerTableBuilder {
 public:
  explicit CallerTableBuilder(const CallersFileLimits& limits)
      : limits_(limits) {}

  absl::StatusOr<CallerTable> Build(const auth::CallersFile& file) && {
    if (file.callers_size() == 0) {
      return Invalid("callers", "is empty: list at least one caller");
    }
    if (static_cast<size_t>(file.callers_size()) > limits_.max_callers) {
      return Invalid("callers",
                     absl::StrCat("has ", file.callers_size(),
                                  " entries, limit is ", limits_.max_callers));
    }
    table_.callers_.reserve(file.callers_size());
    for (int i = 0; i < file.callers_size(); ++i) {
      if (absl::Status s = Add(i, file.callers(i)); !s.ok()) return s;
    }
    return std::move(table_);
  }

 private:
  absl::Status Add(int index, const auth::Caller& c) {
    const std::string entry = EntryLabel(index, c, limits_);
    auto field = [&](std::string_view name) {
      return absl::StrCat(entry, ".", AsAbsl(name));
    };
    auto item = [&](std::string_view name, int j) {
      return absl::StrCat(entry, ".", AsAbsl(name), "[", j, "]");
    };

    Caller caller;
    if (absl::Status s = CheckText(c.name(), limits_.max_name_bytes); !s.ok()) {
      return Invalid(field("name"), AsStd(s.message()));
    }
    if (auto [it, inserted] = names_.try_emplace(c.name(), index); !inserted) {
      return Invalid(
          field("name"),
          absl::StrCat("is already the name of callers[", it->second, "]"));
    }
    caller.name_ = c.name();

    switch (c.role()) {
      case auth::ROLE_GATEWAY:
        caller.role_ = CallerRole::kGateway;
        break;
      case auth::ROLE_READER:
        caller.role_ = CallerRole::kReader;
        break;
      case auth::ROLE_ADMIN:
        caller.role_ = CallerRole::kAdmin;
        break;
      case auth::ROLE_UNSPECIFIED:
        return Invalid(field("role"),
                       "is required: ROLE_GATEWAY, ROLE_READER or ROLE_ADMIN");
      default:
        return Invalid(field("role"),
                       absl::StrCat("unknown role ", static_cast<int>(c.role()),
                                    " (expected ROLE_GATEWAY, ROLE_READER or "
                                    "ROLE_ADMIN)"));
    }

    if (absl::Status s = AddTenants(c, caller, entry); !s.ok()) return s;

    if (c.token_sha256_size() == 0 && c.cert_identities_size() == 0) {
      return Invalid(entry,
                     "has no credential: give token_sha256 or "
                     "cert_identities");
    }
    const size_t caller_index = table_.callers_.size();
    for (int j = 0; j < c.token_sha256_size(); ++j) {
      Sha256 digest;
      if (absl::Status s = DecodeSha256Hex(c.token_sha256(j), &digest);
          !s.ok()) {
        return Invalid(item("token_sha256", j), AsStd(s.message()));
      }
      std::string key(reinterpret_cast<const char*>(digest.data()),
                      digest.size());
      if (auto [it, inserted] =
              table_.by_token_sha256_.try_emplace(key, caller_index);
          !inserted) {
        return Invalid(item("token_sha256", j),
                       absl::StrCat("the same hash is already listed",
                                    ListedBy(it->second, caller_index)));
      }
    }
    for (int j = 0; j < c.cert_identities_size(); ++j) {
      const std::string& identity = c.cert_identities(j);
      if (identity.empty()) {
        return Invalid(item("cert_identities", j), "is empty");
      }
      if (identity.size() > limits_.max_cert_identity_bytes) {
        return Invalid(item("cert_identities", j),
                       absl::StrCat("is ", identity.size(), " bytes, limit is ",
                                    limits_.max_cert_identity_bytes));
      }
      if (!IsIdentityText(identity)) {
        return Invalid(item("cert_identities", j),
                       absl::StrCat(Quote(identity),
                                    " is not a SAN URI or DNS name "
                                    "(printable ASCII without spaces)"));
      }
      if (auto [it, inserted] =
              table_.by_cert_identity_.try_emplace(identity, caller_index);
          !inserted) {
        return Invalid(item("cert_identities", j),
                       absl::StrCat(Quote(identity), " is already listed",
                                    ListedBy(it->second, caller_index)));
      }
    }
    table_.callers_.push_back(std::move(caller));
    return absl::OkStatus();
  }

  absl::Status AddTenants(const auth::Caller& c, Caller& caller,
                          const std::string& entry) {
    auto item = [&](int j) { return absl::StrCat(entry, ".tenants[", j, "]"); };
    int stars = 0;
    for (int j = 0; j < c.tenants_size(); ++j) {
      const std::string& tenant = c.tenants(j);
      if (tenant == kAllTenants) {
        ++stars;
        continue;
      }
      if (absl::Status s = CheckText(tenant, limits_.max_tenant_bytes);
          !s.ok()) {
        return Invalid(item(j), AsStd(s.message()));
      }
      caller.tenants_.push_back(tenant);
    }
    if (stars > 1) {
      return Invalid(absl::StrCat(entry, ".tenants"), "\"*\" is listed twice");
    }
    bool star = stars == 1;
    if (star && !caller.tenants_.empty()) {
      return Invalid(absl::StrCat(entry, ".tenants"),
                     "\"*\" (every tenant) must be the only entry");
    }
    if (caller.role_ == CallerRole::kAdmin) {
      if (!caller.tenants_.empty()) {
        return Invalid(absl::StrCat(entry, ".tenants"),
                       "an admin acts for every tenant: leave tenants out "
                       "or give [\"*\"]");
      }
      star = true;
    }
    if (!star && caller.tenants_.empty()) {
      return Invalid(absl::StrCat(entry, ".tenants"),
                     "is empty: list the tenants this caller acts for, or "
                     "[\"*\"] for every tenant");
    }
    std::sort(caller.tenants_.begin(), caller.tenants_.end());
    auto dup =
        std::adjacent_find(caller.tenants_.begin(), caller.tenants_.end());
    if (dup != caller.tenants_.end()) {
      return Invalid(absl::StrCat(entry, ".tenants"),
                     absl::StrCat(Quote(*dup), " is listed twice"));
    }
    caller.all_tenants_ = star;
    return absl::OkStatus();
  }

  // " by callers[k] ("name")" or " earlier in this caller".
  std::string ListedBy(size_t owner_index, size_t this_index) const {
    if (owner_index == this_index) return " earlier in this caller";
    return absl::StrCat(" for callers[", owner_index, "] (",
                        Quote(table_.callers_[owner_index].name()), ")");
  }

  const CallersFileLimits& limits_;
  CallerTable table_;
  absl::flat_hash_map<std::string, int> names_;
};

absl::StatusOr<CallerTable> ParseCallersFile(std::string_view json,
                                             const CallersFileLimits& limits) {
  if (json.size() > limits.max_file_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("callers file: is ", json.size(), " bytes, limit is ",
                     limits.max_file_bytes));
  }
  if (absl::Status s = CheckJsonDepth(json); !s.ok()) return s;
  auth::CallersFile file;
  if (google::protobuf::util::Status s =
          google::protobuf::util::JsonStringToMessage(
              google::protobuf::StringPiece(json.data(), json.size()), &file,
              ParseOptions());
      !s.ok()) {
    return DiagnoseParseError(json, s);
  }
  return CallerTableBuilder(limits).Build(file);
}

absl::StatusOr<CallerTable> LoadCallersFile(const std::string& path,
                                            const CallersFileLimits& limits) {
  auto fail = [&](std::string_view what) {
    return absl::StrCat("callers file ", path, ": ", AsAbsl(what));
  };
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    const int err = errno;
    const std::string message = fail(std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(message)
                         : absl::FailedPreconditionError(message);
  }
  std::string text;
  // One byte past the limit tells an oversized file apart without reading
  // all of it.
  text.resize(limits.max_file_bytes + 1);
  const size_t n = std::fread(text.data(), 1, text.size(), f);
  const bool read_error = std::ferror(f) != 0;
  std::fclose(f);
  if (read_error) return absl::FailedPreconditionError(fail("read error"));
  if (n > limits.max_file_bytes) {
    return absl::InvalidArgumentError(
        fail(absl::StrCat("is larger than ", limits.max_file_bytes, " bytes")));
  }
  text.resize(n);
  absl::StatusOr<CallerTable> table = ParseCallersFile(text, limits);
  if (!table.ok()) {
    // "callers file: ..." -> "callers file <path>: ...".
    std::string_view message = AsStd(table.status().message());
    constexpr std::string_view kPrefix = "callers file: ";
    if (message.substr(0, kPrefix.size()) == kPrefix) {
      message.remove_prefix(kPrefix.size());
    }
    return absl::Status(table.status().code(), fail(message));
  }
  return table;
}

std::string HashToken(std::string_view token) {
  const Sha256 digest = HashBytes(token);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(kSha256HexLength, '\0');
  for (size_t i = 0; i < digest.size(); ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 0xF];
  }
  return out;
}

}  // namespace registrar
