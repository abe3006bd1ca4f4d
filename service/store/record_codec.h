#ifndef REGISTRAR_SERVICE_STORE_RECORD_CODEC_H_
#define REGISTRAR_SERVICE_STORE_RECORD_CODEC_H_

// Keys and values of the RocksDB store, between the plain structs of
// record.h/store.h and the bytes on disk (messages of storage.proto). Keys
// are big-endian so RocksDB's bytewise order is ID order and revision order.
//
// Nothing here touches RocksDB; the functions are pure and thread-safe.
// A RecordDecoder keeps scratch state: one per thread.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "service/model/record.h"
#include "service/store/store.h"

namespace registrar {

inline constexpr size_t kIdKeySize = 16;
inline constexpr size_t kRevisionKeySize = 8;

// 16 bytes: hi then lo, each big-endian.
void EncodeIdKey(Id128 id, char out[kIdKeySize]);
std::string IdKey(Id128 id);
// False when `key` is not 16 bytes.
bool DecodeIdKey(std::string_view key, Id128* id);

// 8 bytes, big-endian.
void EncodeRevisionKey(uint64_t revision, char out[kRevisionKeySize]);
std::string RevisionKey(uint64_t revision);
// False when `key` is not 8 bytes.
bool DecodeRevisionKey(std::string_view key, uint64_t* revision);

// Sets *out to the StoredRecord of `r` (without its id: that is the key).
// Times are kept in ms; ended_at is kept only when it is not InfinitePast.
void EncodeRecordValue(const RecordView& r, std::string* out);

// Sets *out to the value of one events-family entry holding `events`
// (consecutive revisions; the entry's key is the first): a zero byte, then
// a StoredEventBatch in which each run of events whose records differ only
// in their ID is encoded once. One entry per committed batch instead of one
// per event: an Issue of 100 IDs writes one event entry, not 100.
void EncodeEventBatchValue(absl::Span<const Event> events, std::string* out);

// Sets *out to a single-event entry (the format of older data dirs, still
// read): a StoredEvent of `type` for record `id` whose StoredRecord bytes
// are `record_value` (from EncodeRecordValue), copied, not re-encoded.
void EncodeEventValue(EventType type, Id128 id, std::string_view record_value,
                      std::string* out);

// Sets *out to the StoredLease of `lease` (without its id: the key).
void EncodeLeaseValue(const LeaseView& lease, std::string* out);

// Decodes values. Not thread-safe: it reuses one parsed message per value
// type, so decoding a million records allocates only what the RecordViews
// themselves hold. Records without labels all share one empty Labels.
// Errors are DataLoss naming what is wrong (a value that does not parse, an
// unknown kind, state or event type).
class RecordDecoder {
 public:
  RecordDecoder();
  ~RecordDecoder();
  RecordDecoder(const RecordDecoder&) = delete;
  RecordDecoder& operator=(const RecordDecoder&) = delete;

  absl::Status DecodeRecord(Id128 id, std::string_view value, RecordView* out);
  // out->revision and out->record.revision are set to `revision` (the key).
  absl::Status DecodeEvent(uint64_t revision, std::string_view value,
                           Event* out);
  // Appends the events of one events-family entry whose key is
  // `first_revision`: a batch (EncodeEventBatchValue) or a single event.
  absl::Status DecodeEvents(uint64_t first_revision, std::string_view value,
                            std::vector<Event>* out);
  absl::Status DecodeLease(Id128 id, std::string_view value, LeaseView* out);

  // Only kind and state, for counting (registrarctl inspect).
  absl::Status DecodeKindState(std::string_view value, Kind* kind,
                               State* state);

 private:
  struct Messages;
  std::unique_ptr<Messages> m_;
  std::shared_ptr<const Labels> empty_labels_;
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_STORE_RECORD_CODEC_H_
