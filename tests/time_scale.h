#ifndef REGISTRAR_TESTS_TIME_SCALE_H_
#define REGISTRAR_TESTS_TIME_SCALE_H_

// How many times longer a timing bound may be in this build: the sanitizer
// test presets export REGISTRAR_SANITIZER (asan or tsan) to every test,
// whose builds run several times slower. A test scales the latencies and
// deadlines it asserts by this, never what it checks. Header-only.

#include <cstdlib>
#include <string>

namespace registrar::testing {

inline int SanitizerTimeScale() {
  const char* sanitizer = std::getenv("REGISTRAR_SANITIZER");
  if (sanitizer == nullptr || *sanitizer == '\0') return 1;
  return std::string(sanitizer) == "tsan" ? 4 : 2;
}

}  // namespace registrar::testing

#endif  // REGISTRAR_TESTS_TIME_SCALE_H_
