#include "service/api/method.h"

#include <set>
#include <string>

#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"
#include "registrar/v1/admin.pb.h"
#include "registrar/v1/registrar.pb.h"

namespace registrar {
namespace {

const google::protobuf::ServiceDescriptor* Service(std::string_view name) {
  // Linking the generated code registers both services in the pool.
  (void)v1::IssueRequest::descriptor();
  (void)v1::BackupRequest::descriptor();
  return google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
      std::string(name));
}

TEST(MethodTableTest, ListsExactlyTheServiceMethodsOfTheContract) {
  std::set<std::string> in_table;
  for (const MethodInfo& m : kMethods) {
    in_table.emplace(std::string(m.service) + "/" + std::string(m.name));
  }
  ASSERT_EQ(in_table.size(), static_cast<size_t>(kNumMethods));
  int in_contract = 0;
  for (std::string_view name : {kRegistrarService, kAdminService}) {
    const google::protobuf::ServiceDescriptor* service = Service(name);
    ASSERT_NE(service, nullptr) << name;
    for (int i = 0; i < service->method_count(); ++i, ++in_contract) {
      EXPECT_TRUE(in_table.contains(std::string(name) + "/" +
                                    service->method(i)->name()))
          << service->method(i)->full_name() << " is missing from kMethods";
    }
  }
  EXPECT_EQ(in_contract, kNumMethods);
}

// Every core operation has a label; the Watch stream (not one operation)
// and Backup (the store's, not the registry's) have none.
TEST(MethodTableTest, StreamsAndBackupHaveNoOpLabel) {
  std::set<std::string_view> labels;
  for (const MethodInfo& m : kMethods) {
    const google::protobuf::ServiceDescriptor* service = Service(m.service);
    ASSERT_NE(service, nullptr) << m.service;
    const google::protobuf::MethodDescriptor* d =
        service->FindMethodByName(std::string(m.name));
    ASSERT_NE(d, nullptr) << m.name;
    EXPECT_EQ(d->server_streaming() || m.method == Method::kBackup,
              m.op_label.empty())
        << m.name;
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
    }
    // The data API's changes are the gateways'; the Admin service is the
    // admins' alone.
    EXPECT_EQ(RoleAllows(CallerRole::kGateway, m.method),
              m.service == kRegistrarService && m.changes_state ||
                  m.method == Method::kValidate)
        << m.name;
    if (m.service == kAdminService) {
      EXPECT_FALSE(RoleAllows(CallerRole::kReader, m.method)) << m.name;
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
  EXPECT_EQ(changing, (std::set<std::string_view>{
                          "Issue", "OpenContext", "Cleanup", "GrantLease",
                          "KeepAlive", "RevokeLease", "RevokeLeases"}));
}

}  // namespace
}  // namespace registrar
