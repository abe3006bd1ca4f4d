#include "service/cluster/committed_txn.h"

#include <string>
#include <string_view>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "service/common/absl_compat.h"
#include "service/common/status_macros.h"

namespace registrar::cluster {

namespace {

bool HasPrefix(std::string_view key, const std::string& prefix) {
  return key.substr(0, prefix.size()) == prefix;
}

absl::Status BadKey(std::string_view key, std::string_view what) {
  return absl::DataLossError(
      absl::StrCat("etcd key ", AsAbsl(key), ": ", AsAbsl(what)));
}

}  // namespace

absl::StatusOr<std::vector<CommittedTxn>> CommittedTxnDecoder::Decode(
    const std::vector<mvccpb::Event>& events) {
  std::vector<CommittedTxn> out;
  for (const mvccpb::Event& e : events) {
    const int64_t rev = e.kv().mod_revision();
    if (out.empty() || out.back().etcd_revision != rev) {
      out.emplace_back().etcd_revision = rev;
    }
    RETURN_IF_ERROR(Add(e, &out.back()));
  }
  return out;
}

absl::Status CommittedTxnDecoder::Add(const mvccpb::Event& event,
                                      CommittedTxn* txn) {
  const std::string& key = event.kv().key();
  const std::string& value = event.kv().value();
  const bool put = event.type() == mvccpb::Event::PUT;
  Id128 id;
  if (HasPrefix(key, layout_.EventPrefix())) {
    if (!put) return absl::OkStatus();  // CompactEvents
    uint64_t first = 0;
    RETURN_IF_ERROR(etcd::EventsEntryFirstRevision(value, &first));
    return decoder_.DecodeEvents(first, etcd::EventsEntryBatch(value),
                                 &txn->batch.events);
  }
  if (HasPrefix(key, layout_.LeasePrefix())) {
    if (!etcd::EtcdLayout::IdOfKey(key, &id)) return BadKey(key, "no lease id");
    if (!put) {
      txn->batch.delete_leases.push_back(id);
      return absl::OkStatus();
    }
    LeaseView lease;
    RETURN_IF_ERROR(decoder_.DecodeLease(id, value, &lease));
    txn->batch.put_leases.push_back(std::move(lease));
    return absl::OkStatus();
  }
  if (HasPrefix(key, layout_.RecordPrefix())) {
    if (put) return absl::OkStatus();  // its state is in the Txn's events
    if (!etcd::EtcdLayout::IdOfKey(key, &id)) {
      return BadKey(key, "no record id");
    }
    txn->batch.drop_records.push_back(id);
    return absl::OkStatus();
  }
  if (put && key == layout_.RevisionKey()) {
    etcd::RevisionValue v;
    RETURN_IF_ERROR(etcd::DecodeRevisionValue(value, &v));
    txn->revision = v.revision;
  }
  return absl::OkStatus();
}

}  // namespace registrar::cluster
