// LogSafe and SafeMessage: what a caller sent can neither add a line, nor
// move the cursor, nor grow a log line or a status message without bound.

#include "service/common/text.h"

#include <string>

#include "gtest/gtest.h"

namespace registrar {
namespace {

TEST(LogSafeTest, PrintableTextIsUnchanged) {
  EXPECT_EQ(LogSafe("tenant-a"), "tenant-a");
  EXPECT_EQ(LogSafe("Zürich 東京 🙂"), "Zürich 東京 🙂");
  EXPECT_EQ(LogSafe(""), "");
}

TEST(LogSafeTest, EscapesNewlinesAndControlCharacters) {
  EXPECT_EQ(LogSafe("x\n[critical] forged"), "x\\n[critical] forged");
  EXPECT_EQ(LogSafe("a\rb\tc"), "a\\rb\\tc");
  EXPECT_EQ(LogSafe(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(LogSafe("\x7f"), "\\x7f");
  // C1 controls are two bytes in UTF-8: U+0085 (next line), U+009B (CSI).
  EXPECT_EQ(LogSafe("a\xc2\x85"
                    "b"),
            "a\\u{0085}b");
  EXPECT_EQ(LogSafe("\xc2\x9b"), "\\u{009b}");
}

TEST(LogSafeTest, EscapesTerminalEscapes) {
  const std::string out = LogSafe("\x1b[2J\x1b[31mred\x1b]0;title\x07");
  EXPECT_EQ(out, "\\x1b[2J\\x1b[31mred\\x1b]0;title\\x07");
  EXPECT_EQ(out.find('\x1b'), std::string::npos);
}

TEST(LogSafeTest, EscapesLineSeparatorsAndBidiOverrides) {
  EXPECT_EQ(LogSafe("a\u2028b\u2029c"), "a\\u{2028}b\\u{2029}c");
  EXPECT_EQ(LogSafe("\u202egnp.exe"), "\\u{202e}gnp.exe");
}

TEST(LogSafeTest, EscapesQuotesAndBackslashesSoEscapesAreUnambiguous) {
  // A literal backslash-n differs from an escaped newline.
  EXPECT_EQ(LogSafe("a\\nb"), "a\\\\nb");
  EXPECT_NE(LogSafe("a\\nb"), LogSafe("a\nb"));
  EXPECT_EQ(LogSafe("x\" (owner.tenant) ok"), "x\\\" (owner.tenant) ok");
}

TEST(LogSafeTest, EscapesInvalidUtf8ByteByByte) {
  EXPECT_EQ(LogSafe("a\xff"
                    "b"),
            "a\\xffb");
  EXPECT_EQ(LogSafe("\xc0\xaf"), "\\xc0\\xaf");           // overlong '/'
  EXPECT_EQ(LogSafe("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // surrogate
  EXPECT_EQ(LogSafe("\xe6\x9d"), "\\xe6\\x9d");           // truncated
  EXPECT_EQ(LogSafe("\x80"), "\\x80");                    // stray
  EXPECT_TRUE(IsPrintableUtf8(LogSafe("\xf4\x90\x80\x80 \xfe\xff")));
}

TEST(LogSafeTest, TruncatesToTheBoundAndSaysHowLongTheInputWas) {
  const std::string big(1 << 20, 'a');
  const std::string out = LogSafe(big);
  EXPECT_EQ(out, std::string(kLogTextBytes, 'a') + "...(1048576 bytes)");
  EXPECT_EQ(LogSafe("abcdef", 3), "abc...(6 bytes)");
  // Exactly at the bound: nothing is cut.
  EXPECT_EQ(LogSafe("abc", 3), "abc");
}

TEST(LogSafeTest, NeverSplitsACharacter) {
  // "é" is two bytes; a bound of 2 after "a" would split it.
  EXPECT_EQ(LogSafe("aéz", 2), "a...(4 bytes)");
  const std::string many_emoji = [] {
    std::string s;
    for (int i = 0; i < 100; ++i) s += "🙂";
    return s;
  }();
  const std::string out = LogSafe(many_emoji, 10);
  EXPECT_EQ(out, "🙂🙂...(400 bytes)");
  EXPECT_TRUE(IsPrintableUtf8(out));
}

TEST(LogSafeTest, OutputIsBoundedForTheWorstInput) {
  // Every byte escaped: four output bytes per input byte.
  const std::string hostile(1 << 20, '\x1b');
  const std::string out = LogSafe(hostile);
  EXPECT_LE(out.size(), 4 * kLogTextBytes + 24);
  EXPECT_TRUE(IsPrintableUtf8(out));
}

TEST(SafeMessageTest, KeepsOurOwnMessagesAsTheyAre) {
  const std::string message =
      "owner.tenant: is 300 bytes, limit is 256 \"quoted\" \\ kept";
  EXPECT_EQ(SafeMessage(message), message);
}

TEST(SafeMessageTest, EscapesAndBoundsAMessageCarryingCallerText) {
  EXPECT_EQ(SafeMessage("id: no record of x\n[critical] y"),
            "id: no record of x\\n[critical] y");
  const std::string big = "prefix " + std::string(1 << 20, 'b');
  const std::string out = SafeMessage(big);
  EXPECT_LE(out.size(), kMaxStatusMessageBytes + 24);
  EXPECT_EQ(out.rfind("...(1048583 bytes)"), out.size() - 18);
}

std::string Json(std::string_view s) {
  std::string out;
  AppendJsonString(s, &out);
  return out;
}

TEST(AppendJsonStringTest, EscapesWhatJsonRequires) {
  EXPECT_EQ(Json("plain"), "\"plain\"");
  EXPECT_EQ(Json("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(Json("l1\nl2\tx"), "\"l1\\nl2\\tx\"");
  EXPECT_EQ(Json("\x1b[31m\x7f"), "\"\\u001b[31m\\u007f\"");
  EXPECT_EQ(Json("\u2028"), "\"\\u2028\"");
  EXPECT_EQ(Json("Zürich"), "\"Zürich\"");
}

TEST(AppendJsonStringTest, InvalidUtf8BecomesReplacementCharacters) {
  EXPECT_EQ(Json("a\xff\xc0\xaf"
                 "b"),
            "\"a\\ufffd\\ufffd\\ufffdb\"");
}

TEST(JsonTimestampTest, IsUtcWithMicroseconds) {
  EXPECT_EQ(JsonTimestamp(absl::FromUnixMicros(1'764'670'826'123'456)),
            "2025-12-02T10:20:26.123456Z");
}

}  // namespace
}  // namespace registrar
