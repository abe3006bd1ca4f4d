#ifndef REGISTRAR_SERVICE_METRICS_BUCKETS_H_
#define REGISTRAR_SERVICE_METRICS_BUCKETS_H_

#include <vector>

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

}  // namespace registrar

#endif  // REGISTRAR_SERVICE_METRICS_BUCKETS_H_
