#ifndef REGISTRAR_TESTS_INTEGRATION_DATA_DIR_H_
#define REGISTRAR_TESTS_INTEGRATION_DATA_DIR_H_

// For integration tests that restart the server on the same data: a
// directory of the test's own, with a key file and a data dir inside, that
// outlives any one ServerProcess. Header-only.

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "service/id/key_ring.h"
#include "tests/integration/server_process.h"

namespace registrar::testing {

// <gtest temp dir>/<name>-<pid>, made afresh with a generated key file in
// it, and removed with everything in it at the end.
class TestDir {
 public:
  explicit TestDir(const std::string& name)
      : path_(absl::StrCat(::testing::TempDir(), "/", name, "-", getpid())) {
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
    key_path_ = path_ + "/tag.key";
    std::ofstream(key_path_) << KeyRing::Generate().ToFileText();
  }
  ~TestDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TestDir(const TestDir&) = delete;
  TestDir& operator=(const TestDir&) = delete;

  const std::string& path() const { return path_; }
  const std::string& key_path() const { return key_path_; }
  std::string data_dir() const { return path_ + "/data"; }

 private:
  std::string path_;
  std::string key_path_;
};

// A server on `dir`'s key file and data dir, in fsync mode with 50 ms
// ticks, plus the `extra` flags.
inline ServerProcess::Options OptionsFor(const TestDir& dir,
                                         std::vector<std::string> extra = {}) {
  ServerProcess::Options options;
  options.key_path = dir.key_path();
  options.data_dir = dir.data_dir();
  options.args = {"--durability=fsync", "--tick_interval=50ms"};
  options.args.insert(options.args.end(), extra.begin(), extra.end());
  return options;
}

}  // namespace registrar::testing

#endif  // REGISTRAR_TESTS_INTEGRATION_DATA_DIR_H_
