// registrar-bench: a load generator for registrar and for the baselines it
// is compared with, all through the same driver (driver.h: closed loop, or
// open loop at a fixed rate without coordinated omission):
//   --backend=registrar  a running registrar (backend_registrar.cc)
//   --backend=echo       registrar-echo, the same gRPC API answering at once
//                        (echo_server.cc), with the registrar's client code
//   --backend=etcd       etcd v3 over its gRPC API (backend_etcd.cc)
//   --backend=redis      redis-server through hiredis (backend_redis.cc)
// Workloads: issue, issue-batch, validate, cleanup, open-context, lease,
// connection, gateway; what each is on each backend is written at the top
// of that backend's file.
//
// Output: a human-readable summary (calls/s, items/s, p50/p90/p99/p99.9,
// errors by status code), then ONE JSON line for scripts.

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "bench/programs/backend.h"
#include "bench/programs/driver.h"
#include "bench/programs/grpc_unary.h"

ABSL_FLAG(std::string, backend, "registrar", "registrar | echo | etcd | redis");
ABSL_FLAG(std::string, target, "127.0.0.1:50051",
          "Server address host:port (registrar, registrar-echo, etcd client "
          "URL without http://, or redis). gRPC backends take several, "
          "comma-separated: channel i goes to the (i mod n)-th, so "
          "--channels=n spreads calls round-robin over them");
ABSL_FLAG(std::string, workload, "issue",
          "issue | issue-batch | validate | cleanup | open-context | lease | "
          "connection | gateway");
ABSL_FLAG(int, concurrency, 16,
          "Operations in flight (closed loop). With --rate: the setup slots "
          "(gRPC backends; in-flight calls are bounded by --max_inflight) or "
          "the connections (redis)");
ABSL_FLAG(int, channels, 1,
          "gRPC channels (each its own TCP connection); calls are spread "
          "round-robin. Redis: one connection per --concurrency instead");
ABSL_FLAG(int, batch, 0,
          "IDs per Issue for issue-batch (default 100), items per Validate "
          "(default 10), IDs per Cleanup (default 1), connections per "
          "connection call (default 1)");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(10), "Measured time");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(2),
          "Time before the measurement window (calls not counted)");
ABSL_FLAG(int, owners, 1000, "Distinct owners the calls spread over");
ABSL_FLAG(double, rate, 0,
          "Open loop: operations per second on a fixed schedule, latency "
          "from the scheduled time. 0 = closed loop (--concurrency in "
          "flight)");
ABSL_FLAG(int, max_inflight, 20000,
          "Open loop: most calls in flight; beyond it the sender waits (the "
          "wait still counts in latency)");
ABSL_FLAG(std::string, kind, "thread",
          "Kind for issue / issue-batch: thread, run, request, connection");
ABSL_FLAG(std::string, tenant, "bench", "Tenant of every owner");
ABSL_FLAG(int, leases, 16,
          "Leases granted at setup (lease, connection, gateway: the gateway "
          "instances' leases)");
ABSL_FLAG(uint32_t, lease_ttl, 600,
          "TTL of leases (and of redis keys), seconds");
ABSL_FLAG(int, pool, 0,
          "validate: IDs per owner in the pool (default 100); cleanup: IDs "
          "in all (default: enough for the run at --rate, else 300000), or "
          "with --children connections in all (default 10000)");
ABSL_FLAG(int, children, 0,
          "cleanup: release connections by connection_id, each opened at "
          "setup with this many runs through it (0: release IDs)");
ABSL_FLAG(double, reuse, 0.9,
          "open-context: fraction of calls that name the owner's last thread");
ABSL_FLAG(double, session_reuse, 0,
          "gateway (registrar backend): fraction of sessions whose first "
          "message names the owner's last thread (a returning user); at 1 "
          "the threads stay one per owner, so the live records level off");
ABSL_FLAG(int, messages, 4,
          "gateway: user messages per session (OpenContext + Validate each)");
ABSL_FLAG(int, stalled_watchers, 0,
          "registrar: Watch streams opened at setup (from the newest "
          "revision, each on its own connection) that never read: what a "
          "stalled watcher costs the measured calls");
ABSL_FLAG(int, stalled_window_kb, 0,
          "--stalled_watchers: their HTTP/2 receive window in KiB, without "
          "BDP probing (0: gRPC's default, which grows to megabytes before "
          "a watcher that does not read is really stalled)");
ABSL_FLAG(absl::Duration, deadline, absl::Seconds(10), "Per-call deadline");
ABSL_FLAG(std::string, label, "", "Free text copied into the JSON line");
ABSL_FLAG(bool, etcd_serializable, false,
          "etcd: serializable (member-local) reads instead of etcd's "
          "default linearizable ones");
