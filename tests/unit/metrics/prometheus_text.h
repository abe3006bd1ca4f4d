#ifndef REGISTRAR_TESTS_UNIT_METRICS_PROMETHEUS_TEXT_H_
#define REGISTRAR_TESTS_UNIT_METRICS_PROMETHEUS_TEXT_H_

// A minimal reader of the Prometheus text exposition format (version 0.0.4)
// for tests: sample lines only, label order ignored. Header-only.

#include <cstdlib>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace registrar::testing {

using PromLabels = std::map<std::string, std::string>;

struct PromSample {
  std::string name;  // e.g. "grpc_server_handling_seconds_count"
  PromLabels labels;
  double value = 0;
};

// Parses every sample line of `text`; comment (# HELP, # TYPE) and blank
// lines are skipped, as are lines that do not parse.
inline std::vector<PromSample> ParsePromText(std::string_view text) {
  std::vector<PromSample> out;
  while (!text.empty()) {
    const size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    if (line.empty() || line.front() == '#') continue;

    PromSample sample;
    size_t i = line.find_first_of("{ ");
    if (i == std::string_view::npos) continue;
    sample.name = std::string(line.substr(0, i));
    bool ok = true;
    if (line[i] == '{') {
      ++i;
      while (ok && i < line.size() && line[i] != '}') {
        const size_t eq = line.find("=\"", i);
        if (eq == std::string_view::npos) {
          ok = false;
          break;
        }
        std::string name(line.substr(i, eq - i));
        std::string value;
        size_t j = eq + 2;
        for (; j < line.size() && line[j] != '"'; ++j) {
          if (line[j] == '\\' && j + 1 < line.size()) {
            ++j;
            value.push_back(line[j] == 'n' ? '\n' : line[j]);
          } else {
            value.push_back(line[j]);
          }
        }
        if (j >= line.size()) {
          ok = false;
          break;
        }
        sample.labels.emplace(std::move(name), std::move(value));
        i = j + 1;
        if (i < line.size() && line[i] == ',') ++i;
      }
      if (!ok || i >= line.size()) continue;
      ++i;  // '}'
    }
    const std::string rest(line.substr(i));
    char* end = nullptr;
    sample.value = std::strtod(rest.c_str(), &end);
    if (end == rest.c_str()) continue;
    out.push_back(std::move(sample));
  }
  return out;
}

// The value of the sample named `name` with exactly the labels `labels`, or
// nullopt if there is none.
inline std::optional<double> FindSample(const std::vector<PromSample>& samples,
                                        std::string_view name,
                                        const PromLabels& labels = {}) {
  for (const PromSample& s : samples) {
    if (s.name == name && s.labels == labels) return s.value;
  }
  return std::nullopt;
}

// Whether any sample is named `name` (whatever its labels).
inline bool HasMetric(const std::vector<PromSample>& samples,
                      std::string_view name) {
  for (const PromSample& s : samples) {
    if (s.name == name) return true;
  }
  return false;
}

}  // namespace registrar::testing

#endif  // REGISTRAR_TESTS_UNIT_METRICS_PROMETHEUS_TEXT_H_
