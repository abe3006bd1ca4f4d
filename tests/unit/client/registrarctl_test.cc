// The built registrarctl binary (REGISTRARCTL_PATH): keygen (create,
// refuse to overwrite, rotate through 0,1,2,3,0), hash-token, and the global
// token and TLS options against a FakeRegistrar.

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/auth/callers_file.h"
#include "service/id/key_ring.h"
#include "tests/unit/client/fake_registrar.h"

namespace registrar {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;

struct CommandResult {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs `args` (a shell fragment) after the registrarctl path.
CommandResult Registrarctl(const std::string& args,
                           const std::string& env = "") {
  const std::string command =
      absl::StrCat(env, " '", REGISTRARCTL_PATH, "' ", args, " 2>&1");
  CommandResult result;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), pipe)) > 0) {
    result.output.append(buf, n);
  }
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

// version -> hex key of the key lines of a key file, and the versions in
// file order.
struct KeyLines {
  std::map<uint32_t, std::string> keys;
  std::vector<uint32_t> order;
};

KeyLines ParseKeyLines(const std::string& text) {
  KeyLines lines;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> fields = absl::StrSplit(line, ' ');
    const uint32_t version = static_cast<uint32_t>(std::stoul(fields.at(0)));
    lines.keys[version] = fields.at(1);
    lines.order.push_back(version);
  }
  return lines;
}

class RegistrarctlCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "registrarctl-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  std::string dir_;
};

TEST_F(RegistrarctlCliTest, KeygenCreatesAFileOnlyOnce) {
  const std::string path = dir_ + "/tag.key";
  CommandResult created = Registrarctl("keygen --out " + path + " --version 2");
  ASSERT_EQ(created.exit_code, 0) << created.output;
  EXPECT_THAT(created.output, HasSubstr("version 2 signs"));

  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  absl::StatusOr<KeyRing> ring = KeyRing::LoadFile(path);
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_EQ(ring->signing_version(), 2u);
  const std::string first = ReadFile(path);

  CommandResult again = Registrarctl("keygen --out " + path);
  EXPECT_NE(again.exit_code, 0);
  EXPECT_THAT(again.output, HasSubstr("--force"));
  EXPECT_EQ(ReadFile(path), first);

  CommandResult forced = Registrarctl("keygen --out " + path + " --force");
  ASSERT_EQ(forced.exit_code, 0) << forced.output;
  EXPECT_NE(ReadFile(path), first);
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ring = KeyRing::LoadFile(path);
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_EQ(ring->signing_version(), 0u);
}

TEST_F(RegistrarctlCliTest, KeygenUsageErrors) {
  EXPECT_EQ(Registrarctl("keygen").exit_code, 2);
  EXPECT_EQ(Registrarctl("keygen --out " + dir_ + "/k --version 4").exit_code,
            2);
  EXPECT_EQ(Registrarctl("keygen --out " + dir_ + "/k --add-to " + dir_ + "/k")
                .exit_code,
            2);
  EXPECT_NE(Registrarctl("keygen --add-to " + dir_ + "/missing").exit_code, 0);
}