ABSL_FLAG(int, etcd_max_txn_ops, 128,
          "etcd: most operations per Txn (etcd's --max-txn-ops; setup pools "
          "are written in Txns of this size)");
ABSL_FLAG(bool, redis_pipeline, true,
          "redis: send the commands of one operation in one round trip");

namespace registrar::bench {
namespace {

bool ReadOptions(BenchOptions* o) {
  o->backend = absl::GetFlag(FLAGS_backend);
  if (o->backend != "registrar" && o->backend != "echo" &&
      o->backend != "etcd" && o->backend != "redis") {
    std::fprintf(stderr, "unknown --backend=%s\n", o->backend.c_str());
    return false;
  }
  o->target = absl::GetFlag(FLAGS_target);
  o->workload_name = absl::GetFlag(FLAGS_workload);
  if (!ParseWorkload(o->workload_name, &o->workload)) {
    std::fprintf(stderr, "unknown --workload=%s\n", o->workload_name.c_str());
    return false;
  }
  if (!ParseIdKind(absl::GetFlag(FLAGS_kind), &o->kind)) {
    std::fprintf(stderr, "unknown --kind=%s\n",
                 absl::GetFlag(FLAGS_kind).c_str());
    return false;
  }
  o->concurrency = std::max(1, absl::GetFlag(FLAGS_concurrency));
  o->channels = std::max(1, absl::GetFlag(FLAGS_channels));
  o->owners = std::max(1, absl::GetFlag(FLAGS_owners));
  o->rate = absl::GetFlag(FLAGS_rate);
  o->max_inflight = std::max(1, absl::GetFlag(FLAGS_max_inflight));
  o->duration = absl::GetFlag(FLAGS_duration);
  o->warmup = absl::GetFlag(FLAGS_warmup);
  o->deadline = absl::GetFlag(FLAGS_deadline);
  o->tenant = absl::GetFlag(FLAGS_tenant);
  o->label = absl::GetFlag(FLAGS_label);
  o->leases = std::max(1, absl::GetFlag(FLAGS_leases));
  o->lease_ttl = absl::GetFlag(FLAGS_lease_ttl);
  o->pool = absl::GetFlag(FLAGS_pool);
  o->children = std::max(0, absl::GetFlag(FLAGS_children));
  o->reuse = absl::GetFlag(FLAGS_reuse);
  o->session_reuse = absl::GetFlag(FLAGS_session_reuse);
  o->messages = std::max(1, absl::GetFlag(FLAGS_messages));
  o->stalled_watchers = std::max(0, absl::GetFlag(FLAGS_stalled_watchers));
  o->stalled_window_kb = std::max(0, absl::GetFlag(FLAGS_stalled_window_kb));
  o->etcd_serializable = absl::GetFlag(FLAGS_etcd_serializable);
  o->etcd_max_txn_ops = std::max(1, absl::GetFlag(FLAGS_etcd_max_txn_ops));
  o->redis_pipeline = absl::GetFlag(FLAGS_redis_pipeline);
  o->batch = absl::GetFlag(FLAGS_batch);
  if (o->batch <= 0) {
    o->batch = o->workload == Workload::kIssueBatch ? 100
               : o->workload == Workload::kValidate ? 10
                                                    : 1;
  }
  if (o->workload == Workload::kIssue || o->workload == Workload::kLease ||
      o->workload == Workload::kOpenContext ||
      o->workload == Workload::kGateway ||
      (o->workload == Workload::kCleanup && o->children > 0)) {
    o->batch = 1;
  }
  if (o->workload == Workload::kConnection) o->kind = IdKind::kConnection;
  return true;
}

std::unique_ptr<Backend> MakeBackend(const BenchOptions& o) {
  if (o.backend == "etcd") return MakeEtcdBackend(o);
  if (o.backend == "redis") return MakeRedisBackend(o);
  return MakeRegistrarBackend(o);  // registrar, echo
}

}  // namespace
}  // namespace registrar::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "registrar-bench: load generator for registrar and its baselines "
      "(registrar-echo, etcd, redis). Prints calls/s, items/s, latency "
      "percentiles, errors by code, then one JSON line.");
  absl::ParseCommandLine(argc, argv);
  registrar::bench::BenchOptions opts;
  if (!registrar::bench::ReadOptions(&opts)) return 2;
  std::unique_ptr<registrar::bench::Backend> backend =
      registrar::bench::MakeBackend(opts);
  if (backend == nullptr) return 2;
  auto driver = std::make_unique<registrar::bench::Driver>(opts, backend.get());
  if (!backend->Setup(driver.get())) return 2;
  driver->Run();
  backend->Stop();
  // Before the backend's channels go (see WaitForUnaryRpcs).
  registrar::bench::WaitForUnaryRpcs();
  driver->Report();
  return 0;
}
