// The headers most test programs include, precompiled once and reused by
// every test target (tests/CMakeLists.txt, REGISTRAR_PCH): parsing gtest,
// gmock, gRPC and the generated stubs is about a third of each test file's
// compile time, and CI builds the tests three times (Release, ASan, TSan).
// Only headers from packages and generated code belong here, never one of
// ours that a test might want to see changed without a rebuild of all.
#ifndef REGISTRAR_TESTS_PRECOMPILED_H_
#define REGISTRAR_TESTS_PRECOMPILED_H_

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "gtest/gtest.h"
#include "registrar/v1/registrar.grpc.pb.h"

#endif  // REGISTRAR_TESTS_PRECOMPILED_H_
