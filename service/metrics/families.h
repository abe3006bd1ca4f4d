#ifndef REGISTRAR_SERVICE_METRICS_FAMILIES_H_
#define REGISTRAR_SERVICE_METRICS_FAMILIES_H_

// Small pieces every component's metrics share (header-only, so a
// component needs prometheus-cpp's core and not this library).

#include <vector>

#include "prometheus/metric_family.h"
#include "prometheus/metric_type.h"

namespace registrar {

// Upper bounds (seconds) of Registrar's own latency histograms
// (registrar_core_op_seconds, registrar_store_commit_seconds): 10us .. 1s
// in 1-2.5-5 steps.
inline const std::vector<double>& LatencyBuckets() {
  static const std::vector<double>* const kBuckets = new std::vector<double>{
      0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
      0.005,   0.01,     0.025,   0.05,   0.1,     0.25,   0.5,   1};
  return *kBuckets;
}

// A family with one unlabelled counter or gauge, for collectables that
// read their values at scrape time.
inline prometheus::MetricFamily ScalarFamily(const char* name, const char* help,
                                             prometheus::MetricType type,
                                             double value) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  f.metric.resize(1);
  if (type == prometheus::MetricType::Counter) {
    f.metric[0].counter.value = value;
  } else {
    f.metric[0].gauge.value = value;
  }
  return f;
}

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_METRICS_FAMILIES_H_
