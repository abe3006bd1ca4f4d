#ifndef REGISTRAR_TESTS_CLUSTER_CLUSTER_FIXTURE_H_
#define REGISTRAR_TESTS_CLUSTER_CLUSTER_FIXTURE_H_

// The fixture of the etcd client tests: one real 3-member etcd cluster per
// test program (started once for the suite), healthy before every test,
// and connections to it.

#include <memory>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "service/etcd/connection.h"
#include "tests/cluster/etcd_cluster.h"

namespace registrar::testing {

class ClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto c = EtcdCluster::Start();
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = c->release();
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(cluster_, nullptr);
    // An earlier test may have killed and restarted a member.
    ASSERT_TRUE(cluster_->WaitHealthy(absl::Seconds(30)).ok());
  }

  // A connection to the members in this order (the first is the current
  // one); empty: every member in cluster order. nullptr on failure.
  static std::shared_ptr<etcd::Connection> Connect(
      const std::vector<int>& order = {}) {
    etcd::ConnectionOptions o;
    if (order.empty()) {
      o.endpoints = cluster_->client_endpoints();
    } else {
      for (int i : order) o.endpoints.push_back(cluster_->client_endpoint(i));
    }
    o.call_timeout = absl::Seconds(3);
    auto conn = etcd::Connection::Create(o);
    return conn.ok() ? *conn : nullptr;
  }

  static inline EtcdCluster* cluster_ = nullptr;
};

}  // namespace registrar::testing

#endif  // REGISTRAR_TESTS_CLUSTER_CLUSTER_FIXTURE_H_
