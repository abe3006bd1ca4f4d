#include "service/store/record_codec.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/unit/store/store_test_util.h"

namespace registrar {
namespace {

using ::registrar::testing_util::ExpectSameRecord;
using ::testing::HasSubstr;

RecordView FullRecord() {
  RecordView r;
  r.id = Id128{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  r.kind = Kind::kRun;
  r.owner = Owner{"tenant-a", "a-user-id-longer-than-sso-buffer"};
  r.parent = Id128{1, 2};
  r.connection = Id128{3, 4};
  r.lease = Id128{5, 6};
  r.labels = std::make_shared<const Labels>(
      Labels{{"a", "1"}, {"b", std::string("x\0y", 3)}});
  r.created_at = absl::FromUnixMillis(1'750'000'000'123);
  r.ended_at = absl::FromUnixMillis(1'750'000'009'999);
  r.state = State::kExpired;
  r.revision = 77;
  r.end_reason = "lease expired";
  return r;
}

TEST(RecordCodecTest, KeysSortLikeIdsAndRevisions) {
  const Id128 ids[] = {{0, 0}, {0, 1}, {0, ~0ULL}, {1, 0}, {~0ULL, 5}};
  for (size_t i = 0; i + 1 < std::size(ids); ++i) {
    EXPECT_LT(IdKey(ids[i]), IdKey(ids[i + 1])) << i;
    Id128 back;
    ASSERT_TRUE(DecodeIdKey(IdKey(ids[i]), &back));
    EXPECT_EQ(back, ids[i]);
  }
  EXPECT_LT(RevisionKey(255), RevisionKey(256));
  EXPECT_LT(RevisionKey(1), RevisionKey(1ULL << 40));
  uint64_t rev = 0;
  ASSERT_TRUE(DecodeRevisionKey(RevisionKey(0x0102030405060708ULL), &rev));
  EXPECT_EQ(rev, 0x0102030405060708ULL);
  EXPECT_EQ(IdKey(Id128{0x0102030405060708ULL, 0}).substr(0, 2),
            std::string("\x01\x02", 2));
  Id128 id;
  EXPECT_FALSE(DecodeIdKey("short", &id));
  EXPECT_FALSE(DecodeRevisionKey("123456789", &rev));
}

TEST(RecordCodecTest, RecordRoundTripsEveryField) {
  const RecordView r = FullRecord();
  std::string value;
  EncodeRecordValue(r, &value);
  RecordDecoder decoder;
  RecordView back;
  ASSERT_TRUE(decoder.DecodeRecord(r.id, value, &back).ok());
  ExpectSameRecord(r, back);
}

TEST(RecordCodecTest, LiveRecordWithoutLabelsSharesOneEmptyLabels) {
  RecordView r;
  r.id = Id128{9, 9};
  r.kind = Kind::kThread;
  r.owner = Owner{"t", "u"};
  r.labels = std::make_shared<const Labels>();
  r.created_at = absl::FromUnixMillis(1'750'000'000'000);
  r.ended_at = absl::InfinitePast();
  r.state = State::kLive;
  r.revision = 1;
  std::string value;
  EncodeRecordValue(r, &value);
  EXPECT_LT(value.size(), 20u) << "zero IDs and empty strings are omitted";
  RecordDecoder decoder;
  RecordView a, b;
  ASSERT_TRUE(decoder.DecodeRecord(r.id, value, &a).ok());
  ASSERT_TRUE(decoder.DecodeRecord(r.id, value, &b).ok());
  ExpectSameRecord(r, a);
  EXPECT_EQ(a.ended_at, absl::InfinitePast());
  EXPECT_EQ(a.labels.get(), b.labels.get());
}

TEST(RecordCodecTest, EventEmbedsTheRecordBytes) {
  const RecordView r = FullRecord();
  std::string record_value, event_value;
  EncodeRecordValue(r, &record_value);
  EncodeEventValue(EventType::kExpired, r.id, record_value, &event_value);
  RecordDecoder decoder;
  Event e;
  ASSERT_TRUE(decoder.DecodeEvent(123, event_value, &e).ok());
  EXPECT_EQ(e.revision, 123u);
  EXPECT_EQ(e.type, EventType::kExpired);
  RecordView want = r;
  want.revision = 123;  // an event's record carries the event's revision
  ExpectSameRecord(want, e.record);
}

TEST(RecordCodecTest, EventWithLargeRecordUsesMultiByteLength) {
  RecordView r = FullRecord();
  r.end_reason = std::string(300, 'x');  // record > 127 bytes
  std::string record_value, event_value;
  EncodeRecordValue(r, &record_value);
  ASSERT_GT(record_value.size(), 300u);
  EncodeEventValue(EventType::kReleased, r.id, record_value, &event_value);
  RecordDecoder decoder;
  Event e;
  ASSERT_TRUE(decoder.DecodeEvent(5, event_value, &e).ok());
  EXPECT_EQ(e.record.end_reason, r.end_reason);
}

TEST(RecordCodecTest, EventBatchSharesOneEncodingPerRunOfAlikeRecords) {
  // An Issue of three IDs, then a different record: two runs.
  std::vector<Event> events;
  for (uint64_t i = 0; i < 3; ++i) {
    RecordView r = FullRecord();
    r.id = Id128{r.id.hi, r.id.lo + i};
    events.push_back({40 + i, EventType::kIssued, r});
  }
  RecordView other = FullRecord();
  other.id = Id128{99, 99};
  other.state = State::kReleased;
  other.ended_at = absl::FromUnixMillis(1'750'000'001'000);
  other.end_reason = "cleanup_connection";
  events.push_back({43, EventType::kReleased, other});
  for (Event& e : events) e.record.revision = e.revision;

  std::string value;
  EncodeEventBatchValue(events, &value);
  // The three alike cost one record encoding plus 16 bytes an ID (and a
  // few bytes of framing), not three records.
  std::string alike, single_record;
  EncodeEventBatchValue(absl::MakeConstSpan(events).first(3), &alike);
  EncodeRecordValue(events[0].record, &single_record);
  EXPECT_LE(alike.size(), single_record.size() + 3 * 16 + 16);

  RecordDecoder decoder;
  std::vector<Event> back;
  ASSERT_TRUE(decoder.DecodeEvents(40, value, &back).ok());
  ASSERT_EQ(back.size(), events.size());
  for (size_t i = 0; i < events.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(back[i].revision, events[i].revision);
    EXPECT_EQ(back[i].type, events[i].type);
    ExpectSameRecord(events[i].record, back[i].record);
  }
}

TEST(RecordCodecTest, DecodeEventsReadsASingleEventEntryOfAnOlderDataDir) {
  const RecordView r = FullRecord();
  std::string record_value, event_value;
  EncodeRecordValue(r, &record_value);
  EncodeEventValue(EventType::kIssued, r.id, record_value, &event_value);
  RecordDecoder decoder;
  std::vector<Event> back;
  ASSERT_TRUE(decoder.DecodeEvents(8, event_value, &back).ok());
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].revision, 8u);
  RecordView want = r;
  want.revision = 8;
  ExpectSameRecord(want, back[0].record);
}

TEST(RecordCodecTest, CorruptEventBatchIsDataLoss) {
  RecordDecoder decoder;
  std::vector<Event> back;
  // A zero byte then garbage.
  absl::Status s = decoder.DecodeEvents(3, std::string("\0\xff\xff", 3), &back);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  // A run with an odd number of ID words, by hand: zero byte, then
  // StoredEventBatch{runs: [StoredEventRun{type: 1,
  //   record: {kind: 1, state: 1}, ids: [7]}]}.
  const std::string odd(
      "\x00"
      "\x0a\x12"                          // runs, 18 bytes
      "\x08\x01"                          //   type 1
      "\x12\x04\x08\x01\x10\x01"          //   record {kind 1, state 1}
      "\x1a\x08\x07\x00\x00\x00\x00\x00\x00\x00",  //   ids [7], packed
      21);
  s = decoder.DecodeEvents(3, odd, &back);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("ID words"));
  EXPECT_TRUE(back.empty());
}

TEST(RecordCodecTest, LeaseRoundTrips) {
  LeaseView l{Id128{7, 8}, "gateway-7", absl::Seconds(30)};
  std::string value;
  EncodeLeaseValue(l, &value);
  RecordDecoder decoder;
  LeaseView back;
  ASSERT_TRUE(decoder.DecodeLease(l.id, value, &back).ok());
  EXPECT_EQ(back.id, l.id);
  EXPECT_EQ(back.holder, l.holder);
  EXPECT_EQ(back.ttl, l.ttl);
}

TEST(RecordCodecTest, GarbageAndUnknownValuesAreDataLoss) {
  RecordDecoder decoder;
  RecordView r;
  absl::Status s = decoder.DecodeRecord(Id128{1, 1}, "\xff\xff\xff", &r);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  // Field 1 (kind) = 9: parses, but is no kind of ours.
  s = decoder.DecodeRecord(Id128{1, 1}, std::string("\x08\x09\x10\x01", 4), &r);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("unknown record kind 9"));
  Event e;
  s = decoder.DecodeEvent(4, std::string("\x08\x07", 2), &e);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("event 4"));
}

}  // namespace
}  // namespace registrar
