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
  out->set_parent_id(FormatParentId(r.kind, r.parent));
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

IssueSpec IssueSpecFromProto(const v1::IssueRequest& r) {
  IssueSpec spec;
  spec.kind = KindFromProto(r.kind());
  spec.owner = OwnerFromProto(r.owner());
  spec.count = r.count();
  spec.parent_id = r.parent_id();
  spec.connection_id = r.connection_id();
  spec.lease_id = r.lease_id();
  spec.labels = LabelsFromProto(r.labels());
  return spec;
}

OpenContextSpec OpenContextSpecFromProto(const v1::OpenContextRequest& r) {
  OpenContextSpec spec;
  spec.owner = OwnerFromProto(r.owner());
  spec.thread_id = r.thread_id();
  spec.connection_id = r.connection_id();
  spec.labels = LabelsFromProto(r.labels());
  return spec;
}

CleanupTarget CleanupTargetFromProto(const v1::CleanupRequest& r) {
  CleanupTarget target;
  switch (r.target_case()) {
    case v1::CleanupRequest::kIds:
      target.type = CleanupTarget::Type::kIds;
      target.ids.reserve(r.ids().ids_size());
      for (const std::string& id : r.ids().ids()) target.ids.push_back(id);
      break;
    case v1::CleanupRequest::kConnectionId:
      target.type = CleanupTarget::Type::kConnection;
      target.connection_id = r.connection_id();
      break;
    default:
      target.type = CleanupTarget::Type::kAllOwned;
      break;
  }
  return target;
}

ListOwnedSpec ListOwnedSpecFromProto(const v1::ListOwnedRequest& r) {
  ListOwnedSpec spec;
  spec.owner = OwnerFromProto(r.owner());
  spec.kind = KindFromProto(r.kind());
  spec.include_ended = r.include_ended();
  spec.page_size = r.page_size();
  spec.page_token = r.page_token();
  return spec;
}

}  // namespace registrar
