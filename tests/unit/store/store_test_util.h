#ifndef REGISTRAR_TESTS_UNIT_STORE_STORE_TEST_UTIL_H_
#define REGISTRAR_TESTS_UNIT_STORE_STORE_TEST_UTIL_H_

// Helpers shared by the store tests: temporary directories and records.

#include <stdlib.h>

#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "service/model/record.h"
#include "service/store/store.h"

namespace registrar::testing_util {

// A fresh directory under the test temp dir, removed with its contents.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = ::testing::TempDir() + "registrar_store_XXXXXX";
    char* p = mkdtemp(tmpl.data());
    EXPECT_NE(p, nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  // A path inside the directory (not created).
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// name -> size of every file under `dir`, for "left intact" checks.
inline std::map<std::string, uintmax_t> ListFiles(const std::string& dir) {
  std::map<std::string, uintmax_t> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    out[e.path().string()] = e.is_regular_file() ? e.file_size() : 0;
  }
  return out;
}

// A live record of `kind` with every optional field set.
inline RecordView MakeRecord(uint64_t n, Kind kind = Kind::kRun) {
  RecordView r;
  r.id = Id128{0x0190000000007000ULL + n, 0x8000000000000000ULL | n};
  r.kind = kind;
  r.owner =
      Owner{"tenant-" + std::to_string(n % 3), "user-" + std::to_string(n)};
  if (kind == Kind::kRun || kind == Kind::kRequest) r.parent = Id128{n, n + 1};
  if (kind != Kind::kConnection) r.connection = Id128{n + 2, n + 3};
  if (kind == Kind::kConnection) r.lease = Id128{n + 4, n + 5};
  r.labels = std::make_shared<const Labels>(
      Labels{{"env", "test"}, {"n", std::to_string(n)}});
  r.created_at = absl::FromUnixMillis(1'750'000'000'000 + n);
  r.ended_at = absl::InfinitePast();
  r.state = State::kLive;
  return r;
}

inline Event Issued(RecordView r) {
  Event e;
  e.type = EventType::kIssued;
  e.record = std::move(r);
  return e;
}

inline void ExpectSameRecord(const RecordView& a, const RecordView& b) {
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.kind, b.kind);
  EXPECT_EQ(a.owner, b.owner);
  EXPECT_EQ(a.parent, b.parent);
  EXPECT_EQ(a.connection, b.connection);
  EXPECT_EQ(a.lease, b.lease);
  ASSERT_NE(a.labels, nullptr);
  ASSERT_NE(b.labels, nullptr);
  EXPECT_EQ(*a.labels, *b.labels);
  EXPECT_EQ(a.created_at, b.created_at);
  EXPECT_EQ(a.ended_at, b.ended_at);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.revision, b.revision);
  EXPECT_EQ(a.end_reason, b.end_reason);
}

}  // namespace registrar::testing_util

#endif  // REGISTRAR_TESTS_UNIT_STORE_STORE_TEST_UTIL_H_
