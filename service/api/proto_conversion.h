#ifndef REGISTRAR_SERVICE_API_PROTO_CONVERSION_H_
#define REGISTRAR_SERVICE_API_PROTO_CONVERSION_H_

// Between registrar.v1 messages and the core's plain types. Inputs are
// assumed already checked by request_validation.h.

#include "google/protobuf/map.h"
#include "registrar/v1/registrar.pb.h"
#include "service/model/kind.h"
#include "service/registry/registry.h"

namespace registrar {

inline Kind KindFromProto(v1::Kind kind) { return static_cast<Kind>(kind); }
inline v1::Kind KindToProto(Kind kind) {
  return kind == Kind::kLease ? v1::KIND_UNSPECIFIED
                              : static_cast<v1::Kind>(kind);
}

Owner OwnerFromProto(const v1::Owner& owner);

// Sorted by key.
Labels LabelsFromProto(
    const google::protobuf::Map<std::string, std::string>& m);

void RecordToProto(const RecordView& record, v1::Record* out);

// The core's view of a checked request. The string_views point into `r`,
// which must outlive the result. Caller-dependent fields (IssueSpec's
// lease_caller) are left for the caller to fill.
IssueSpec IssueSpecFromProto(const v1::IssueRequest& r);
OpenContextSpec OpenContextSpecFromProto(const v1::OpenContextRequest& r);
CleanupTarget CleanupTargetFromProto(const v1::CleanupRequest& r);
ListOwnedSpec ListOwnedSpecFromProto(const v1::ListOwnedRequest& r);

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_API_PROTO_CONVERSION_H_
