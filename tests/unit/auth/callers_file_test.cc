#include "service/auth/callers_file.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace registrar {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// SHA-256("gateway-token"), computed independently
// (`printf %s gateway-token | sha256sum`).
constexpr std::string_view kGatewayToken = "gateway-token";
constexpr std::string_view kGatewayHash =
    "f15ae5b5899f8327f52779c081b7b25d5217f62042ae4b6d677b0f25096e2141";

// A valid file with one caller of each role; tests break one thing in it.
std::string ValidFile() {
  return absl::StrCat(R"({
    "callers": [
      {"name": "gateway-eu", "role": "ROLE_GATEWAY",
       "tenants": ["acme", "globex"],
       "token_sha256": [")",
                      HashToken(kGatewayToken), R"("]},
      {"name": "dashboard", "role": "ROLE_READER", "tenants": ["*"],
       "cert_identities": ["spiffe://prod/ns/web/sa/dashboard"]},
      {"name": "ops", "role": "ROLE_ADMIN",
       "tokenSha256": [")",
                      HashToken("ops-token"), R"("],
       "certIdentities": ["ops.internal.example"]}
    ]
  })");
}

// One caller with the given extra JSON fields.
std::string OneCaller(const std::string& fields) {
  return absl::StrCat(R"({"callers": [{"name": "c", )", fields, "}]}");
}

std::string Tok(std::string_view token) {
  return absl::StrCat(R"("token_sha256": [")", HashToken(token), R"("])");
}

MATCHER_P(IsInvalid, substring, "") {
  const absl::Status& status = arg.status();
  if (status.code() != absl::StatusCode::kInvalidArgument) {
    *result_listener << "status is " << status;
    return false;
  }
  if (std::string(status.message()).find(substring) == std::string::npos) {
    *result_listener << "message is: " << status.message();
    return false;
  }
  return true;
}

