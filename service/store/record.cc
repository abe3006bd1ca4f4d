#include "service/store/record.h"

namespace registrar {

Kind ParentKindOf(Kind kind) {
  switch (kind) {
    case Kind::kRun:
      return Kind::kThread;
    case Kind::kRequest:
      return Kind::kRun;
    default:
      return Kind::kUnspecified;
  }
}

std::string ParentIdText(const RecordView& r) {
  if (r.parent.is_zero()) return "";
  return FormatId(ParentKindOf(r.kind), r.parent);
}

}  // namespace registrar
