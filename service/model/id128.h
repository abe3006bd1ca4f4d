#ifndef REGISTRAR_SERVICE_MODEL_ID128_H_
#define REGISTRAR_SERVICE_MODEL_ID128_H_

// An ID's 128 bits, as every layer holds it. What the bits mean and the
// text form are the ID codec's (service/id/id.h).

#include <compare>
#include <cstdint>
#include <utility>

namespace registrar {

struct Id128 {
  uint64_t hi = 0;
  uint64_t lo = 0;

  bool is_zero() const { return hi == 0 && lo == 0; }
  friend bool operator==(const Id128&, const Id128&) = default;
  friend auto operator<=>(const Id128&, const Id128&) = default;
  template <typename H>
  friend H AbslHashValue(H h, const Id128& id) {
    return H::combine(std::move(h), id.hi, id.lo);
  }
};

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_MODEL_ID128_H_