TEST(HashTokenTest, IsLowercaseHexSha256) {
  // FIPS 180-2 test vector.
  EXPECT_EQ(HashToken("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HashToken(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(HashToken(kGatewayToken), kGatewayHash);
}

TEST(CallersFileTest, ParsesEveryRole) {
  absl::StatusOr<CallerTable> table = ParseCallersFile(ValidFile());
  ASSERT_TRUE(table.ok()) << table.status();
  ASSERT_EQ(table->size(), 3u);

  const Caller& gateway = table->callers()[0];
  EXPECT_EQ(gateway.name(), "gateway-eu");
  EXPECT_EQ(gateway.role(), CallerRole::kGateway);
  EXPECT_FALSE(gateway.all_tenants());
  EXPECT_THAT(gateway.tenants(), ElementsAre("acme", "globex"));
  EXPECT_TRUE(gateway.AllowsTenant("acme"));
  EXPECT_TRUE(gateway.AllowsTenant("globex"));
  EXPECT_FALSE(gateway.AllowsTenant("initech"));
  EXPECT_FALSE(gateway.AllowsTenant("ACME"));
  EXPECT_FALSE(gateway.AllowsTenant(""));
  EXPECT_FALSE(gateway.AllowsTenant("*"));

  const Caller& reader = table->callers()[1];
  EXPECT_EQ(reader.role(), CallerRole::kReader);
  EXPECT_TRUE(reader.all_tenants());
  EXPECT_THAT(reader.tenants(), IsEmpty());
  EXPECT_TRUE(reader.AllowsTenant("anything"));

  const Caller& admin = table->callers()[2];
  EXPECT_EQ(admin.role(), CallerRole::kAdmin);
  EXPECT_TRUE(admin.all_tenants());
  EXPECT_TRUE(admin.AllowsTenant("acme"));

  EXPECT_EQ(CallerRoleName(gateway.role()), "gateway");
  EXPECT_EQ(CallerRoleName(reader.role()), "reader");
  EXPECT_EQ(CallerRoleName(admin.role()), "admin");
}

TEST(CallersFileTest, FindsCallersByTokenAndIdentity) {
  absl::StatusOr<CallerTable> table = ParseCallersFile(ValidFile());
  ASSERT_TRUE(table.ok()) << table.status();
  const Caller* gateway = table->FindByToken(kGatewayToken);
  ASSERT_NE(gateway, nullptr);
  EXPECT_EQ(gateway->name(), "gateway-eu");
  ASSERT_NE(table->FindByToken("ops-token"), nullptr);
  EXPECT_EQ(table->FindByToken("ops-token")->name(), "ops");

  // Near misses, the hash itself, and no token at all find nobody.
  EXPECT_EQ(table->FindByToken("gateway-token "), nullptr);
  EXPECT_EQ(table->FindByToken("Gateway-token"), nullptr);
  EXPECT_EQ(table->FindByToken(HashToken(kGatewayToken)), nullptr);
  EXPECT_EQ(table->FindByToken(""), nullptr);
  EXPECT_EQ(table->FindByToken(std::string("gateway-token\0", 14)), nullptr);

  const Caller* dashboard =
      table->FindByCertIdentity("spiffe://prod/ns/web/sa/dashboard");
  ASSERT_NE(dashboard, nullptr);
  EXPECT_EQ(dashboard->name(), "dashboard");
  ASSERT_NE(table->FindByCertIdentity("ops.internal.example"), nullptr);
  EXPECT_EQ(table->FindByCertIdentity("spiffe://prod/ns/web/sa/dashboar"),
            nullptr);
  EXPECT_EQ(table->FindByCertIdentity(""), nullptr);
  // Tokens and identities are separate namespaces.
  EXPECT_EQ(table->FindByToken("ops.internal.example"), nullptr);
  EXPECT_EQ(table->FindByCertIdentity(std::string(kGatewayToken)), nullptr);
}

TEST(CallersFileTest, EmptyTableFindsNobody) {
  CallerTable table;
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.FindByToken("x"), nullptr);
  EXPECT_EQ(table.FindByCertIdentity("x"), nullptr);
}

TEST(CallersFileTest, PointersSurviveMovingTheTable) {
  absl::StatusOr<CallerTable> parsed = ParseCallersFile(ValidFile());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const Caller* before = parsed->FindByToken(kGatewayToken);
  CallerTable moved = *std::move(parsed);
  EXPECT_EQ(moved.FindByToken(kGatewayToken), before);
}

TEST(CallersFileTest, RejectsWhatIsNotACallersFile) {
  EXPECT_THAT(ParseCallersFile(""), IsInvalid("not valid JSON"));
  EXPECT_THAT(ParseCallersFile("{"), IsInvalid("not valid JSON"));
  EXPECT_THAT(ParseCallersFile("[]"), IsInvalid("must be a JSON object"));
  EXPECT_THAT(ParseCallersFile("{}"), IsInvalid("callers: is empty"));
  EXPECT_THAT(ParseCallersFile(R"({"callers": []})"),
              IsInvalid("callers: is empty"));
  EXPECT_THAT(ParseCallersFile(R"({"caller": []})"),
              IsInvalid("unknown field \"caller\""));
  EXPECT_THAT(ParseCallersFile(R"({"callers": "x"})"),
              IsInvalid("callers: must be an array"));
  // Protobuf's parser takes a lone object for a one-entry array.
  EXPECT_THAT(ParseCallersFile(R"({"callers": {}})"),
              IsInvalid("callers[0].name: is empty"));
  EXPECT_THAT(ParseCallersFile(R"({"callers": [1]})"),
              IsInvalid("callers[0]: must be an object"));
}

TEST(CallersFileTest, NamesTheEntryOfAFieldThatDoesNotParse) {
  // A misspelt field is an error, not ignored.
  EXPECT_THAT(
      ParseCallersFile(absl::StrCat(
          R"({"callers": [{"name": "a", "role": "ROLE_ADMIN", )", Tok("a"),
          R"(}, {"name": "b", "role": "ROLE_ADMIN", "tenant": ["x"]}]})")),
      IsInvalid("callers[1] (\"b\"): "));
  EXPECT_THAT(ParseCallersFile(OneCaller(R"("role": "ROLE_READER",
                                             "tenants": "acme")")),
              IsInvalid("callers[0] (\"c\"): "));
}

TEST(CallersFileTest, RoleIsRequiredAndKnown) {
  EXPECT_THAT(ParseCallersFile(OneCaller(
                  absl::StrCat(R"("tenants": ["acme"], )", Tok("t")))),
              IsInvalid("callers[0] (\"c\").role: is required"));
  EXPECT_THAT(
      ParseCallersFile(OneCaller(absl::StrCat(
          R"("role": "ROLE_UNSPECIFIED", "tenants": ["acme"], )", Tok("t")))),
      IsInvalid("callers[0] (\"c\").role: is required"));
  EXPECT_THAT(
      ParseCallersFile(OneCaller(absl::StrCat(
          R"("role": "ROLE_SUPERUSER", "tenants": ["acme"], )", Tok("t")))),
      IsInvalid("callers[0] (\"c\").role: unknown role \"ROLE_SUPERUSER\""));
  EXPECT_THAT(ParseCallersFile(OneCaller(absl::StrCat(
                  R"("role": "gateway", "tenants": ["acme"], )", Tok("t")))),
              IsInvalid("callers[0] (\"c\").role: unknown role \"gateway\""));
  // Enum numbers are accepted by the JSON parser; unknown ones are not by us.
  EXPECT_THAT(ParseCallersFile(OneCaller(absl::StrCat(
                  R"("role": 7, "tenants": ["acme"], )", Tok("t")))),
              IsInvalid("callers[0] (\"c\").role: unknown role 7"));
  EXPECT_TRUE(
      ParseCallersFile(OneCaller(absl::StrCat(
                           R"("role": 2, "tenants": ["acme"], )", Tok("t"))))
          .ok());
}

TEST(CallersFileTest, NamesAreRequiredUniqueAndPrintable) {
  EXPECT_THAT(ParseCallersFile(absl::StrCat(
                  R"({"callers": [{"role": "ROLE_ADMIN", )", Tok("t"), "}]}")),
              IsInvalid("callers[0].name: is empty"));
  EXPECT_THAT(
      ParseCallersFile(absl::StrCat(
          R"({"callers": [{"name": "x", "role": "ROLE_ADMIN", )", Tok("a"),
          R"(}, {"name": "x", "role": "ROLE_ADMIN", )", Tok("b"), "}]}")),
      IsInvalid("callers[1] (\"x\").name: is already the name of callers[0]"));
  EXPECT_THAT(
      ParseCallersFile(absl::StrCat(
          R"({"callers": [{"name": "bad\nname", "role": "ROLE_ADMIN", )",
          Tok("a"), "}]}")),
      IsInvalid("callers[0].name: \"bad\\nname\" is not printable"));
  EXPECT_THAT(ParseCallersFile(absl::StrCat(
                  R"({"callers": [{"name": ")", std::string(257, 'n'),
                  R"(", "role": "ROLE_ADMIN", )", Tok("a"), "}]}")),
              IsInvalid("callers[0].name: is 257 bytes, limit is 256"));
}

