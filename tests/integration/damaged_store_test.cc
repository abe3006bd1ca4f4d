// A damaged data dir is never served from silently. The real server is
// killed with SIGKILL after acknowledged writes (all in the WAL: nothing is
// flushed yet), its data dir is damaged in one way per case, and the server
// is started on it again. Each case must either recover everything that was
// acknowledged (and continue revisions after them) or refuse to start with a
// non-zero exit and a message naming the damage, leaving every file as it
// was. A refused dir then starts with --accept_data_loss, which keeps a copy
// of the damaged files, logs what was lost, and never reuses a revision.
// The outcomes are printed as a table (README, "Damaged data").

#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/data_dir.h"
#include "tests/integration/server_process.h"
#include "tests/integration/test_util.h"

namespace registrar {
namespace {

namespace fs = std::filesystem;
using ::registrar::testing::KillNine;
using ::registrar::testing::ListAll;
using ::registrar::testing::MakeOwner;
using ::registrar::testing::OptionsFor;
using ::registrar::testing::ReadFile;
using ::registrar::testing::ServerProcess;
using ::registrar::testing::StartOrFail;
using ::registrar::testing::StatusText;
using ::registrar::testing::TestDir;
using ::testing::HasSubstr;

constexpr int kCalls = 40;
constexpr int kPerCall = 25;

std::unique_ptr<Client> ClientFor(const ServerProcess& server) {
  ClientOptions options;
  options.target = server.grpc_address();
  options.deadline = absl::Seconds(10);
  options.max_attempts = 1;
  return std::make_unique<Client>(options);
}

const v1::Owner& Owner() {
  static const v1::Owner* owner = new v1::Owner(MakeOwner("damage", "erin"));
  return *owner;
}

v1::IssueRequest Threads(int count, const std::string& call) {
  v1::IssueRequest request;
  request.set_kind(v1::KIND_THREAD);
  *request.mutable_owner() = Owner();
  request.set_count(count);
  (*request.mutable_labels())["call"] = call;
  return request;
}

// "call" label of every record of Owner().
std::multiset<std::string> CallLabels(Client& client) {
  std::multiset<std::string> out;
  auto records = ListAll(client, Owner(), /*include_ended=*/true);
  if (!records.ok()) {
    ADD_FAILURE() << "ListOwned: " << StatusText(records.status());
    return out;
  }
  for (const v1::Record& r : *records) out.insert(r.labels().at("call"));
  return out;
}

// Revision of a fresh record: proves revisions continue (none reused).
uint64_t NewRevision(Client& client, const std::string& call) {
  auto ids = client.Issue(Threads(1, call));
  if (!ids.ok()) {
    ADD_FAILURE() << "Issue: " << StatusText(ids.status());
    return 0;
  }
  v1::DescribeRequest d;
  d.set_id(ids->ids(0));
  auto described = client.Describe(d);
  if (!described.ok()) {
    ADD_FAILURE() << "Describe: " << StatusText(described.status());
    return 0;
  }
  return described->record().revision();
}

// Every regular file under `dir` (recursively) with its bytes.
std::map<std::string, std::string> Files(const std::string& dir) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {
    if (e.is_regular_file() && e.path().filename() != "LOCK") {
      out[fs::relative(e.path(), dir).string()] = ReadFile(e.path().string());
    }
  }
  return out;
}

std::vector<fs::path> FilesNamed(const std::string& dir,
                                 const std::function<bool(std::string)>& f) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (f(e.path().filename().string())) out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

fs::path TheWal(const std::string& dir) {
  auto wals = FilesNamed(
      dir, [](const std::string& n) { return absl::EndsWith(n, ".log"); });
  EXPECT_EQ(wals.size(), 1u) << "expected one WAL in " << dir;
  return wals.empty() ? fs::path() : wals.back();
}

void FlipByte(const fs::path& file, uint64_t offset) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f) << file;
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x10);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
  ASSERT_TRUE(f.good()) << file << " at " << offset;
}

struct Case {
  std::string name;
  std::function<void(const std::string& data_dir)> damage;
  // When the damage certainly lost acknowledged records, the server must
  // refuse; otherwise recovering everything is fine too.
  bool must_refuse;
};

class DamagedStoreTest : public ::testing::Test {
 protected:
  // One populated data dir, copied for every case: kCalls acknowledged
  // Issue calls, then SIGKILL (nothing flushed: all of it is in the WAL).
  static void SetUpTestSuite() {
    golden_ = new TestDir("damaged-golden");
    auto server = StartOrFail(OptionsFor(*golden_));
    ASSERT_NE(server, nullptr);
    auto client = ClientFor(*server);
    for (int i = 0; i < kCalls; ++i) {
      auto ids = client->Issue(Threads(kPerCall, absl::StrCat("c", i)));
      ASSERT_TRUE(ids.ok()) << StatusText(ids.status());
    }
    last_revision_ = NewRevision(*client, "last");
    ASSERT_GE(last_revision_, static_cast<uint64_t>(kCalls * kPerCall));
    ASSERT_NO_FATAL_FAILURE(KillNine(*server));
  }
  static void TearDownTestSuite() {
    delete golden_;
    golden_ = nullptr;
    std::cout << "\n| damage | outcome |\n|---|---|\n";
    for (const auto& [name, outcome] : *outcomes_) {
      std::cout << "| " << name << " | " << outcome << " |\n";
    }
  }

  static std::multiset<std::string> Acknowledged() {
    std::multiset<std::string> want;
    for (int i = 0; i < kCalls; ++i) {
      for (int j = 0; j < kPerCall; ++j) want.insert(absl::StrCat("c", i));
    }
    want.insert("last");
    return want;
  }

