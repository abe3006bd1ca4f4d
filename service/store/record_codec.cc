#include "service/store/record_codec.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "service/common/status_macros.h"
#include "service/store/storage.pb.h"

namespace registrar {
namespace {

using storage::v1::StoredEvent;
using storage::v1::StoredEventBatch;
using storage::v1::StoredEventRun;
using storage::v1::StoredLease;
using storage::v1::StoredRecord;

void PutBigEndian64(uint64_t v, char* out) {
  for (int i = 7; i >= 0; --i) {
    out[i] = static_cast<char>(v & 0xFF);
    v >>= 8;
  }
}

uint64_t GetBigEndian64(const char* in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(in[i]);
  return v;
}

int64_t ToMs(absl::Time t) { return absl::ToUnixMillis(t); }

bool ValidRecordKind(uint32_t k) {
  return k >= static_cast<uint32_t>(Kind::kThread) &&
         k <= static_cast<uint32_t>(Kind::kConnection);
}
bool ValidState(uint32_t s) {
  return s >= static_cast<uint32_t>(State::kLive) &&
         s <= static_cast<uint32_t>(State::kExpired);
}
bool ValidEventType(uint32_t t) {
  return t >= static_cast<uint32_t>(EventType::kIssued) &&
         t <= static_cast<uint32_t>(EventType::kExpired);
}

void FillStoredRecord(const RecordView& r, StoredRecord* m) {
  m->set_kind(static_cast<uint32_t>(r.kind));
  m->set_state(static_cast<uint32_t>(r.state));
  m->set_tenant(r.owner.tenant);
  m->set_user_id(r.owner.user_id);
  m->set_parent_hi(r.parent.hi);
  m->set_parent_lo(r.parent.lo);
  m->set_connection_hi(r.connection.hi);
  m->set_connection_lo(r.connection.lo);
  m->set_lease_hi(r.lease.hi);
  m->set_lease_lo(r.lease.lo);
  if (r.labels != nullptr) {
    for (const auto& [k, v] : *r.labels) {
      storage::v1::StoredLabel* l = m->add_labels();
      l->set_key(k);
      l->set_value(v);
    }
  }
  m->set_created_ms(ToMs(r.created_at));
  if (r.ended_at != absl::InfinitePast()) m->set_ended_ms(ToMs(r.ended_at));
  m->set_revision(r.revision);
  m->set_end_reason(r.end_reason);
}

}  // namespace

void EncodeIdKey(Id128 id, char out[kIdKeySize]) {
  PutBigEndian64(id.hi, out);
  PutBigEndian64(id.lo, out + 8);
}

std::string IdKey(Id128 id) {
  std::string key(kIdKeySize, '\0');
  EncodeIdKey(id, key.data());
  return key;
}

bool DecodeIdKey(std::string_view key, Id128* id) {
  if (key.size() != kIdKeySize) return false;
  id->hi = GetBigEndian64(key.data());
  id->lo = GetBigEndian64(key.data() + 8);
  return true;
}

void EncodeRevisionKey(uint64_t revision, char out[kRevisionKeySize]) {
  PutBigEndian64(revision, out);
}

std::string RevisionKey(uint64_t revision) {
  std::string key(kRevisionKeySize, '\0');
  EncodeRevisionKey(revision, key.data());
  return key;
}

bool DecodeRevisionKey(std::string_view key, uint64_t* revision) {
  if (key.size() != kRevisionKeySize) return false;
  *revision = GetBigEndian64(key.data());
  return true;
}

void EncodeRecordValue(const RecordView& r, std::string* out) {
  // One message a thread, cleared between records: Clear() keeps its
  // strings' buffers, so encoding a record allocates nothing (a fresh
  // message allocates each string field, per record of a 100-ID commit).
  thread_local StoredRecord m;
  m.Clear();
  FillStoredRecord(r, &m);
  out->clear();
  m.SerializeToString(out);
}

void EncodeEventValue(EventType type, Id128 id, std::string_view record_value,
                      std::string* out) {
  // A serialized message followed by a serialized field is the message with
  // that field set (protobuf wire format), so the header is encoded with the
  // generated code and the record bytes are appended as field 4 by hand:
  // tag (4 << 3 | length-delimited) = 0x22, varint length, bytes.
  StoredEvent header;
  header.set_type(static_cast<uint32_t>(type));
  header.set_id_hi(id.hi);
  header.set_id_lo(id.lo);
  out->clear();
  header.SerializeToString(out);
  out->push_back(static_cast<char>((StoredEvent::kRecordFieldNumber << 3) | 2));
  uint64_t n = record_value.size();
  while (n >= 0x80) {
    out->push_back(static_cast<char>((n & 0x7F) | 0x80));
    n >>= 7;
  }
  out->push_back(static_cast<char>(n));
  out->append(record_value.data(), record_value.size());
}

namespace {

// True when two events can share a run: same type, and records equal in
// everything but ID and revision.
bool SameRun(const Event& a, const Event& b) {
  const RecordView& x = a.record;
  const RecordView& y = b.record;
  return a.type == b.type && x.kind == y.kind && x.state == y.state &&
         x.owner == y.owner && x.parent == y.parent &&
         x.connection == y.connection && x.lease == y.lease &&
         (x.labels == y.labels || (x.labels && y.labels && *x.labels == *y.labels)) &&
         x.created_at == y.created_at && x.ended_at == y.ended_at &&
         x.end_reason == y.end_reason;
}

}  // namespace

void EncodeEventBatchValue(absl::Span<const Event> events, std::string* out) {
  StoredEventBatch batch;
  StoredEventRun* run = nullptr;
  const Event* run_first = nullptr;
  for (const Event& e : events) {
    if (run == nullptr || !SameRun(*run_first, e)) {
      run = batch.add_runs();
      run_first = &e;
      run->set_type(static_cast<uint32_t>(e.type));
      FillStoredRecord(e.record, run->mutable_record());
      run->mutable_record()->clear_revision();
    }
    run->add_ids(e.record.id.hi);
    run->add_ids(e.record.id.lo);
  }
  out->assign(1, '\0');
  batch.AppendToString(out);
}

void EncodeLeaseValue(const LeaseView& lease, std::string* out) {
  StoredLease m;
  m.set_holder(lease.holder);
  m.set_grantor(lease.grantor);
  m.set_ttl_ms(static_cast<uint64_t>(
      std::max<int64_t>(0, absl::ToInt64Milliseconds(lease.ttl))));
  out->clear();
  m.SerializeToString(out);
}

struct RecordDecoder::Messages {
  StoredRecord record;
  StoredEvent event;
  StoredEventBatch batch;
  StoredLease lease;
};

RecordDecoder::RecordDecoder()
    : m_(std::make_unique<Messages>()),
      empty_labels_(std::make_shared<const Labels>()) {}

RecordDecoder::~RecordDecoder() = default;

namespace {

absl::Status ToRecordView(const StoredRecord& m,
                          const std::shared_ptr<const Labels>& empty_labels,
                          RecordView* out) {
  if (!ValidRecordKind(m.kind())) {
    return absl::DataLossError(absl::StrCat("unknown record kind ", m.kind()));
  }
  if (!ValidState(m.state())) {
    return absl::DataLossError(absl::StrCat("unknown record state ", m.state()));
  }
  out->kind = static_cast<Kind>(m.kind());
  out->state = static_cast<State>(m.state());
  out->owner.tenant.assign(m.tenant());
  out->owner.user_id.assign(m.user_id());
  out->parent = Id128{m.parent_hi(), m.parent_lo()};
  out->connection = Id128{m.connection_hi(), m.connection_lo()};
  out->lease = Id128{m.lease_hi(), m.lease_lo()};
  if (m.labels_size() == 0) {
    out->labels = empty_labels;
  } else {
    auto labels = std::make_shared<Labels>();
    labels->reserve(m.labels_size());
    for (const auto& l : m.labels()) labels->emplace_back(l.key(), l.value());
    out->labels = std::move(labels);
  }
  out->created_at = absl::FromUnixMillis(m.created_ms());
  out->ended_at = m.has_ended_ms() ? absl::FromUnixMillis(m.ended_ms())
                                   : absl::InfinitePast();
  out->revision = m.revision();
  out->end_reason.assign(m.end_reason());
  return absl::OkStatus();
}

}  // namespace

absl::Status RecordDecoder::DecodeRecord(Id128 id, std::string_view value,
                                         RecordView* out) {
  StoredRecord& m = m_->record;
  if (!m.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(
        absl::StrCat("record value does not parse (", value.size(), " bytes)"));
  }
  out->id = id;
  return ToRecordView(m, empty_labels_, out);
}

absl::Status RecordDecoder::DecodeEvent(uint64_t revision,
                                        std::string_view value, Event* out) {
  StoredEvent& m = m_->event;
  if (!m.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(absl::StrCat("event ", revision,
                                            " does not parse (", value.size(),
                                            " bytes)"));
  }
  if (!ValidEventType(m.type())) {
    return absl::DataLossError(
        absl::StrCat("event ", revision, " has unknown type ", m.type()));
  }
  out->revision = revision;
  out->type = static_cast<EventType>(m.type());
  out->record.id = Id128{m.id_hi(), m.id_lo()};
  absl::Status s = ToRecordView(m.record(), empty_labels_, &out->record);
  if (!s.ok()) {
    return absl::DataLossError(absl::StrCat("event ", revision, ": ",
                                            s.message()));
  }
  out->record.revision = revision;
  return absl::OkStatus();
}

absl::Status RecordDecoder::DecodeEvents(uint64_t first_revision,
                                         std::string_view value,
                                         std::vector<Event>* out) {
  if (value.empty() || value[0] != '\0') {
    Event e;
    RETURN_IF_ERROR(DecodeEvent(first_revision, value, &e));
    out->push_back(std::move(e));
    return absl::OkStatus();
  }
  StoredEventBatch& m = m_->batch;
  if (!m.ParseFromArray(value.data() + 1, static_cast<int>(value.size() - 1))) {
    return absl::DataLossError(absl::StrCat("events from ", first_revision,
                                            " do not parse (", value.size(),
                                            " bytes)"));
  }
  uint64_t revision = first_revision;
  for (const StoredEventRun& run : m.runs()) {
    if (!ValidEventType(run.type())) {
      return absl::DataLossError(absl::StrCat(
          "event ", revision, " has unknown type ", run.type()));
    }
    if (run.ids_size() == 0 || run.ids_size() % 2 != 0) {
      return absl::DataLossError(absl::StrCat(
          "events from ", revision, ": a run with ", run.ids_size(),
          " ID words"));
    }
    Event shared;
    shared.type = static_cast<EventType>(run.type());
    absl::Status s = ToRecordView(run.record(), empty_labels_, &shared.record);
    if (!s.ok()) {
      return absl::DataLossError(
          absl::StrCat("event ", revision, ": ", s.message()));
    }
    for (int i = 0; i < run.ids_size(); i += 2) {
      Event& e = out->emplace_back(shared);
      e.revision = e.record.revision = revision++;
      e.record.id = Id128{run.ids(i), run.ids(i + 1)};
    }
  }
  return absl::OkStatus();
}

absl::Status RecordDecoder::DecodeLease(Id128 id, std::string_view value,
                                        LeaseView* out) {
  StoredLease& m = m_->lease;
  if (!m.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(
        absl::StrCat("lease value does not parse (", value.size(), " bytes)"));
  }
  out->id = id;
  out->holder.assign(m.holder());
  out->grantor.assign(m.grantor());
  out->ttl = absl::Milliseconds(static_cast<int64_t>(m.ttl_ms()));
  return absl::OkStatus();
}

absl::Status RecordDecoder::DecodeKindState(std::string_view value, Kind* kind,
                                            State* state) {
  StoredRecord& m = m_->record;
  if (!m.ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(
        absl::StrCat("record value does not parse (", value.size(), " bytes)"));
  }
  if (!ValidRecordKind(m.kind()) || !ValidState(m.state())) {
    return absl::DataLossError(absl::StrCat("unknown record kind ", m.kind(),
                                            " or state ", m.state()));
  }
  *kind = static_cast<Kind>(m.kind());
  *state = static_cast<State>(m.state());
  return absl::OkStatus();
}

}  // namespace registrar
