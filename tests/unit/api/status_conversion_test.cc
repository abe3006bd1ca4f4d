#include "service/api/status_conversion.h"

#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "gtest/gtest.h"
#include "service/common/field_error.h"

namespace registrar {
namespace {

TEST(StatusConversionTest, OkStaysOk) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
}

TEST(StatusConversionTest, PlainErrorKeepsCodeAndMessage) {
  grpc::Status s = ToGrpcStatus(absl::NotFoundError("id: no record"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "id: no record");
  EXPECT_TRUE(s.error_details().empty());
}

TEST(StatusConversionTest, FieldErrorCarriesBadRequest) {
  grpc::Status s = ToGrpcStatus(InvalidField("owner.user_id", "is required"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "owner.user_id: is required");
  google::rpc::Status details;
  ASSERT_TRUE(details.ParseFromString(s.error_details()));
  EXPECT_EQ(details.code(),
            static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  ASSERT_EQ(details.details_size(), 1);
  google::rpc::BadRequest bad;
  ASSERT_TRUE(details.details(0).UnpackTo(&bad));
  ASSERT_EQ(bad.field_violations_size(), 1);
  EXPECT_EQ(bad.field_violations(0).field(), "owner.user_id");
  EXPECT_EQ(bad.field_violations(0).description(), "is required");
}

TEST(StatusConversionTest, ResourceExhaustedAlsoCarriesQuotaFailure) {
  grpc::Status s = ToGrpcStatus(FieldError(absl::StatusCode::kResourceExhausted,
                                           "count", "is 11, limit is 10"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  google::rpc::Status details;
  ASSERT_TRUE(details.ParseFromString(s.error_details()));
  ASSERT_EQ(details.details_size(), 2);
  google::rpc::QuotaFailure quota;
  ASSERT_TRUE(details.details(1).UnpackTo(&quota));
  EXPECT_EQ(quota.violations(0).subject(), "count");
  EXPECT_EQ(quota.violations(0).description(), "is 11, limit is 10");
}

}  // namespace
}  // namespace registrar

namespace registrar {
namespace {

TEST(StatusConversionTest, NotAppliedCarriesErrorInfo) {
  const grpc::Status s = ToGrpcStatus(NotApplied("no writer is known"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(s.error_message(), "no writer is known");
  google::rpc::Status details;
  ASSERT_TRUE(details.ParseFromString(s.error_details()));
  ASSERT_EQ(details.details_size(), 1);
  google::rpc::ErrorInfo info;
  ASSERT_TRUE(details.details(0).UnpackTo(&info));
  EXPECT_EQ(info.domain(), "registrar.dev");
  EXPECT_EQ(info.reason(), "NOT_APPLIED");
  // A plain UNAVAILABLE carries none: the server may have acted.
  EXPECT_TRUE(
      ToGrpcStatus(absl::UnavailableError("x")).error_details().empty());
  EXPECT_FALSE(IsNotApplied(absl::UnavailableError("x")));
}

TEST(StatusConversionLimitTest, TaggedLimitsNameTheirFlagsAndUntaggedNone) {
  const grpc::Status quota = ToGrpcStatus(
      WithLimit(FieldError(absl::StatusCode::kResourceExhausted, "owner",
                           "live record quota exceeded: limit is 5"),
                Limit::kOwnerQuota));
  EXPECT_EQ(quota.error_message(),
            "owner: live record quota exceeded: limit is 5 (set by "
            "--owner_quota)");
  const grpc::Status watchers = ToGrpcStatus(
      WithLimit(absl::ResourceExhaustedError("too many watchers (limit 2)"),
                Limit::kMaxWatchersPerCaller));
  EXPECT_EQ(watchers.error_message(),
            "too many watchers (limit 2) (set by --max_watchers_per_caller)");
  EXPECT_EQ(ToGrpcStatus(absl::ResourceExhaustedError("no limit named"))
                .error_message(),
            "no limit named");
  // Every limit maps to a flag.
  for (int i = 0; i <= static_cast<int>(Limit::kLast); ++i) {
    const auto l = static_cast<Limit>(i);
    EXPECT_EQ(LimitFlags(l).substr(0, 2), "--") << i;
    EXPECT_EQ(LimitOf(WithLimit(absl::InternalError("x"), l)), l) << i;
  }
}

}  // namespace
}  // namespace registrar