TEST_F(RegistrarctlCliTest, KeygenRotatesThroughAllVersionsAndWraps) {
  const std::string path = dir_ + "/tag.key";
  ASSERT_EQ(Registrarctl("keygen --out " + path).exit_code, 0);
  const KeyLines original = ParseKeyLines(ReadFile(path));
  ASSERT_EQ(original.order, std::vector<uint32_t>{0});

  for (uint32_t expected : {1u, 2u, 3u}) {
    CommandResult r = Registrarctl("keygen --add-to " + path);
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_THAT(r.output,
                HasSubstr(absl::StrCat("version ", expected, " signs")));
    absl::StatusOr<KeyRing> ring = KeyRing::LoadFile(path);
    ASSERT_TRUE(ring.ok()) << ring.status();
    EXPECT_EQ(ring->signing_version(), expected);
    for (uint32_t v = 0; v <= expected; ++v) EXPECT_TRUE(ring->has_version(v));
  }
  const KeyLines full = ParseKeyLines(ReadFile(path));
  EXPECT_EQ(full.order, (std::vector<uint32_t>{0, 1, 2, 3}));
  EXPECT_EQ(full.keys.at(0), original.keys.at(0));

  // After 3 comes 0 again: the old version-0 line goes, the new one is last
  // and signs; 1, 2 and 3 keep their keys and still verify.
  CommandResult wrap = Registrarctl("keygen --add-to " + path);
  ASSERT_EQ(wrap.exit_code, 0) << wrap.output;
  EXPECT_THAT(wrap.output, HasSubstr("version 0 signs"));
  EXPECT_THAT(wrap.output, HasSubstr("versions 0, 1, 2, 3 verify"));
  EXPECT_THAT(wrap.output, HasSubstr("replaced the old version 0 key"));
  absl::StatusOr<KeyRing> ring = KeyRing::LoadFile(path);
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_EQ(ring->signing_version(), 0u);
  const KeyLines wrapped = ParseKeyLines(ReadFile(path));
  EXPECT_EQ(wrapped.order, (std::vector<uint32_t>{1, 2, 3, 0}));
  EXPECT_NE(wrapped.keys.at(0), original.keys.at(0));
  for (uint32_t v : {1u, 2u, 3u}) {
    EXPECT_EQ(wrapped.keys.at(v), full.keys.at(v));
  }
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  // And on: 1 is replaced next.
  ASSERT_EQ(Registrarctl("keygen --add-to " + path).exit_code, 0);
  ring = KeyRing::LoadFile(path);
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_EQ(ring->signing_version(), 1u);
  EXPECT_EQ(ParseKeyLines(ReadFile(path)).order,
            (std::vector<uint32_t>{2, 3, 0, 1}));
}

TEST_F(RegistrarctlCliTest, HashTokenFromStdinAndOption) {
  const std::string expected = HashToken("tok-123") + "\n";
  CommandResult piped = Registrarctl("hash-token", "printf 'tok-123\\n' |");
  ASSERT_EQ(piped.exit_code, 0) << piped.output;
  EXPECT_EQ(piped.output, expected);
  CommandResult option = Registrarctl("hash-token --token tok-123");
  ASSERT_EQ(option.exit_code, 0) << option.output;
  EXPECT_EQ(option.output, expected);
  EXPECT_EQ(Registrarctl("hash-token < /dev/null").exit_code, 2);
}

TEST_F(RegistrarctlCliTest, SendsTokenFromEnvironmentOrOption) {
  client_test::FakeServer server;
  ASSERT_TRUE(server.started());
  const std::string issue = absl::StrCat(
      "--target ", server.target(), " issue --kind thread --tenant a --user b");

  CommandResult from_env = Registrarctl(issue, "REGISTRAR_TOKEN=env-token");
  ASSERT_EQ(from_env.exit_code, 0) << from_env.output;
  CommandResult from_option =
      Registrarctl("--token opt-token " + issue, "REGISTRAR_TOKEN=env-token");
  ASSERT_EQ(from_option.exit_code, 0) << from_option.output;
  CommandResult none = Registrarctl(issue, "env -u REGISTRAR_TOKEN");
  ASSERT_EQ(none.exit_code, 0) << none.output;

  std::vector<client_test::ObservedCall> calls = server.service().issue_calls();
  ASSERT_EQ(calls.size(), 3u);
  EXPECT_THAT(calls[0].authorization,
              Optional(std::string("Bearer env-token")));
  EXPECT_THAT(calls[1].authorization,
              Optional(std::string("Bearer opt-token")));
  EXPECT_EQ(calls[2].authorization, std::nullopt);
}

TEST_F(RegistrarctlCliTest, UnreadableTlsFileIsAUsageError) {
  CommandResult r = Registrarctl(
      "--tls_ca /nonexistent/ca.pem issue --kind thread --tenant a --user b");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--tls_ca"));
  EXPECT_THAT(r.output, HasSubstr("/nonexistent/ca.pem"));
}

}  // namespace
}  // namespace registrar
