#include "service/etcd/etcd_layout.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "service/common/absl_compat.h"
#include "service/common/text.h"
#include "service/store/record_codec.h"

namespace registrar::etcd {
namespace {

constexpr size_t kHexIdSize = 2 * kIdKeySize;
constexpr size_t kRevisionDigits = 20;  // UINT64_MAX has 20 digits

}  // namespace

EtcdLayout::EtcdLayout(std::string prefix) : prefix_(std::move(prefix)) {}

std::string EtcdLayout::Hex(Id128 id) {
  return absl::BytesToHexString(IdKey(id));
}

std::string EtcdLayout::EventKey(uint64_t last_revision) const {
  return absl::StrFormat("%s%020u", EventPrefix(), last_revision);
}

bool EtcdLayout::IdOfKey(std::string_view key, Id128* id) {
  if (key.size() < kHexIdSize) return false;
  const std::string_view hex = key.substr(key.size() - kHexIdSize);
  for (char c : hex) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return DecodeIdKey(absl::HexStringToBytes(AsAbsl(hex)), id);
}

bool EtcdLayout::RevisionOfEventKey(std::string_view key,
                                    uint64_t* revision) const {
  const std::string prefix = EventPrefix();
  if (key.size() != prefix.size() + kRevisionDigits ||
      key.substr(0, prefix.size()) != prefix) {
    return false;
  }
  return absl::SimpleAtoi(AsAbsl(key.substr(prefix.size())), revision);
}

std::string EncodeRevisionValue(const RevisionValue& v) {
  return absl::StrCat(v.revision, " ", v.token);
}

absl::Status DecodeRevisionValue(std::string_view text, RevisionValue* out) {
  const size_t space = text.find(' ');
  if (space == std::string_view::npos ||
      !absl::SimpleAtoi(AsAbsl(text.substr(0, space)), &out->revision)) {
    return absl::DataLossError(absl::StrCat("etcd meta key rev holds \"",
                                            LogSafe(text, 64),
                                            "\", not \"<revision> <token>\""));
  }
  out->token = std::string(text.substr(space + 1));
  return absl::OkStatus();
}

TxnFate FateOf(int64_t mod, std::string_view value, int64_t expected_mod,
               std::string_view token) {
  if (mod == expected_mod) return TxnFate::kNotApplied;
  RevisionValue v;
  if (DecodeRevisionValue(value, &v).ok() && v.token == token) {
    return TxnFate::kApplied;
  }
  return TxnFate::kOtherWriter;
}

absl::Status DecodeNumber(std::string_view key, std::string_view text,
                          uint64_t* out) {
  if (!absl::SimpleAtoi(AsAbsl(text), out)) {
    return absl::DataLossError(absl::StrCat("etcd meta key ", LogSafe(key),
                                            " holds \"", LogSafe(text, 64),
                                            "\", not a number"));
  }
  return absl::OkStatus();
}

void EncodeEventsEntry(absl::Span<const Event> events, std::string* out) {
  out->clear();
  const uint64_t first = events.empty() ? 0 : events.front().revision;
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((first >> shift) & 0xff));
  }
  std::string batch;
  EncodeEventBatchValue(events, &batch);
  out->append(batch);
}

absl::Status EventsEntryFirstRevision(std::string_view value, uint64_t* first) {
  if (value.size() < 8) {
    return absl::DataLossError("etcd events entry shorter than 8 bytes");
  }
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) {
    v = (v << 8) | static_cast<unsigned char>(value[i]);
  }
  *first = v;
  return absl::OkStatus();
}

std::string_view EventsEntryBatch(std::string_view value) {
  return value.size() < 8 ? std::string_view() : value.substr(8);
}

}  // namespace registrar::etcd
