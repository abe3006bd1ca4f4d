#ifndef REGISTRAR_BENCH_PROGRAMS_BACKEND_H_
#define REGISTRAR_BENCH_PROGRAMS_BACKEND_H_

// What registrar-bench measures, independent of the server it talks to.
//
// The driver (driver.h) decides WHEN operations start (closed loop: a fixed
// number in flight; open loop: on a schedule) and counts what comes back. A
// Backend decides WHAT one operation is on its server: an Issue RPC on the
// registrar, a Put on etcd, a pipeline of SETs on redis. Each backend
// documents its mapping of the workloads at the top of its file:
//   backend_registrar.cc  registrar and registrar-echo (the same code path)
//   backend_etcd.cc       etcd v3 gRPC API (KV, Lease)
//   backend_redis.cc      redis through hiredis

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "bench/programs/bench_common.h"

namespace registrar::bench {

enum class Workload {
  kIssue,        // count 1
  kIssueBatch,   // count --batch
  kValidate,     // --batch items per call
  kCleanup,      // --batch IDs per call, or one connection with --children
  kOpenContext,  // thread (reused or new) + run + request
  kLease,        // lease renewal
  kConnection,   // --batch connection IDs bound to a lease
  kGateway,      // one simulated WebSocket session (see below)
};
bool ParseWorkload(const std::string& s, Workload* w);

// Every knob of a run, read from the flags once (registrar_bench.cc).
struct BenchOptions {
  std::string backend = "registrar";  // registrar | echo | etcd | redis
  std::string target = "127.0.0.1:50051";
  Workload workload = Workload::kIssue;
  std::string workload_name = "issue";
  IdKind kind = IdKind::kThread;  // issue, issue-batch
  int concurrency = 16;
  int channels = 1;
  int batch = 1;  // resolved: IDs / items / connections per operation
  int owners = 1000;
  double rate = 0;           // open loop when > 0
  int max_inflight = 20000;  // open loop: beyond it the sender waits
  absl::Duration warmup = absl::Seconds(2);
  absl::Duration duration = absl::Seconds(10);
  absl::Duration deadline = absl::Seconds(10);
  std::string tenant = "bench";
  std::string label;  // free text copied into the JSON line
  int leases = 16;
  uint32_t lease_ttl = 600;
  int pool = 0;               // 0: the workload's default (PlanSetupPools)
  double reuse = 0.9;         // open-context
  double session_reuse = 0;   // gateway (registrar)
  int children = 0;           // cleanup: children per connection (0: by IDs)
  int messages = 4;           // gateway: messages per session
  int stalled_watchers = 0;   // registrar: Watch streams that never read
  int stalled_window_kb = 0;  // their receive window (0: gRPC's default)
  // etcd
  bool etcd_serializable = false;
  int etcd_max_txn_ops = 128;
  // redis
  bool redis_pipeline = true;
  // registrar-echo: nothing (same as registrar).
};

// What setup fills for the workload (0: nothing): IDs per owner for
// validate and cleanup by IDs, connections for cleanup --children. Sized by
// opts.pool when set, else by a default for the run.
struct SetupPools {
  int64_t ids_per_owner = 0;
  int64_t connections = 0;
};
SetupPools PlanSetupPools(const BenchOptions& opts);

// The backend's words for what setup made, e.g. {"keys", "connection
// leases", "leases"}.
struct SetupNouns {
  const char* ids;
  const char* connections;
  const char* leases;
};
// Setup's line on stderr, when it made pools or leases: "setup: N pool
// <ids>[ (<connections>)], M <leases> in S s".
void PrintSetupLine(const SetupNouns& nouns, int64_t start_ns,
                    const std::vector<std::vector<std::string>>& pools,
                    size_t connections, size_t leases);

// Identifies one operation to the driver.
struct CallToken {
  int64_t start_ns = 0;  // scheduled (open loop) or actual (closed) start
  int slot = -1;         // closed loop: the slot that continues after it
};

// What one operation did.
struct CallResult {
  int code = 0;         // gRPC status code numbering, 0 = OK
  std::string message;  // when code != 0
  uint64_t items = 0;   // IDs issued / verdicts / released / renewals / RPCs
  uint64_t unexpected = 0;  // non-VALID verdicts, keys not found, ...
  uint32_t rpcs = 1;        // RPCs or round trips it took
};

class CompletionSink {
 public:
  // Called exactly once per started operation, on any thread.
  virtual void Done(const CallToken& token, CallResult result) = 0;

 protected:
  ~CompletionSink() = default;
};

class Backend {
 public:
  virtual ~Backend() = default;

  // Connects and prepares what the workload needs (leases, ID pools,
  // streams). False after printing why on stderr.
  virtual bool Setup(CompletionSink* sink) = 0;

  // Starts operation number k (its owner is k % owners). Completes through
  // sink->Done(token, ...) exactly once, possibly before returning. False
  // when the workload has nothing left to do (cleanup pool used up): then
  // Done is not called.
  virtual bool Fire(uint64_t k, const CallToken& token) = 0;

  // After the last operation completed: ends streams and threads.
  virtual void Stop() {}

  // RPCs / round trips Setup made (for client CPU per call).
  virtual uint64_t setup_calls() const = 0;
};

// registrar and registrar-echo: the registrar.v1.Registrar gRPC API.
std::unique_ptr<Backend> MakeRegistrarBackend(const BenchOptions& opts);
// etcd v3: KV and Lease over gRPC.
std::unique_ptr<Backend> MakeEtcdBackend(const BenchOptions& opts);
// redis over hiredis; null (with a message) when built without hiredis.
std::unique_ptr<Backend> MakeRedisBackend(const BenchOptions& opts);

}  // namespace registrar::bench

#endif  // REGISTRAR_BENCH_PROGRAMS_BACKEND_H_
