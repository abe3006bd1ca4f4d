// Reads: Validate, Describe, ListOwned. Each takes one shard's lock for
// reading and answers from committed records only.

#include <algorithm>
#include <optional>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "service/common/field_error.h"
#include "service/common/status_macros.h"
#include "service/registry/registry.h"
#include "service/registry/registry_util.h"
#include "service/registry/shard.h"

namespace registrar {
using registry_internal::Await;
using registry_internal::PageStart;
using registry_internal::ParseReference;
using Ref = RecordTable::Ref;
using OwnerRef = RecordTable::OwnerRef;
constexpr Ref kNone = RecordTable::kNone;

namespace {

// An upper bound of a record's size in a reply: its strings, its labels,
// and 192 bytes for the rest (four text IDs of 30 bytes, two timestamps,
// kind, state, revision and field tags).
uint64_t EncodedSizeBound(const RecordView& v) {
  uint64_t bytes = 192 + v.owner.tenant.size() + v.owner.user_id.size() +
                   v.end_reason.size();
  for (const auto& [key, value] : *v.labels) {
    bytes += key.size() + value.size() + 8;
  }
  return bytes;
}

// One page of an owner's committed records after `after`, filtered by
// kind and state, of at most `page_size` records and (past its first
// record) `page_bytes` bytes; the caller holds the owner's shard lock.
ListOwnedResult ListPage(const RecordTable& table, const ListOwnedSpec& spec,
                         Id128 after, uint32_t page_size, uint64_t page_bytes) {
  ListOwnedResult result;
  uint64_t bytes = 0;
  table.ForEachOwned(table.FindOwner(spec.owner), after, [&](Ref r) {
    if (spec.kind != Kind::kUnspecified && table.kind(r) != spec.kind) {
      return true;
    }
    if (!spec.include_ended && table.state(r) != State::kLive) return true;
    if (table.pending(r)) return true;  // not issued yet
    RecordView v;
    if (result.records.size() < page_size) {
      v = table.View(r);
      bytes += EncodedSizeBound(v);
    }
    if (result.records.size() == page_size ||
        (bytes > page_bytes && !result.records.empty())) {
      // One more match exists: hand out a token for the next page.
      result.next_page_token = EncodeSuffix(result.records.back().id);
      return false;
    }
    result.records.push_back(std::move(v));
    return true;
  });
  return result;
}
}  // namespace

// ---------------------------------------------------------------------------
// Validate

ValidateResult Registry::Validate(std::string_view id, Kind expected_kind,
                                  const Owner& owner, bool want_record,
                                  const TenantFilter& visible) const {
  ValidateResult result;
  absl::StatusOr<ParsedId> parsed = ParseId(id);
  if (!parsed.ok() || !IsRecordKind(parsed->kind)) {
    result.verdict = Verdict::kMalformed;
    return result;
  }
  if (expected_kind != Kind::kUnspecified && expected_kind != parsed->kind) {
    result.verdict = Verdict::kWrongKind;
    return result;
  }
  const Shard& shard = ShardFor(owner);
  {
    absl::ReaderMutexLock lock(&shard.mu);
    const RecordTable& table = shard.table;
    const Ref r = table.FindCommitted(parsed->bits);
    const Owner* holder =
        r == kNone ? nullptr : &table.owner(table.owner_of(r));
    if (holder != nullptr && *holder != owner && visible &&
        !visible(holder->tenant)) {
      // Another tenant's record, asked by a caller who may not see that
      // tenant: answered below as if it did not exist.
    } else if (r != kNone) {
      const State state = table.state(r);
      if (table.kind(r) != parsed->kind) {
        result.verdict = Verdict::kForged;
      } else if (*holder != owner) {
        result.verdict = Verdict::kNotOwner;
      } else {
        result.verdict = state == State::kLive      ? Verdict::kValid
                         : state == State::kExpired ? Verdict::kExpired
                                                    : Verdict::kReleased;
        if (want_record) result.record = table.View(r);
      }
      return result;
    }
  }
  // No record in the owner's shard: a genuine tag for this owner means the
  // record is gone; otherwise it is another owner's record or a forgery.
  if (ids_.keys().Verify(parsed->kind, parsed->bits, owner.tenant,
                         owner.user_id)) {
    result.verdict = Verdict::kUnknown;
    return result;
  }
  const Kind found = FindElsewhere(parsed->bits, &shard, visible);
  result.verdict = (found == Kind::kUnspecified || found != parsed->kind)
                       ? Verdict::kForged
                       : Verdict::kNotOwner;
  return result;
}

// ---------------------------------------------------------------------------
// Reads

absl::StatusOr<RecordView> Registry::Describe(std::string_view id) const {
  absl::StatusOr<ParsedId> parsed = ParseId(id);
  if (!parsed.ok()) return InvalidField("id", AsStd(parsed.status().message()));
  for (const auto& shard : shards_) {
    absl::ReaderMutexLock lock(&shard->mu);
    const Ref r = shard->table.FindCommitted(parsed->bits);
    if (r != kNone && shard->table.kind(r) == parsed->kind) {
      return shard->table.View(r);
    }
  }
  return absl::NotFoundError(absl::StrCat("id: no record of ", AsAbsl(id)));
}

absl::StatusOr<ListOwnedResult> Registry::ListOwned(
    const ListOwnedSpec& spec) const {
  if (spec.kind != Kind::kUnspecified && !IsRecordKind(spec.kind)) {
    return InvalidField("kind", "is not a record kind");
  }
  ASSIGN_OR_RETURN(const Id128 after, PageStart(spec.page_token));
  const uint32_t page_size = PageSize(spec.page_size);
  const Shard& shard = ShardFor(spec.owner);
  absl::ReaderMutexLock lock(&shard.mu);
  return ListPage(shard.table, spec, after, page_size, options_.max_page_bytes);
}

uint32_t Registry::PageSize(uint32_t asked) const {
  return asked == 0 ? options_.default_page_size
                    : std::min<uint32_t>(asked, options_.max_page_size);
}

}  // namespace registrar