TEST(CallersFileTest, TenantRules) {
  auto with_tenants = [](const std::string& role, const std::string& tenants) {
    return ParseCallersFile(OneCaller(absl::StrCat(
        R"("role": ")", role, R"(", "tenants": )", tenants, ", ", Tok("t"))));
  };
  EXPECT_TRUE(with_tenants("ROLE_GATEWAY", R"(["acme"])").ok());
  EXPECT_TRUE(with_tenants("ROLE_GATEWAY", R"(["*"])").ok());
  EXPECT_TRUE(with_tenants("ROLE_ADMIN", R"([])").ok());
  EXPECT_TRUE(with_tenants("ROLE_ADMIN", R"(["*"])").ok());
  EXPECT_TRUE(with_tenants("ROLE_READER", R"(["Ünïcode tenant"])").ok());

  EXPECT_THAT(with_tenants("ROLE_GATEWAY", "[]"),
              IsInvalid("callers[0] (\"c\").tenants: is empty"));
  EXPECT_THAT(with_tenants("ROLE_READER", "[]"),
              IsInvalid("callers[0] (\"c\").tenants: is empty"));
  EXPECT_THAT(with_tenants("ROLE_GATEWAY", R"(["*", "acme"])"),
              IsInvalid("tenants: \"*\" (every tenant) must be the only"));
  EXPECT_THAT(with_tenants("ROLE_GATEWAY", R"(["*", "*"])"),
              IsInvalid("tenants: \"*\" is listed twice"));
  EXPECT_THAT(with_tenants("ROLE_ADMIN", R"(["acme"])"),
              IsInvalid("tenants: an admin acts for every tenant"));
  EXPECT_THAT(with_tenants("ROLE_GATEWAY", R"(["acme", "beta", "acme"])"),
              IsInvalid("tenants: \"acme\" is listed twice"));
  EXPECT_THAT(with_tenants("ROLE_GATEWAY", R"(["acme", ""])"),
              IsInvalid("callers[0] (\"c\").tenants[1]: is empty"));
  EXPECT_THAT(with_tenants("ROLE_GATEWAY", R"(["tab\there"])"),
              IsInvalid("tenants[0]: \"tab\\there\" is not printable"));
  EXPECT_THAT(with_tenants("ROLE_GATEWAY", R"(["\u0085"])"),
              IsInvalid("tenants[0]: "));
  EXPECT_THAT(
      with_tenants("ROLE_GATEWAY",
                   absl::StrCat(R"([")", std::string(257, 't'), R"("])")),
      IsInvalid("tenants[0]: is 257 bytes, limit is 256"));
  EXPECT_TRUE(
      with_tenants("ROLE_GATEWAY",
                   absl::StrCat(R"([")", std::string(256, 't'), R"("])"))
          .ok());
}

