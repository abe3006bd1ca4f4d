#include "service/id/id.h"

#include <cctype>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/model/kind.h"

namespace registrar {
namespace {

using ::testing::HasSubstr;

// Debian's abseil has its own string_view, which gtest prints as a char
// array; a std::string prints readably.
std::string Message(const absl::Status& status) {
  return std::string(status.message());
}

constexpr Kind kAllKinds[] = {Kind::kThread, Kind::kRun, Kind::kRequest,
                              Kind::kConnection, Kind::kLease};

Id128 SampleId(uint32_t seq = 42) {
  IdFields f;
  f.unix_ms = 1'750'000'000'123;
  f.seq = seq;
  f.node = 0x1234;
  f.key_version = 2;
  f.tag = 0x2ABCDEF01234;
  return PackId(f);
}

TEST(IdFieldsTest, PackUnpackRoundTrip) {
  IdFields f;
  f.unix_ms = kMaxUnixMs;
  f.seq = kMaxSeq;
  f.node = kMaxNodeId;
  f.key_version = kMaxKeyVersion;
  f.tag = kTagMask;
  const Id128 id = PackId(f);
  EXPECT_TRUE(HasV7Layout(id));
  const IdFields g = UnpackId(id);
  EXPECT_EQ(g.unix_ms, f.unix_ms);
  EXPECT_EQ(g.seq, f.seq);
  EXPECT_EQ(g.node, f.node);
  EXPECT_EQ(g.key_version, f.key_version);
  EXPECT_EQ(g.tag, f.tag);

  const IdFields s = UnpackId(SampleId());
  EXPECT_EQ(s.unix_ms, 1'750'000'000'123);
  EXPECT_EQ(s.seq, 42u);
  EXPECT_EQ(s.node, 0x1234u);
  EXPECT_EQ(s.key_version, 2u);
  EXPECT_EQ(s.tag, 0x2ABCDEF01234u);
}

TEST(IdFieldsTest, PackMasksOversizedFields) {
  IdFields f;
  f.seq = kMaxSeq + 2;      // -> 1
  f.node = kMaxNodeId + 3;  // -> 2
  f.key_version = 7;        // -> 3
  f.tag = ~uint64_t{0};     // -> kTagMask
  const Id128 id = PackId(f);
  EXPECT_TRUE(HasV7Layout(id));
  const IdFields g = UnpackId(id);
  EXPECT_EQ(g.seq, 1u);
  EXPECT_EQ(g.node, 2u);
  EXPECT_EQ(g.key_version, 3u);
  EXPECT_EQ(g.tag, kTagMask);
}

TEST(IdFieldsTest, LayoutBits) {
  const Id128 id = PackId(IdFields{});
  EXPECT_EQ(id.hi, uint64_t{0x7000});
  EXPECT_EQ(id.lo, uint64_t{0x8000000000000000});
  EXPECT_TRUE(HasV7Layout(id));
  EXPECT_FALSE(HasV7Layout(Id128{}));
  EXPECT_FALSE(HasV7Layout(Id128{id.hi ^ 0x1000, id.lo}));
  EXPECT_FALSE(HasV7Layout(Id128{id.hi, id.lo ^ (uint64_t{1} << 62)}));
}

TEST(KindPrefixTest, RoundTripsEveryKind) {
  EXPECT_EQ(KindPrefix(Kind::kThread), "thread");
  EXPECT_EQ(KindPrefix(Kind::kRun), "run");
  EXPECT_EQ(KindPrefix(Kind::kRequest), "req");
  EXPECT_EQ(KindPrefix(Kind::kConnection), "conn");
  EXPECT_EQ(KindPrefix(Kind::kLease), "lease");
  EXPECT_EQ(KindPrefix(Kind::kUnspecified), "");
  for (Kind kind : kAllKinds) {
    EXPECT_EQ(KindFromPrefix(KindPrefix(kind)), kind);
  }
  EXPECT_EQ(KindFromPrefix(""), Kind::kUnspecified);
  EXPECT_EQ(KindFromPrefix("user"), Kind::kUnspecified);
  EXPECT_EQ(KindFromPrefix("Thread"), Kind::kUnspecified);
  EXPECT_EQ(KindFromPrefix("request"), Kind::kUnspecified);
}

// Vectors from the TypeID spec (jetify-com/typeid spec/valid.yml).
struct TypeIdVector {
  std::string_view suffix;
  std::string_view uuid;
};
constexpr TypeIdVector kTypeIdVectors[] = {
    {"00000000000000000000000000", "00000000-0000-0000-0000-000000000000"},
    {"00000000000000000000000001", "00000000-0000-0000-0000-000000000001"},
    {"0000000000000000000000000a", "00000000-0000-0000-0000-00000000000a"},
    {"0000000000000000000000000g", "00000000-0000-0000-0000-000000000010"},
    {"00000000000000000000000010", "00000000-0000-0000-0000-000000000020"},
    {"7zzzzzzzzzzzzzzzzzzzzzzzzz", "ffffffff-ffff-ffff-ffff-ffffffffffff"},
    {"0123456789abcdefghjkmnpqrs", "0110c853-1d09-52d8-d73e-1194e95b5f19"},
    {"01h455vb4pex5vsknk084sn02q", "01890a5d-ac96-774b-bcce-b302099a8057"},
};

TEST(SuffixTest, TypeIdSpecVectors) {
  for (const TypeIdVector& v : kTypeIdVectors) {
    SCOPED_TRACE(v.suffix);
    absl::StatusOr<Id128> id = DecodeSuffix(v.suffix);
    ASSERT_TRUE(id.ok()) << id.status();
    EXPECT_EQ(FormatUuid(*id), v.uuid);
    EXPECT_EQ(EncodeSuffix(*id), v.suffix);
  }
}

TEST(SuffixTest, SpecExampleIsAValidThreadId) {
  absl::StatusOr<ParsedId> parsed =
      ParseId("thread_01h455vb4pex5vsknk084sn02q");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->kind, Kind::kThread);
  EXPECT_EQ(parsed->bits, (Id128{0x01890a5dac96774b, 0xbcceb302099a8057}));
  EXPECT_EQ(UnpackId(parsed->bits).unix_ms, 0x01890a5dac96);
}

TEST(SuffixTest, EncodingIsLowercaseAlphabetOnly) {
  for (uint32_t seq : {0u, 1u, 4095u}) {
    const std::string s = EncodeSuffix(SampleId(seq));
    ASSERT_EQ(s.size(), 26u);
    EXPECT_LE(s[0], '7');
    for (char c : s) {
      EXPECT_NE(std::string_view("0123456789abcdefghjkmnpqrstvwxyz").find(c),
                std::string_view::npos)
          << c;
    }
  }
}

TEST(SuffixTest, RejectsEachMalformedForm) {
  struct Case {
    std::string suffix;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"", "must be 26 characters, got 0"},
      {"abc", "must be 26 characters, got 3"},
      {"01h455vb4pex5vsknk084sn02", "must be 26 characters, got 25"},
      {"01h455vb4pex5vsknk084sn02qq", "must be 26 characters, got 27"},
      {"01H455VB4PEX5VSKNK084SN02Q", "character 3 \"H\""},
      {"01h455vb4pex5vsknk084sn02Q", "character 26 \"Q\""},
      {"01h455vb4pex5vsknk084sn0iq", "\"i\""},
      {"01h455vb4pex5vsknk084sn0lq", "\"l\""},
      {"01h455vb4pex5vsknk084sn0oq", "\"o\""},
      {"01h455vb4pex5vsknk084sn0uq", "\"u\""},
      {"01h455vb4pex5vsknk084sn0-q", "\"-\""},
      {std::string("01h455vb4pex5vsknk084sn0\0q", 26), "\"\\000\""},
      {"01h455vb4pex5vsknk084sn0\xffq", "\"\\377\""},
      {"8zzzzzzzzzzzzzzzzzzzzzzzzz", "must start with 0-7, got \"8\""},
      {"zzzzzzzzzzzzzzzzzzzzzzzzzz", "must start with 0-7, got \"z\""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.suffix);
    absl::StatusOr<Id128> id = DecodeSuffix(c.suffix);
    ASSERT_FALSE(id.ok());
    EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(Message(id.status()), HasSubstr(c.message));
  }
}

