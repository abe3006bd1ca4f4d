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

const std::shared_ptr<const Labels>& EmptyLabels() {
  static const auto* empty =
      new std::shared_ptr<const Labels>(std::make_shared<const Labels>());
  return *empty;
}

std::string ParentIdText(const RecordView& r) {
  if (r.parent.is_zero()) return "";
  return FormatId(ParentKindOf(r.kind), r.parent);
}

}  // namespace registrar
