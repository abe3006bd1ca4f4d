#include "client/bench/backend.h"

#include <algorithm>

namespace registrar::bench {

bool ParseWorkload(const std::string& s, Workload* w) {
  if (s == "issue") {
    *w = Workload::kIssue;
  } else if (s == "issue-batch") {
    *w = Workload::kIssueBatch;
  } else if (s == "validate") {
    *w = Workload::kValidate;
  } else if (s == "cleanup") {
    *w = Workload::kCleanup;
  } else if (s == "open-context") {
    *w = Workload::kOpenContext;
  } else if (s == "lease") {
    *w = Workload::kLease;
  } else if (s == "connection") {
    *w = Workload::kConnection;
  } else if (s == "gateway") {
    *w = Workload::kGateway;
  } else {
    return false;
  }
  return true;
}

int64_t PoolSize(const BenchOptions& opts) {
  if (opts.pool > 0) return opts.pool;
  if (opts.workload == Workload::kValidate) return 100;
  const double seconds = absl::ToDoubleSeconds(opts.warmup + opts.duration);
  if (opts.children > 0) {
    // Connections, each with `children` runs.
    return opts.rate > 0 ? static_cast<int64_t>(opts.rate * seconds * 1.2) + 100
                         : 10000;
  }
  return opts.rate > 0
             ? static_cast<int64_t>(opts.rate * seconds * opts.batch * 1.2) +
                   static_cast<int64_t>(opts.owners) * opts.batch
             : 300000;
}

}  // namespace registrar::bench
