#include "service/metrics/metrics.h"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/registry.h"
#include "service/metrics/process_metrics.h"
#include "tests/unit/metrics/http_get.h"
#include "tests/unit/metrics/prometheus_text.h"

namespace registrar {
namespace {

using ::registrar::testing::FindSample;
using ::registrar::testing::HasMetric;
using ::registrar::testing::HttpGet;
using ::registrar::testing::ParsePromText;
using ::registrar::testing::PromSample;

std::vector<PromSample> Scrape(int port) {
  absl::StatusOr<testing::HttpResponse> response =
      HttpGet("127.0.0.1", port, "/metrics");
  EXPECT_TRUE(response.ok()) << response.status();
  if (!response.ok()) return {};
  EXPECT_EQ(response->status_code, 200);
  return ParsePromText(response->body);
}

TEST(MetricsTest, ServeOnPortZeroBindsAFreePortAndReportsIt) {
  Metrics metrics;
  EXPECT_EQ(metrics.bound_port(), 0);
  const absl::Status status = metrics.Serve("127.0.0.1:0");
  ASSERT_TRUE(status.ok()) << status;
  const int port = metrics.bound_port();
  EXPECT_GT(port, 0);
  EXPECT_LT(port, 65536);
  // The reported port is the one actually serving.
  absl::StatusOr<testing::HttpResponse> response =
      HttpGet("127.0.0.1", port, "/metrics");
  ASSERT_TRUE(response.ok()) << response.status();
  EXPECT_EQ(response->status_code, 200);
  EXPECT_NE(response->body.find("registrar_build_info"), std::string::npos);
}

TEST(MetricsTest, FamiliesOfComponentsAndCollectablesAreServed) {
  Metrics metrics;
  ASSERT_TRUE(metrics.Serve("127.0.0.1:0").ok());
  prometheus::BuildCounter()
      .Name("component_things_total")
      .Help("A component's own family.")
      .Register(metrics.registry())
      .Add({{"kind", "a"}})
      .Increment(3);
  std::vector<PromSample> s = Scrape(metrics.bound_port());
  EXPECT_EQ(FindSample(s, "component_things_total", {{"kind", "a"}}), 3);
  EXPECT_FALSE(HasMetric(s, "registrar_data_dir_size_bytes"));
  metrics.AddCollectable(
      MakeDataDirCollectable(std::filesystem::temp_directory_path().string()));
  s = Scrape(metrics.bound_port());
  EXPECT_TRUE(HasMetric(s, "registrar_data_dir_size_bytes"));
  // ExpositionText() holds the same families (the HTTP scrape adds only
  // the exposer's own exposer_* series).
  const std::vector<PromSample> text = ParsePromText(metrics.ExpositionText());
  EXPECT_EQ(FindSample(text, "component_things_total", {{"kind", "a"}}), 3);
  EXPECT_TRUE(HasMetric(text, "registrar_data_dir_size_bytes"));
}

TEST(MetricsTest, ServeReportsErrorsInsteadOfThrowing) {
  Metrics first;
  ASSERT_TRUE(first.Serve("127.0.0.1:0").ok());
  const int port = first.bound_port();

  // Serving twice on one object.
  absl::Status again = first.Serve("127.0.0.1:0");
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition) << again;
  EXPECT_EQ(first.bound_port(), port);

  // The port is taken by `first`.
  Metrics second;
  absl::Status taken = second.Serve("127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(taken.code(), absl::StatusCode::kUnavailable) << taken;
  EXPECT_EQ(second.bound_port(), 0);
  // A failed Serve leaves the object able to serve elsewhere.
  ASSERT_TRUE(second.Serve("127.0.0.1:0").ok());
  EXPECT_NE(second.bound_port(), port);

  Metrics third;
  EXPECT_EQ(third.Serve("").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(third.Serve("203.0.113.1:0").ok());  // not a local address
  EXPECT_EQ(third.bound_port(), 0);
}

TEST(MetricsTest, DestroyingMetricsStopsServing) {
  int port = 0;
  {
    Metrics metrics;
    ASSERT_TRUE(metrics.Serve("127.0.0.1:0").ok());
    port = metrics.bound_port();
    ASSERT_TRUE(HttpGet("127.0.0.1", port, "/metrics").ok());
  }
  EXPECT_FALSE(HttpGet("127.0.0.1", port, "/metrics", 1000).ok());
}

}  // namespace
}  // namespace registrar