TEST(CallersFileTest, TokenHashesAreSha256HexAndNeverEchoed) {
  auto with_hash = [](const std::string& hash) {
    return ParseCallersFile(OneCaller(absl::StrCat(
        R"("role": "ROLE_ADMIN", "token_sha256": [")", hash, R"("])")));
  };
  EXPECT_TRUE(with_hash(std::string(kGatewayHash)).ok());
  const std::string raw_token = "s3cr3t-token-pasted-by-mistake";
  absl::StatusOr<CallerTable> wrong = with_hash(raw_token);
  EXPECT_THAT(wrong, IsInvalid("callers[0] (\"c\").token_sha256[0]: must be "
                               "64 lowercase hex digits"));
  EXPECT_THAT(std::string(wrong.status().message()), Not(HasSubstr(raw_token)));
  EXPECT_THAT(with_hash(std::string(63, 'a')), IsInvalid("got 63 characters"));
  EXPECT_THAT(with_hash(std::string(65, 'a')), IsInvalid("got 65 characters"));
  EXPECT_THAT(with_hash(""), IsInvalid("got 0 characters"));
  std::string upper(kGatewayHash);
  upper[5] = 'A';
  EXPECT_THAT(with_hash(upper),
              IsInvalid("character 6 is not a lowercase hex digit (write the "
                        "hash in lowercase)"));
  std::string bad(kGatewayHash);
  bad[63] = 'g';
  EXPECT_THAT(with_hash(bad), IsInvalid("character 64 is not a lowercase"));
}

TEST(CallersFileTest, CredentialsAreRequiredAndUnique) {
  EXPECT_THAT(ParseCallersFile(OneCaller(R"("role": "ROLE_ADMIN")")),
              IsInvalid("callers[0] (\"c\"): has no credential"));
  // The same token hash for two callers, or twice for one.
  EXPECT_THAT(
      ParseCallersFile(absl::StrCat(
          R"({"callers": [{"name": "a", "role": "ROLE_ADMIN", )", Tok("t"),
          R"(}, {"name": "b", "role": "ROLE_ADMIN", )", Tok("t"), "}]}")),
      IsInvalid("callers[1] (\"b\").token_sha256[0]: the same hash is already "
                "listed for callers[0] (\"a\")"));
  EXPECT_THAT(ParseCallersFile(OneCaller(absl::StrCat(
                  R"("role": "ROLE_ADMIN", "token_sha256": [")", HashToken("t"),
                  R"(", ")", HashToken("t"), R"("])"))),
              IsInvalid("token_sha256[1]: the same hash is already listed "
                        "earlier in this caller"));
  // The same identity for two callers.
  EXPECT_THAT(
      ParseCallersFile(
          R"({"callers": [
            {"name": "a", "role": "ROLE_ADMIN", "cert_identities": ["x.example"]},
            {"name": "b", "role": "ROLE_ADMIN", "cert_identities": ["x.example"]}
          ]})"),
      IsInvalid("callers[1] (\"b\").cert_identities[0]: \"x.example\" is "
                "already listed for callers[0] (\"a\")"));
}

