// Conversions between the API's messages and the core's types: every field
// of a request reaches the core spec, and every field of a record reaches
// the reply.

#include "service/api/proto_conversion.h"

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "service/id/id.h"

namespace registrar {
namespace {

using google::protobuf::util::TimeUtil;
using ::testing::ElementsAre;
using ::testing::Pair;

v1::Owner ProtoOwner(const std::string& tenant, const std::string& user) {
  v1::Owner o;
  o.set_tenant(tenant);
  o.set_user_id(user);
  return o;
}

TEST(ProtoConversionTest, KindsMapOneToOne) {
  for (v1::Kind kind : {v1::KIND_UNSPECIFIED, v1::KIND_THREAD, v1::KIND_RUN,
                        v1::KIND_REQUEST, v1::KIND_CONNECTION}) {
    EXPECT_EQ(KindToProto(KindFromProto(kind)), kind) << v1::Kind_Name(kind);
  }
  EXPECT_EQ(KindFromProto(v1::KIND_THREAD), Kind::kThread);
  EXPECT_EQ(KindFromProto(v1::KIND_CONNECTION), Kind::kConnection);
  // Leases are not records: no record kind in the API.
  EXPECT_EQ(KindToProto(Kind::kLease), v1::KIND_UNSPECIFIED);
}

TEST(ProtoConversionTest, LabelsAreSortedByKey) {
  google::protobuf::Map<std::string, std::string> m;
  m["zone"] = "b";
  m["app"] = "x";
  m["m"] = "";
  EXPECT_THAT(LabelsFromProto(m),
              ElementsAre(Pair("app", "x"), Pair("m", ""), Pair("zone", "b")));
}

TEST(ProtoConversionTest, IssueRequestReachesTheSpecWhole) {
  v1::IssueRequest r;
  r.set_kind(v1::KIND_RUN);
  *r.mutable_owner() = ProtoOwner("acme", "alice");
  r.set_count(7);
  r.set_parent_id("thread_x");
  r.set_connection_id("conn_y");
  r.set_lease_id("lease_z");
  (*r.mutable_labels())["k"] = "v";
  const IssueSpec spec = IssueSpecFromProto(r);
  EXPECT_EQ(spec.kind, Kind::kRun);
  EXPECT_EQ(spec.owner.tenant, "acme");
  EXPECT_EQ(spec.owner.user_id, "alice");
  EXPECT_EQ(spec.count, 7u);
  EXPECT_EQ(spec.parent_id, "thread_x");
  EXPECT_EQ(spec.connection_id, "conn_y");
  EXPECT_EQ(spec.lease_id, "lease_z");
  EXPECT_THAT(spec.labels, ElementsAre(Pair("k", "v")));
  EXPECT_FALSE(spec.lease_caller.has_value());
}

TEST(ProtoConversionTest, OpenContextAndListOwnedReachTheirSpecs) {
  v1::OpenContextRequest open;
  *open.mutable_owner() = ProtoOwner("acme", "bob");
  open.set_thread_id("thread_t");
  open.set_connection_id("conn_c");
  (*open.mutable_labels())["a"] = "1";
  const OpenContextSpec o = OpenContextSpecFromProto(open);
  EXPECT_EQ(o.owner.user_id, "bob");
  EXPECT_EQ(o.thread_id, "thread_t");
  EXPECT_EQ(o.connection_id, "conn_c");
  EXPECT_THAT(o.labels, ElementsAre(Pair("a", "1")));

  v1::ListOwnedRequest list;
  *list.mutable_owner() = ProtoOwner("acme", "bob");
  list.set_kind(v1::KIND_REQUEST);
  list.set_include_ended(true);
  list.set_page_size(17);
  list.set_page_token("tok");
  const ListOwnedSpec l = ListOwnedSpecFromProto(list);
  EXPECT_EQ(l.owner.tenant, "acme");
  EXPECT_EQ(l.kind, Kind::kRequest);
  EXPECT_TRUE(l.include_ended);
  EXPECT_EQ(l.page_size, 17u);
  EXPECT_EQ(l.page_token, "tok");
}

TEST(ProtoConversionTest, CleanupTargetFollowsTheOneof) {
  v1::CleanupRequest by_ids;
  by_ids.mutable_ids()->add_ids("a");
  by_ids.mutable_ids()->add_ids("b");
  const CleanupTarget ids = CleanupTargetFromProto(by_ids);
  EXPECT_EQ(ids.type, CleanupTarget::Type::kIds);
  EXPECT_THAT(ids.ids, ElementsAre("a", "b"));

  v1::CleanupRequest by_conn;
  by_conn.set_connection_id("conn_c");
  const CleanupTarget conn = CleanupTargetFromProto(by_conn);
  EXPECT_EQ(conn.type, CleanupTarget::Type::kConnection);
  EXPECT_EQ(conn.connection_id, "conn_c");

  v1::CleanupRequest all;
  all.set_all_owned(true);
  EXPECT_EQ(CleanupTargetFromProto(all).type, CleanupTarget::Type::kAllOwned);
  // An empty ID list is still "these IDs" (none), never "everything owned".
  v1::CleanupRequest empty_ids;
  empty_ids.mutable_ids();
  EXPECT_EQ(CleanupTargetFromProto(empty_ids).type, CleanupTarget::Type::kIds);
}

TEST(ProtoConversionTest, RecordReachesTheReplyWhole) {
  RecordView r;
  r.id = Id128{0x0190'0000'0000'7000, 0x8000'0000'0000'0001};
  r.kind = Kind::kRequest;
  r.owner = Owner{"acme", "alice"};
  r.parent = Id128{0x0190'0000'0000'7000, 0x8000'0000'0000'0002};
  r.connection = Id128{0x0190'0000'0000'7000, 0x8000'0000'0000'0003};
  r.labels = std::make_shared<const Labels>(Labels{{"k", "v"}});
  r.created_at = absl::FromUnixMillis(1'750'000'000'123);
  r.ended_at = absl::FromUnixMillis(1'750'000'001'456);
  r.state = State::kReleased;
  r.revision = 42;
  r.end_reason = "cleanup";
  v1::Record out;
  RecordToProto(r, &out);
  EXPECT_EQ(out.id(), FormatId(Kind::kRequest, r.id));
  EXPECT_EQ(out.kind(), v1::KIND_REQUEST);
  EXPECT_EQ(out.owner().tenant(), "acme");
  EXPECT_EQ(out.owner().user_id(), "alice");
  EXPECT_EQ(out.parent_id(), FormatId(Kind::kRun, r.parent));
  EXPECT_EQ(out.connection_id(), FormatId(Kind::kConnection, r.connection));
  EXPECT_EQ(out.lease_id(), "");
  EXPECT_THAT(out.labels(), ElementsAre(Pair("k", "v")));
  EXPECT_EQ(TimeUtil::TimestampToMilliseconds(out.created_at()),
            1'750'000'000'123);
  ASSERT_TRUE(out.has_ended_at());
  EXPECT_EQ(TimeUtil::TimestampToMilliseconds(out.ended_at()),
            1'750'000'001'456);
  EXPECT_EQ(out.state(), v1::STATE_RELEASED);
  EXPECT_EQ(out.revision(), 42u);
  EXPECT_EQ(out.end_reason(), "cleanup");
}

TEST(ProtoConversionTest, LiveRecordHasNoEndTimeAndConnectionKeepsItsLease) {
  RecordView r;
  r.id = Id128{0x0190'0000'0000'7000, 0x8000'0000'0000'0001};
  r.kind = Kind::kConnection;
  r.owner = Owner{"acme", "alice"};
  r.lease = Id128{0x0190'0000'0000'7000, 0x8000'0000'0000'0009};
  r.labels = EmptyLabels();
  r.created_at = absl::FromUnixMillis(1'750'000'000'000);
  r.ended_at = absl::InfinitePast();
  r.state = State::kLive;
  v1::Record out;
  RecordToProto(r, &out);
  EXPECT_EQ(out.state(), v1::STATE_LIVE);
  EXPECT_FALSE(out.has_ended_at());
  EXPECT_EQ(out.lease_id(), FormatId(Kind::kLease, r.lease));
  EXPECT_EQ(out.parent_id(), "");
  EXPECT_EQ(out.connection_id(), "");
  EXPECT_TRUE(out.labels().empty());
}

}  // namespace
}  // namespace registrar
