#include "service/id/key_ring.h"

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "service/id/id.h"
#include "service/model/kind.h"

namespace registrar {
namespace {

using ::testing::HasSubstr;

// Debian's abseil has its own string_view, which gtest prints as a char
// array; a std::string prints readably.
std::string Message(const absl::Status& status) {
  return std::string(status.message());
}

TagKeyBytes KeyOf(uint8_t first) {
  TagKeyBytes key;
  for (size_t i = 0; i < key.size(); ++i) {
    key[i] = static_cast<uint8_t>(first + i);
  }
  return key;
}

// An ID minted the way IdGenerator does, tagged for (kind, tenant, user).
Id128 Tagged(const KeyRing& ring, Kind kind, std::string_view tenant,
             std::string_view user, uint32_t seq = 7) {
  IdFields f;
  f.unix_ms = 1'750'000'000'000;
  f.seq = seq;
  f.node = 3;
  f.key_version = ring.signing_version();
  f.tag = ring.ComputeTag(f.key_version, kind, f, tenant, user);
  return PackId(f);
}

TEST(KeyRingTest, VerifiesOnlyTheRightOwnerAndKind) {
  const KeyRing ring = KeyRing::FromKey(0, KeyOf(1));
  const Id128 id = Tagged(ring, Kind::kThread, "acme", "alice");

  EXPECT_TRUE(ring.Verify(Kind::kThread, id, "acme", "alice"));
  EXPECT_FALSE(ring.Verify(Kind::kThread, id, "acme", "bob"));
  EXPECT_FALSE(ring.Verify(Kind::kThread, id, "globex", "alice"));
  EXPECT_FALSE(ring.Verify(Kind::kThread, id, "", "alice"));
  EXPECT_FALSE(ring.Verify(Kind::kThread, id, "acme", ""));
  // A relabeled prefix: same bits claimed as another kind.
  for (Kind other : {Kind::kRun, Kind::kRequest, Kind::kConnection,
                     Kind::kLease, Kind::kUnspecified}) {
    EXPECT_FALSE(ring.Verify(other, id, "acme", "alice"));
  }
  // Moving bytes between tenant and user must not produce the same message.
  EXPECT_FALSE(ring.Verify(Kind::kThread, id, "acmea", "lice"));
  EXPECT_FALSE(ring.Verify(Kind::kThread, id, "acm", "ealice"));
  EXPECT_FALSE(ring.Verify(Kind::kThread, id, "alice", "acme"));
}

TEST(KeyRingTest, OwnerEncodingIsUnambiguous) {
  // Without the tenant's length in front, tenant "a" + user
  // "\x01\0\0\0z" and tenant "a\x05\0\0\0" + user "z" would hash the same
  // bytes. (Control characters are refused at the RPC boundary; the
  // encoding must not depend on that.)
  const KeyRing ring = KeyRing::FromKey(0, KeyOf(1));
  const std::string tenant_a("a", 1);
  const std::string user_a("\x01\0\0\0z", 5);
  const std::string tenant_b("a\x05\0\0\0", 5);
  const std::string user_b("z", 1);
  const Id128 id = Tagged(ring, Kind::kThread, tenant_a, user_a);
  EXPECT_TRUE(ring.Verify(Kind::kThread, id, tenant_a, user_a));
  EXPECT_FALSE(ring.Verify(Kind::kThread, id, tenant_b, user_b));
}

TEST(KeyRingTest, SameUserIdInAnotherTenantDoesNotVerify) {
  const KeyRing ring = KeyRing::FromKey(0, KeyOf(1));
  const Id128 a = Tagged(ring, Kind::kConnection, "tenant-a", "user-1");
  const Id128 b = Tagged(ring, Kind::kConnection, "tenant-b", "user-1");
  EXPECT_TRUE(ring.Verify(Kind::kConnection, a, "tenant-a", "user-1"));
  EXPECT_TRUE(ring.Verify(Kind::kConnection, b, "tenant-b", "user-1"));
  EXPECT_FALSE(ring.Verify(Kind::kConnection, a, "tenant-b", "user-1"));
  EXPECT_FALSE(ring.Verify(Kind::kConnection, b, "tenant-a", "user-1"));
}

TEST(KeyRingTest, AnyFlippedBitOutsideTheVersionFailsVerification) {
  const KeyRing ring = KeyRing::FromKey(0, KeyOf(9));
  const Id128 id = Tagged(ring, Kind::kRun, "acme", "alice");
  ASSERT_TRUE(ring.Verify(Kind::kRun, id, "acme", "alice"));
  // Every tag bit, every ms/seq/node bit: the tag covers them all.
  for (int bit = 0; bit < 64; ++bit) {
    const uint64_t mask = uint64_t{1} << bit;
    if (bit < 62) {  // lo: tag, key version, node (variant excluded)
      EXPECT_FALSE(
          ring.Verify(Kind::kRun, Id128{id.hi, id.lo ^ mask}, "acme", "alice"))
          << "lo bit " << bit;
    }
    if (bit < 12 || bit >= 16) {  // hi: seq and ms (version excluded)
      EXPECT_FALSE(
          ring.Verify(Kind::kRun, Id128{id.hi ^ mask, id.lo}, "acme", "alice"))
          << "hi bit " << bit;
    }
  }
}

TEST(KeyRingTest, UnknownKeyVersionDoesNotVerify) {
  const KeyRing ring = KeyRing::FromKey(1, KeyOf(1));
  Id128 id = Tagged(ring, Kind::kThread, "acme", "alice");
  ASSERT_TRUE(ring.Verify(Kind::kThread, id, "acme", "alice"));
  for (uint32_t version : {0u, 2u, 3u}) {
    IdFields f = UnpackId(id);
    f.key_version = version;
    EXPECT_FALSE(ring.Verify(Kind::kThread, PackId(f), "acme", "alice"))
        << version;
  }
}

TEST(KeyRingTest, DifferentKeysGiveDifferentTags) {
  const KeyRing a = KeyRing::FromKey(0, KeyOf(1));
  const KeyRing b = KeyRing::FromKey(0, KeyOf(2));
  const Id128 id = Tagged(a, Kind::kThread, "acme", "alice");
  EXPECT_TRUE(a.Verify(Kind::kThread, id, "acme", "alice"));
  EXPECT_FALSE(b.Verify(Kind::kThread, id, "acme", "alice"));
}

TEST(KeyRingTest, TagIsDeterministicAnd46Bits) {
  const KeyRing ring = KeyRing::FromKey(0, KeyOf(1));
  IdFields f;
  f.unix_ms = 1;
  uint64_t all = 0;
  for (uint32_t seq = 0; seq < 256; ++seq) {
    f.seq = seq;
    const uint64_t tag = ring.ComputeTag(0, Kind::kRun, f, "t", "u");
    EXPECT_EQ(tag, ring.ComputeTag(0, Kind::kRun, f, "t", "u"));
    EXPECT_EQ(tag & ~kTagMask, 0u);
    all |= tag;
  }
  // Over 256 tags every one of the 46 bits shows up set at least once.
  EXPECT_EQ(all, kTagMask);
  // The tag field of the input is ignored.
  f.tag = 12345;
  const uint64_t with_tag = ring.ComputeTag(0, Kind::kRun, f, "t", "u");
  f.tag = 0;
  EXPECT_EQ(with_tag, ring.ComputeTag(0, Kind::kRun, f, "t", "u"));
}

TEST(KeyRingTest, LongOwnersUseTheHeapPathAndStillVerify) {
  const KeyRing ring = KeyRing::FromKey(0, KeyOf(1));
  const std::string tenant(5000, 't');
  const std::string user(3000, 'u');
  const Id128 id = Tagged(ring, Kind::kThread, tenant, user);
  EXPECT_TRUE(ring.Verify(Kind::kThread, id, tenant, user));
  EXPECT_FALSE(ring.Verify(Kind::kThread, id, tenant, user + "u"));
  EXPECT_FALSE(ring.Verify(Kind::kThread, id, tenant.substr(1), user));
}

TEST(KeyRingTest, RotationVerifiesOldAndNewSignsWithNewest) {
  const KeyRing old_ring = KeyRing::FromKey(0, KeyOf(1));
  absl::StatusOr<KeyRing> rotated =
      KeyRing::Parse(old_ring.ToFileText() + "1 " + std::string(32, 'c'));
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_EQ(rotated->signing_version(), 1u);
  EXPECT_TRUE(rotated->has_version(0));
  EXPECT_TRUE(rotated->has_version(1));

  const Id128 old_id = Tagged(old_ring, Kind::kThread, "acme", "alice");
  const Id128 new_id = Tagged(*rotated, Kind::kThread, "acme", "alice");
  EXPECT_EQ(UnpackId(old_id).key_version, 0u);
  EXPECT_EQ(UnpackId(new_id).key_version, 1u);
  EXPECT_TRUE(rotated->Verify(Kind::kThread, old_id, "acme", "alice"));
  EXPECT_TRUE(rotated->Verify(Kind::kThread, new_id, "acme", "alice"));
  EXPECT_FALSE(rotated->Verify(Kind::kThread, new_id, "acme", "bob"));
  // The old ring does not know version 1.
  EXPECT_FALSE(old_ring.Verify(Kind::kThread, new_id, "acme", "alice"));
  // Same fields tagged under v1 but labeled v0 must not verify.
  IdFields relabeled = UnpackId(new_id);
  relabeled.key_version = 0;
  EXPECT_FALSE(
      rotated->Verify(Kind::kThread, PackId(relabeled), "acme", "alice"));
}

TEST(KeyRingTest, RotationWrapsAroundTheFourVersions) {
  // After version 3 comes 0 again: the last line signs, not the highest.
  absl::StatusOr<KeyRing> wrapped = KeyRing::Parse(
      "2 " + std::string(32, 'a') + "\n3 " + std::string(32, 'b') + "\n0 " +
      std::string(32, 'c') + "\n");
  ASSERT_TRUE(wrapped.ok()) << wrapped.status();
  EXPECT_EQ(wrapped->signing_version(), 0u);
  const Id128 id = Tagged(*wrapped, Kind::kThread, "acme", "alice");
  EXPECT_EQ(UnpackId(id).key_version, 0u);
  EXPECT_TRUE(wrapped->Verify(Kind::kThread, id, "acme", "alice"));
  // The text form keeps the signing key last, so it survives a round trip.
  absl::StatusOr<KeyRing> again = KeyRing::Parse(wrapped->ToFileText());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->signing_version(), 0u);
  EXPECT_TRUE(again->Verify(Kind::kThread, id, "acme", "alice"));
}

TEST(KeyRingParseTest, AcceptsTheDocumentedForms) {
  const std::string hex = "000102030405060708090a0b0c0d0e0f";
  absl::StatusOr<KeyRing> bare = KeyRing::Parse(hex + "\n");
  ASSERT_TRUE(bare.ok()) << bare.status();
  EXPECT_EQ(bare->signing_version(), 0u);
  EXPECT_TRUE(bare->has_version(0));
  // Same key as FromKey: IDs verify across the two.
  const KeyRing from_key = KeyRing::FromKey(0, KeyOf(0));
  EXPECT_TRUE(bare->Verify(Kind::kRun, Tagged(from_key, Kind::kRun, "t", "u"),
                           "t", "u"));

  absl::StatusOr<KeyRing> multi = KeyRing::Parse(
      "# comment\r\n"
      "\n"
      "  2\t" +
      hex +
      "  \r\n"
      "   # indented comment\n"
      "0 FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF\n"
      "3 " +
      std::string(32, 'a'));
  ASSERT_TRUE(multi.ok()) << multi.status();
  EXPECT_EQ(multi->signing_version(), 3u);
  EXPECT_TRUE(multi->has_version(0));
  EXPECT_FALSE(multi->has_version(1));
  EXPECT_TRUE(multi->has_version(2));
  EXPECT_TRUE(multi->has_version(3));
}

TEST(KeyRingParseTest, RejectsBadFilesNamingTheLine) {
  const std::string hex(32, 'a');
  struct Case {
    std::string text;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"", "no keys"},
      {"# only a comment\n\n", "no keys"},
      {"0 " + hex + "\n0 " + std::string(32, 'b'),
       "line 2: duplicate key version 0"},
      {hex + "\n0 " + hex, "line 2: duplicate key version 0"},
      {"# c\n4 " + hex, "line 2: key version \"4\" is not 0..3"},
      {"-1 " + hex, "line 1: key version \"-1\" is not 0..3"},
      {"x " + hex, "line 1: key version \"x\" is not 0..3"},
      {"1000 " + hex, "line 1: key version \"1000\""},
      {"0 " + std::string(30, 'a'),
       "line 1: key must be 32 hex digits, got 30"},
      {"0 " + std::string(34, 'a'),
       "line 1: key must be 32 hex digits, got 34"},
      {"\n\n1 " + std::string(31, 'a') + "g", "line 3: key has a character"},
      {"0 " + hex + " extra", "line 1: expected"},
      {std::string(31, 'a'), "line 1: key must be 32 hex digits, got 31"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    absl::StatusOr<KeyRing> ring = KeyRing::Parse(c.text);
    ASSERT_FALSE(ring.ok());
    EXPECT_EQ(ring.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(Message(ring.status()), HasSubstr(c.message));
  }
}

TEST(KeyRingParseTest, ToFileTextRoundTrips) {
  absl::StatusOr<KeyRing> ring = KeyRing::Parse(
      "1 00112233445566778899aabbccddeeff\n3 ffeeddccbbaa99887766554433221100");
  ASSERT_TRUE(ring.ok()) << ring.status();
  absl::StatusOr<KeyRing> again = KeyRing::Parse(ring->ToFileText());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->ToFileText(), ring->ToFileText());
  EXPECT_EQ(again->signing_version(), 3u);
  EXPECT_THAT(ring->ToFileText(),
              HasSubstr("1 00112233445566778899aabbccddeeff\n"));
  const Id128 id = Tagged(*ring, Kind::kRequest, "t", "u");
  EXPECT_TRUE(again->Verify(Kind::kRequest, id, "t", "u"));
}

TEST(KeyRingTest, GenerateMakesFreshVersionZeroKeys) {
  const KeyRing a = KeyRing::Generate();
  const KeyRing b = KeyRing::Generate();
  EXPECT_EQ(a.signing_version(), 0u);
  EXPECT_TRUE(a.has_version(0));
  EXPECT_NE(a.ToFileText(), b.ToFileText());
  const Id128 id = Tagged(a, Kind::kThread, "t", "u");
  EXPECT_TRUE(a.Verify(Kind::kThread, id, "t", "u"));
  EXPECT_FALSE(b.Verify(Kind::kThread, id, "t", "u"));
  absl::StatusOr<KeyRing> parsed = KeyRing::Parse(a.ToFileText());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_TRUE(parsed->Verify(Kind::kThread, id, "t", "u"));
}

TEST(KeyRingLoadFileTest, LoadsAndNamesThePathInErrors) {
  const std::string dir = ::testing::TempDir();
  const std::string good = dir + "/registrar_key_ring_test_good.keys";
  const std::string bad = dir + "/registrar_key_ring_test_bad.keys";
  {
    std::ofstream(good) << "2 " << std::string(32, '5') << "\n";
    std::ofstream(bad) << "# header\n9 " << std::string(32, '5') << "\n";
  }
  absl::StatusOr<KeyRing> ring = KeyRing::LoadFile(good);
  ASSERT_TRUE(ring.ok()) << ring.status();
  EXPECT_EQ(ring->signing_version(), 2u);

  absl::StatusOr<KeyRing> bad_ring = KeyRing::LoadFile(bad);
  ASSERT_FALSE(bad_ring.ok());
  EXPECT_EQ(bad_ring.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(bad_ring.status()), HasSubstr(bad));
  EXPECT_THAT(Message(bad_ring.status()), HasSubstr("line 2"));

  const std::string missing = dir + "/registrar_key_ring_test_missing.keys";
  absl::StatusOr<KeyRing> none = KeyRing::LoadFile(missing);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(none.status()), HasSubstr(missing));