TEST(CallersFileTest, CertIdentitiesArePrintableAscii) {
  auto with_identity = [](const std::string& identity) {
    return ParseCallersFile(OneCaller(absl::StrCat(
        R"("role": "ROLE_ADMIN", "cert_identities": [")", identity, R"("])")));
  };
  EXPECT_TRUE(with_identity("spiffe://cluster.local/ns/a/sa/b").ok());
  EXPECT_TRUE(with_identity("gw-0.gateways.svc.cluster.local").ok());
  EXPECT_THAT(with_identity(""), IsInvalid("cert_identities[0]: is empty"));
  EXPECT_THAT(with_identity("has space"),
              IsInvalid("cert_identities[0]: \"has space\" is not a SAN URI"));
  EXPECT_THAT(with_identity("\\u00e9.example"),
              IsInvalid("is not a SAN URI or DNS name"));
  EXPECT_THAT(with_identity(std::string(1025, 'x')),
              IsInvalid("is 1025 bytes, limit is 1024"));
}

TEST(CallersFileTest, Limits) {
  CallersFileLimits limits;
  limits.max_callers = 2;
  const std::string three = ValidFile();
  EXPECT_THAT(ParseCallersFile(three, limits),
              IsInvalid("callers: has 3 entries, limit is 2"));
  limits = CallersFileLimits{};
  limits.max_file_bytes = three.size() - 1;
  EXPECT_THAT(ParseCallersFile(three, limits),
              IsInvalid(absl::StrCat("is ", three.size(), " bytes, limit is ",
                                     three.size() - 1)));
  // The default file size limit is 1 MiB.
  std::string big = ValidFile();
  big.append(size_t{1} << 20, ' ');
  EXPECT_THAT(ParseCallersFile(big), IsInvalid("limit is 1048576"));
}

// Protobuf's JSON parser is super-linear in the nesting depth: this input
// took over ten minutes before the depth check.
TEST(CallersFileTest, DeepNestingIsRefusedQuickly) {
  std::string deep = R"({"callers": [{"name": )";
  deep.append(500'000, '[');
  deep.append(500'000, ']');
  deep += "}]}";
  EXPECT_THAT(ParseCallersFile(deep),
              IsInvalid("callers file: nested deeper than 8 levels (at byte "
                        "28)"));
  // Brackets in strings are text, however many.
  EXPECT_TRUE(ParseCallersFile(
                  OneCaller(absl::StrCat(
                      R"("role": "ROLE_ADMIN", "tenants": ["*"], )",
                      R"("cert_identities": ["[[[[[[[[[[[[\"{{{{{{{{{{"], )",
                      Tok("t"))))
                  .ok());
}

class CallersFileLoadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    path_ = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/callers_test_",
                         getpid(), ".json");
  }
  void TearDown() override { std::remove(path_.c_str()); }
  void Write(const std::string& text) {
    std::ofstream(path_, std::ios::binary | std::ios::trunc) << text;
  }
  std::string path_;
};

TEST_F(CallersFileLoadTest, LoadsAFile) {
  Write(ValidFile());
  absl::StatusOr<CallerTable> table = LoadCallersFile(path_);
  ASSERT_TRUE(table.ok()) << table.status();
  EXPECT_EQ(table->size(), 3u);
}

TEST_F(CallersFileLoadTest, ErrorsNameThePath) {
  Write(R"({"callers": [{"name": "x", "role": "ROLE_ADMIN"}]})");
  absl::StatusOr<CallerTable> table = LoadCallersFile(path_);
  EXPECT_THAT(table, IsInvalid(absl::StrCat("callers file ", path_,
                                            ": callers[0] (\"x\"): has no")));

  absl::StatusOr<CallerTable> missing = LoadCallersFile(path_ + ".missing");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr(path_ + ".missing"));
}

TEST_F(CallersFileLoadTest, RefusesAnOversizedFile) {
  CallersFileLimits limits;
  limits.max_file_bytes = 100;
  Write(std::string(101, ' '));
  EXPECT_THAT(LoadCallersFile(path_, limits),
              IsInvalid("is larger than 100 bytes"));
  Write(std::string(100, ' '));
  EXPECT_THAT(LoadCallersFile(path_, limits), IsInvalid("not valid JSON"));
}

}  // namespace
}  // namespace registrar
