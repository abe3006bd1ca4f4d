#include "service/api/method.h"

#include <set>
#include <string>

#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"
#include "registrar/v1/registrar.pb.h"

namespace registrar {
namespace {

const google::protobuf::ServiceDescriptor& Service() {
  return *v1::IssueRequest::descriptor()->file()->FindServiceByName(
      "Registrar");
}

TEST(MethodTableTest, ListsExactlyTheServiceMethodsOfTheContract) {
  const google::protobuf::ServiceDescriptor& service = Service();
  ASSERT_EQ(service.method_count(), kNumMethods);
  std::set<std::string> in_table;
  for (const MethodInfo& m : kMethods) in_table.emplace(m.name);
  ASSERT_EQ(in_table.size(), static_cast<size_t>(kNumMethods));
  for (int i = 0; i < service.method_count(); ++i) {
    EXPECT_TRUE(in_table.contains(service.method(i)->name()))
        << service.method(i)->name() << " is missing from kMethods";
  }
}

TEST(MethodTableTest, OnlyWatchStreamsAndHasNoOpLabel) {
  const google::protobuf::ServiceDescriptor& service = Service();
  std::set<std::string_view> labels;
  for (const MethodInfo& m : kMethods) {
    const google::protobuf::MethodDescriptor* d =
        service.FindMethodByName(std::string(m.name));
    ASSERT_NE(d, nullptr) << m.name;
    EXPECT_EQ(d->server_streaming(), m.op_label.empty()) << m.name;
    if (!m.op_label.empty()) {
      EXPECT_TRUE(labels.insert(m.op_label).second) << m.op_label;
    }
  }
}

TEST(MethodTableTest, AdminsMayCallEverythingReadersNeverChangeState) {
  for (const MethodInfo& m : kMethods) {
    EXPECT_TRUE(RoleAllows(CallerRole::kAdmin, m.method)) << m.name;
    if (m.changes_state) {
      EXPECT_FALSE(RoleAllows(CallerRole::kReader, m.method)) << m.name;
      EXPECT_TRUE(RoleAllows(CallerRole::kGateway, m.method)) << m.name;
    }
  }
  // The looking methods a gateway has no business calling.
  EXPECT_FALSE(RoleAllows(CallerRole::kGateway, Method::kDescribe));
  EXPECT_FALSE(RoleAllows(CallerRole::kGateway, Method::kListOwned));
  EXPECT_FALSE(RoleAllows(CallerRole::kGateway, Method::kWatch));
  EXPECT_TRUE(RoleAllows(CallerRole::kGateway, Method::kValidate));
  EXPECT_TRUE(RoleAllows(CallerRole::kReader, Method::kValidate));
}

TEST(MethodTableTest, ChangingMethodsAreTheOnesThatWrite) {
  std::set<std::string_view> changing;
  for (const MethodInfo& m : kMethods) {
    if (m.changes_state) changing.insert(m.name);
  }
  EXPECT_EQ(changing, (std::set<std::string_view>{"Issue", "OpenContext",
                                                  "Cleanup", "GrantLease",
                                                  "KeepAlive", "RevokeLease"}));
}

}  // namespace
}  // namespace registrar
