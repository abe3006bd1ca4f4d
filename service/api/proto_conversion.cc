#include "service/api/proto_conversion.h"

#include <algorithm>

#include "google/protobuf/util/time_util.h"
#include "service/id/id.h"

namespace registrar {

using google::protobuf::util::TimeUtil;

Owner OwnerFromProto(const v1::Owner& owner) {
  return Owner{owner.tenant(), owner.user_id()};
}

Labels LabelsFromProto(
    const google::protobuf::Map<std::string, std::string>& m) {
  Labels labels(m.begin(), m.end());
  std::sort(labels.begin(), labels.end());
  return labels;
}

void RecordToProto(const RecordView& r, v1::Record* out) {
  out->set_id(FormatId(r.kind, r.id));
  out->set_kind(KindToProto(r.kind));
  out->mutable_owner()->set_tenant(r.owner.tenant);
  out->mutable_owner()->set_user_id(r.owner.user_id);
  out->set_parent_id(ParentIdText(r));
  if (!r.connection.is_zero()) {
    out->set_connection_id(FormatId(Kind::kConnection, r.connection));
  }
  if (!r.lease.is_zero()) out->set_lease_id(FormatId(Kind::kLease, r.lease));
  if (r.labels) {
    for (const auto& [k, v] : *r.labels) (*out->mutable_labels())[k] = v;
  }
  *out->mutable_created_at() =
      TimeUtil::MillisecondsToTimestamp(absl::ToUnixMillis(r.created_at));
  if (r.state != State::kLive) {
    *out->mutable_ended_at() =
        TimeUtil::MillisecondsToTimestamp(absl::ToUnixMillis(r.ended_at));
  }
  out->set_state(static_cast<v1::State>(r.state));
  out->set_revision(r.revision);
  out->set_end_reason(r.end_reason);
}

}  // namespace registrar