TEST(IdTextTest, FormatParseRoundTripForEveryKind) {
  for (Kind kind : kAllKinds) {
    for (uint32_t seq : {0u, 1u, 2048u, 4095u}) {
      const Id128 id = SampleId(seq);
      const std::string text = FormatId(kind, id);
      SCOPED_TRACE(text);
      EXPECT_EQ(text.substr(0, KindPrefix(kind).size() + 1),
                std::string(KindPrefix(kind)) + "_");
      EXPECT_LE(text.size(), kMaxIdTextLength);
      absl::StatusOr<ParsedId> parsed = ParseId(text);
      ASSERT_TRUE(parsed.ok()) << parsed.status();
      EXPECT_EQ(parsed->kind, kind);
      EXPECT_EQ(parsed->bits, id);
    }
  }
  // The longest prefix must still fit under the early length cut.
  EXPECT_EQ(FormatId(Kind::kThread, SampleId()).size(), kMaxIdTextLength);
}

TEST(IdTextTest, AppendIdAppends) {
  std::string out = "ids: ";
  AppendId(Kind::kRun, SampleId(1), &out);
  out += ',';
  AppendId(Kind::kConnection, SampleId(2), &out);
  EXPECT_EQ(out, "ids: " + FormatId(Kind::kRun, SampleId(1)) + "," +
                     FormatId(Kind::kConnection, SampleId(2)));
}

