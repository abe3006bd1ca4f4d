#include "service/model/kind.h"

namespace registrar {

std::string_view KindName(Kind kind) {
  switch (kind) {
    case Kind::kThread:
      return "thread";
    case Kind::kRun:
      return "run";
    case Kind::kRequest:
      return "request";
    case Kind::kConnection:
      return "connection";
    case Kind::kLease:
      return "lease";
    case Kind::kUnspecified:
      break;
  }
  return "unspecified";
}

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

}  // namespace registrar