  std::remove(good.c_str());
  std::remove(bad.c_str());
}

TEST(KeyRingTest, FingerprintsNameKeysWithoutRevealingThem) {
  const KeyRing a = KeyRing::FromKey(0, KeyOf(1));
  const KeyRing a_again = KeyRing::FromKey(0, KeyOf(1));
  const KeyRing b = KeyRing::FromKey(0, KeyOf(2));
  EXPECT_EQ(a.Fingerprint(0), a_again.Fingerprint(0));
  EXPECT_NE(a.Fingerprint(0), b.Fingerprint(0));
  EXPECT_THAT(a.Fingerprint(0), ::testing::MatchesRegex("0:[0-9a-f]{16}"));
  // Not the key's own hex.
  EXPECT_EQ(a.ToFileText().find(a.Fingerprint(0).substr(2)), std::string::npos);

  // Rotated: the old key's fingerprint stays, the signing one comes last.
  absl::StatusOr<KeyRing> rotated =
      KeyRing::Parse(a.ToFileText() + "1 " + std::string(32, 'c'));
  ASSERT_TRUE(rotated.ok()) << rotated.status();
  EXPECT_THAT(
      rotated->Fingerprints(),
      ::testing::ElementsAre(a.Fingerprint(0), rotated->Fingerprint(1)));
  EXPECT_THAT(rotated->Fingerprint(1), ::testing::StartsWith("1:"));
}

}  // namespace
}  // namespace registrar
