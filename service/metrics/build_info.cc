#include "service/metrics/build_info.h"

namespace registrar {

std::string_view BuildVersion() { return REGISTRAR_BUILD_VERSION; }

std::string_view BuildRevision() { return REGISTRAR_BUILD_REVISION; }

}  // namespace registrar
