#include "bench/programs/backend.h"

#include <cstdio>

#include "absl/strings/str_cat.h"

namespace registrar::bench {
namespace {

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

}  // namespace

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

SetupPools PlanSetupPools(const BenchOptions& opts) {
  SetupPools pools;
  const int64_t size = PoolSize(opts);
  if (opts.workload == Workload::kValidate) {
    pools.ids_per_owner = size;
  } else if (opts.workload == Workload::kCleanup && opts.children > 0) {
    pools.connections = size;
  } else if (opts.workload == Workload::kCleanup) {
    // Spread over the owners, in whole calls of --batch.
    const int64_t per_owner = (size + opts.owners - 1) / opts.owners;
    pools.ids_per_owner =
        (per_owner + opts.batch - 1) / opts.batch * opts.batch;
  }
  return pools;
}

void PrintSetupLine(const SetupNouns& nouns, int64_t start_ns,
                    const std::vector<std::vector<std::string>>& pools,
                    size_t connections, size_t leases) {
  size_t pooled = connections;
  for (const auto& ids : pools) pooled += ids.size();
  if (pooled == 0 && leases == 0) return;
  const std::string what =
      connections == 0 ? nouns.ids
                       : absl::StrCat(nouns.ids, " (", nouns.connections, ")");
  std::fprintf(stderr, "setup: %zu pool %s, %zu %s in %.1f s\n", pooled,
               what.c_str(), leases, nouns.leases,
               static_cast<double>(NowNs() - start_ns) / 1e9);
}

}  // namespace registrar::bench
