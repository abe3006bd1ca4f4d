#ifndef REGISTRAR_SERVICE_ETCD_ETCD_LAYOUT_H_
#define REGISTRAR_SERVICE_ETCD_ETCD_LAYOUT_H_

// Where EtcdStore keeps what in etcd, and how values are encoded. Every key
// starts with the store's prefix (e.g. "/registrar"):
//
//   <prefix>/m/rev       "<last revision> <writer token>": the commit fence
//                        (every Txn compares its mod_revision, see
//                        etcd_store.h) and the last Registrar revision
//   <prefix>/m/clock     ID clock high-water mark, ms (decimal)
//   <prefix>/m/oldest    oldest revision ReadEvents still serves (decimal)
//   <prefix>/r/<hex id>  one record: the RocksDB store's record value
//   <prefix>/l/<hex id>  one lease: the RocksDB store's lease value
//   <prefix>/e/<rev>     the events of one Txn; <rev> is its LAST revision,
//                        20 decimal digits (so key order is revision
//                        order), the value is the first revision (8 bytes,
//                        big-endian) then an events batch value
//
// Keying an events entry by its last revision makes "the entry holding
// revision R" the first key >= e/<R>: one Range, no backwards seek.
// Record and lease values are record_codec.h's (storage.proto), so both
// durable stores share one format. Pure functions; thread-safe.

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "service/model/record.h"
#include "service/store/store.h"

namespace registrar::etcd {

class EtcdLayout {
 public:
  // `prefix` without a trailing '/'; "" keeps keys at the root ("/m/rev").
  explicit EtcdLayout(std::string prefix);

  const std::string& prefix() const { return prefix_; }
  std::string RevisionKey() const { return prefix_ + "/m/rev"; }
  std::string ClockKey() const { return prefix_ + "/m/clock"; }
  std::string OldestKey() const { return prefix_ + "/m/oldest"; }
  std::string MetaPrefix() const { return prefix_ + "/m/"; }
  std::string RecordPrefix() const { return prefix_ + "/r/"; }
  std::string LeasePrefix() const { return prefix_ + "/l/"; }
  std::string EventPrefix() const { return prefix_ + "/e/"; }

  std::string RecordKey(Id128 id) const { return RecordPrefix() + Hex(id); }
  std::string LeaseKey(Id128 id) const { return LeasePrefix() + Hex(id); }
  std::string EventKey(uint64_t last_revision) const;

  // The id of a record or lease key (any prefix ending in '/'); false when
  // the key does not end in 32 hex digits.
  static bool IdOfKey(std::string_view key, Id128* id);
  // The last revision of an events key; false when malformed.
  bool RevisionOfEventKey(std::string_view key, uint64_t* revision) const;

  static std::string Hex(Id128 id);

 private:
  const std::string prefix_;
};

// <prefix>/m/rev's value.
struct RevisionValue {
  uint64_t revision = 0;
  std::string token;  // which writer's which Txn wrote it
};
std::string EncodeRevisionValue(const RevisionValue& v);
// DataLoss naming the key's content when it does not parse.
absl::Status DecodeRevisionValue(std::string_view text, RevisionValue* out);

// What <prefix>/m/rev, read after a Txn, says of that Txn: the Txn wrote
// `token` and compared the key's mod_revision with `expected_mod`; `mod`
// and `value` are the key as read (0 and "" when absent).
enum class TxnFate {
  kNotApplied,   // unchanged: the Txn (or its compare) did not apply
  kApplied,      // it holds our token: the Txn applied, at `mod`
  kOtherWriter,  // someone else wrote it since
};
TxnFate FateOf(int64_t mod, std::string_view value, int64_t expected_mod,
               std::string_view token);

// A decimal meta value (clock, oldest); DataLoss when it does not parse.
absl::Status DecodeNumber(std::string_view key, std::string_view text,
                          uint64_t* out);

// An events entry: `events` hold consecutive revisions.
void EncodeEventsEntry(absl::Span<const Event> events, std::string* out);
// The first revision of an events entry; DataLoss when too short.
absl::Status EventsEntryFirstRevision(std::string_view value, uint64_t* first);
// The events batch value inside an entry (after the first revision).
std::string_view EventsEntryBatch(std::string_view value);

}  // namespace registrar::etcd

#endif  // REGISTRAR_SERVICE_ETCD_ETCD_LAYOUT_H_
