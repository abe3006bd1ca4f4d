#ifndef REGISTRAR_TESTS_INTEGRATION_METRICS_SCRAPE_H_
#define REGISTRAR_TESTS_INTEGRATION_METRICS_SCRAPE_H_

// GET /metrics of a real server started by ServerProcess, parsed.

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "tests/integration/server_process.h"
#include "tests/unit/metrics/http_get.h"
#include "tests/unit/metrics/prometheus_text.h"

namespace registrar::testing {

// The parsed exposition of `server`'s /metrics (and its raw text in `raw`);
// an error when the endpoint does not answer 200.
inline absl::StatusOr<std::vector<PromSample>> ScrapeMetrics(
    const ServerProcess& server, std::string* raw = nullptr) {
  const std::string& address = server.metrics_address();
  const size_t colon = address.rfind(':');
  int port = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port)) {
    return absl::InternalError("bad metrics address " + address);
  }
  auto response = HttpGet(address.substr(0, colon), port, "/metrics");
  if (!response.ok()) return response.status();
  if (response->status_code != 200) {
    return absl::InternalError(
        absl::StrCat("GET /metrics answered ", response->status_code));
  }
  if (raw != nullptr) *raw = response->body;
  return ParsePromText(response->body);
}

// One sample of `server`'s /metrics, or nullopt when the scrape fails or
// has no such series.
inline std::optional<double> ScrapeValue(const ServerProcess& server,
                                         const std::string& name,
                                         const PromLabels& labels = {}) {
  auto samples = ScrapeMetrics(server);
  if (!samples.ok()) return std::nullopt;
  return FindSample(*samples, name, labels);
}

}  // namespace registrar::testing

#endif  // REGISTRAR_TESTS_INTEGRATION_METRICS_SCRAPE_H_
