#include "service/model/record.h"

namespace registrar {

const std::shared_ptr<const Labels>& EmptyLabels() {
  static const auto* empty =
      new std::shared_ptr<const Labels>(std::make_shared<const Labels>());
  return *empty;
}

}  // namespace registrar