  void Run(const Case& c) {
    SCOPED_TRACE(c.name);
    ASSERT_NE(golden_, nullptr);
    TestDir dir("damaged-case");
    fs::copy(golden_->data_dir(), dir.data_dir(), fs::copy_options::recursive);
    fs::copy_file(golden_->key_path(), dir.key_path(),
                  fs::copy_options::overwrite_existing);
    ASSERT_NO_FATAL_FAILURE(c.damage(dir.data_dir()));
    const auto before = Files(dir.data_dir());

    auto started = ServerProcess::Start(OptionsFor(dir));
    if (started.ok()) {
      auto client = ClientFor(**started);
      EXPECT_EQ(CallLabels(*client), Acknowledged())
          << "started, but not with everything acknowledged";
      EXPECT_GT(NewRevision(*client, "after"), last_revision_);
      EXPECT_FALSE(c.must_refuse) << "acknowledged records were lost, yet "
                                     "it started:\n"
                                  << (*started)->Log();
      (*outcomes_)[c.name] = "recovered everything acknowledged";
      return;
    }
    const std::string message(started.status().message());
    const std::string prefix = "registrar exited with ";
    ASSERT_EQ(message.rfind(prefix, 0), 0u) << message;
    const int code = std::atoi(message.c_str() + prefix.size());
    EXPECT_TRUE(code > 0 && code < 128) << "not a refusal: " << message;
    EXPECT_THAT(message, HasSubstr("is damaged"));
    EXPECT_THAT(message, HasSubstr("--accept_data_loss"));
    EXPECT_EQ(Files(dir.data_dir()), before)
        << "the refused data dir was changed";

    // The operator accepts the loss.
    auto accepted = StartOrFail(OptionsFor(dir, {"--accept_data_loss"}));
    ASSERT_NE(accepted, nullptr);
    EXPECT_THAT(accepted->Log(), HasSubstr("the loss was accepted"));
    auto kept = FilesNamed(dir.data_dir(), [](const std::string& n) {
      return n.rfind("damaged-", 0) == 0;
    });
    ASSERT_EQ(kept.size(), 1u) << "no copy of the damaged files";
    for (const auto& [name, bytes] : before) {
      if (absl::EndsWith(name, ".log") || name.rfind("MANIFEST-", 0) == 0) {
        EXPECT_EQ(ReadFile((kept[0] / name).string()), bytes)
            << name << " was not kept as it was";
      }
    }
    auto client = ClientFor(*accepted);
    const size_t left = CallLabels(*client).size();
    EXPECT_GT(NewRevision(*client, "after"), last_revision_)
        << "a revision was handed out twice";
    (*outcomes_)[c.name] = absl::StrCat("refused to start (exit ", code,
                                        ", files untouched); with "
                                        "--accept_data_loss: ",
                                        left, " of ", Acknowledged().size(),
                                        " records, revisions continue");
    // And the next start needs no override.
    EXPECT_EQ(testing::StopServer(*accepted), 0) << accepted->Log();
    auto again = StartOrFail(OptionsFor(dir));
    ASSERT_NE(again, nullptr);
    EXPECT_EQ(testing::StopServer(*again), 0);
  }

  static TestDir* golden_;
  static uint64_t last_revision_;
  static std::map<std::string, std::string>* outcomes_;
};

TestDir* DamagedStoreTest::golden_ = nullptr;
uint64_t DamagedStoreTest::last_revision_ = 0;
std::map<std::string, std::string>* DamagedStoreTest::outcomes_ =
    new std::map<std::string, std::string>;

TEST_F(DamagedStoreTest, BitFlipsInTheWal) {
  for (double at : {0.1, 0.25, 0.5, 0.75, 0.99}) {
    Run({absl::StrCat("one bit flipped at ", static_cast<int>(at * 100),
                      "% of the WAL"),
         [at](const std::string& d) {
           const fs::path wal = TheWal(d);
           FlipByte(wal, static_cast<uint64_t>(fs::file_size(wal) * at));
         },
         /*must_refuse=*/false});
  }
}

TEST_F(DamagedStoreTest, DeletedWal) {
  Run({"the WAL deleted", [](const std::string& d) { fs::remove(TheWal(d)); },
       /*must_refuse=*/true});
}

TEST_F(DamagedStoreTest, WalCutShort) {
  // Cut inside the last acknowledged write: RocksDB takes it for a torn
  // tail and replays without it, so only the revision witness can tell.
  Run({"the WAL cut by 10 bytes (into the last acknowledged write)",
       [](const std::string& d) {
         const fs::path wal = TheWal(d);
         fs::resize_file(wal, fs::file_size(wal) - 10);
       },
       /*must_refuse=*/true});
}

TEST_F(DamagedStoreTest, TornUnacknowledgedLastWrite) {
  // A crash in the middle of a write that was never acknowledged: a record
  // header announcing 100 bytes, followed by only 30 of them.
  Run({"a torn last write (never acknowledged) at the WAL's end",
       [](const std::string& d) {
         std::ofstream f(TheWal(d), std::ios::binary | std::ios::app);
         const char header[7] = {0x11, 0x22, 0x33, 0x44, 100, 0, 1};
         f.write(header, sizeof(header));
         f << std::string(30, 'x');
       },
       /*must_refuse=*/false});
}

TEST_F(DamagedStoreTest, TruncatedManifest) {
  Run({"the MANIFEST truncated to half",
       [](const std::string& d) {
         auto manifests = FilesNamed(d, [](const std::string& n) {
           return n.rfind("MANIFEST-", 0) == 0;
         });
         ASSERT_FALSE(manifests.empty());
         for (const fs::path& m : manifests) {
           fs::resize_file(m, fs::file_size(m) / 2);
         }
       },
       /*must_refuse=*/false});
}

}  // namespace
}  // namespace registrar