TEST(IdTextTest, TextOrderFollowsBitOrder) {
  std::vector<Id128> ids;
  for (int64_t ms : {int64_t{0}, int64_t{1}, int64_t{1'750'000'000'000},
                     int64_t{1'750'000'000'001}, kMaxUnixMs}) {
    for (uint32_t seq : {0u, 31u, 32u, 4095u}) {
      IdFields f;
      f.unix_ms = ms;
      f.seq = seq;
      ids.push_back(PackId(f));
    }
  }
  for (size_t i = 1; i < ids.size(); ++i) {
    ASSERT_LT(ids[i - 1], ids[i]);
    EXPECT_LT(FormatId(Kind::kRequest, ids[i - 1]),
              FormatId(Kind::kRequest, ids[i]));
  }
}

TEST(ParseIdTest, RejectsMalformedText) {
  const std::string valid = FormatId(Kind::kThread, SampleId());
  std::string upper = valid;
  for (char& c : upper) c = static_cast<char>(std::toupper(c));

  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"", "id: empty"},
      {"user_a_ws_1_xyz", "id: unknown prefix \"user\""},
      {"user_b_thread_2_abc", "id: unknown prefix \"user\""},
      {"thread_", "id: suffix must be 26 characters, got 0"},
      {"thread_abc", "id: suffix must be 26 characters, got 3"},
      {"ws_conn_test_use_1757601055956_1_ceecb3c0", "id: too long (41 bytes"},
      {std::string(10 * 1024, 'a'), "id: too long (10240 bytes, at most 33)"},
      {"01h455vb4pex5vsknk084sn02q", "no '_'"},
      {"_01h455vb4pex5vsknk084sn02q", "id: unknown prefix \"\""},
      {"thr_01h455vb4pex5vsknk084sn02q", "unknown prefix \"thr\""},
      {"reqs_01h455vb4pex5vsknk084sn02q", "unknown prefix \"reqs\""},
      {"request_01h455vb4pex5vsknk084sn02q", "too long (34 bytes"},
      {upper, "unknown prefix \"THREAD\""},
      {"thread_" + upper.substr(7), "is not lowercase Crockford base32"},
      {"thread-01h455vb4pex5vsknk084sn02q", "no '_'"},
      {"thread_01h455vb4pex5vsknk084sn02q ", "too long (34 bytes"},
      {"run_01h455vb4pex5vsknk084sn02q ", "got 27"},
      {"run_01h455vb4pex5vsknk084sn02", "got 25"},
      {"thread_81h455vb4pex5vsknk084sn02q", "must start with 0-7"},
      {"thread_01h455vb4pex5vsknk084sn0iq", "\"i\""},
      {"thread_01h455vb4pex5vsknk084sn0lq", "\"l\""},
      {"thread_01h455vb4pex5vsknk084sn0oq", "\"o\""},
      {"thread_01h455vb4pex5vsknk084sn0uq", "\"u\""},
      {"thread_01h455vb4pex5vsknk084sn0_q", "\"_\""},
      {std::string("thr\0ad_01h455vb4pex5vsknk084sn02q", 33),
       "unknown prefix \"thr\\000ad\""},
      {"\xc3\x28\xa0\xa1_\xe2\x28\xa1", "unknown prefix \"\\303(\\240\\241\""},
      {"thread_01h455vb4pex5vsknk084sn0\xf0q", "\"\\360\""},
      // Not UUIDv7: the nil UUID, the max UUID, a UUIDv4.
      {"thread_00000000000000000000000000", "version must be 7, got 0"},
      {"thread_7zzzzzzzzzzzzzzzzzzzzzzzzz", "version must be 7, got 15"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::CEscape(c.text.substr(0, 64)));
    absl::StatusOr<ParsedId> parsed = ParseId(c.text);
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(Message(parsed.status()), HasSubstr(c.message));
  }
}

TEST(ParseIdTest, RejectsWrongVersionAndVariantBits) {
  const Id128 good = SampleId();
  ASSERT_TRUE(ParseId(FormatId(Kind::kRun, good)).ok());
  for (uint64_t version = 0; version < 16; ++version) {
    if (version == 7) continue;
    Id128 bad = good;
    bad.hi = (bad.hi & ~uint64_t{0xF000}) | (version << 12);
    absl::StatusOr<ParsedId> parsed = ParseId(FormatId(Kind::kRun, bad));
    ASSERT_FALSE(parsed.ok()) << version;
    EXPECT_THAT(Message(parsed.status()),
                HasSubstr("version must be 7, got " + std::to_string(version)));
  }
  for (uint64_t variant : {0b00, 0b01, 0b11}) {
    Id128 bad = good;
    bad.lo = (bad.lo & ~(uint64_t{3} << 62)) | (variant << 62);
    absl::StatusOr<ParsedId> parsed = ParseId(FormatId(Kind::kRun, bad));
    ASSERT_FALSE(parsed.ok()) << variant;
    EXPECT_THAT(Message(parsed.status()), HasSubstr("variant bits must be 10"));
  }
}

TEST(ParseIdTest, NeverCrashesOnArbitraryBytes) {
  // Every single-byte substitution at every position of a valid ID, plus
  // truncations: each must parse or fail cleanly, and only the original may
  // parse to the original bits.
  const std::string valid = FormatId(Kind::kConnection, SampleId());
  int accepted = 0;
  for (size_t pos = 0; pos < valid.size(); ++pos) {
    for (int b = 0; b < 256; ++b) {
      std::string text = valid;
      text[pos] = static_cast<char>(b);
      absl::StatusOr<ParsedId> parsed = ParseId(text);
      if (parsed.ok()) {
        ++accepted;
        EXPECT_EQ(FormatId(parsed->kind, parsed->bits), text);
      }
    }
  }
  // Only the 32 alphabet characters in each position that keep the layout
  // can be accepted; certainly far fewer than all substitutions.
  EXPECT_GT(accepted, 0);
  EXPECT_LT(accepted, static_cast<int>(valid.size()) * 32);
  for (size_t len = 0; len < valid.size(); ++len) {
    EXPECT_FALSE(ParseId(valid.substr(0, len)).ok()) << len;
  }
}

TEST(ParseIdTest, RandomBytesParseOrFailCleanly) {
  std::mt19937 rng(20240611);
  const std::string alphabet = "0123456789abcdefghjkmnpqrstvwxyz_";
  for (int i = 0; i < 200'000; ++i) {
    std::string text = i % 2 ? "run_" : "";
    const size_t len = rng() % 40;
    for (size_t j = 0; j < len; ++j) {
      // Half the inputs draw from the ID alphabet so some get past the
      // prefix and length checks; the rest are arbitrary bytes.
      text += i % 4 < 2 ? alphabet[rng() % alphabet.size()]
                        : static_cast<char>(rng() & 0xFF);
    }
    absl::StatusOr<ParsedId> parsed = ParseId(text);
    if (parsed.ok()) {
      ASSERT_EQ(FormatId(parsed->kind, parsed->bits), text);
      ASSERT_TRUE(HasV7Layout(parsed->bits));
    } else {
      ASSERT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
      ASSERT_FALSE(parsed.status().message().empty());
    }
  }
}

TEST(FormatUuidTest, Canonical) {
  EXPECT_EQ(FormatUuid(Id128{0x0123456789abcdef, 0xfedcba9876543210}),
            "01234567-89ab-cdef-fedc-ba9876543210");
}

}  // namespace
}  // namespace registrar
