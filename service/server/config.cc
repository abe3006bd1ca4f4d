#include "service/server/config.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "service/api/status_conversion.h"
#include "service/common/absl_compat.h"
#include "service/common/field_error.h"
#include "service/id/id.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "gRPC listen address (host:port; port 0 picks a free port)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9464",
          "Prometheus /metrics listen address (host:port)");
ABSL_FLAG(std::string, health_listen, "",
          "Also serve grpc.health.v1 (and nothing else) in PLAINTEXT on this "
          "host:port, e.g. for Kubernetes gRPC probes while --listen uses "
          "TLS; any address is allowed, since it answers only health checks");
ABSL_FLAG(std::string, port_file, "",
          "If set, write the bound addresses here once serving "
          "(grpc=host:port and metrics=host:port lines)");
ABSL_FLAG(std::string, key_file, "",
          "Tag key file: '<version> <32 hex>' lines or one bare 32-hex line. "
          "Without it REGISTRAR_KEY is used, else a key is generated");
ABSL_FLAG(uint32_t, node_id, 0,
          "Node id written into every ID, unique per running instance "
          "(0..16383)");
ABSL_FLAG(uint32_t, shards, 32,
          "Registry shards (lock stripes, by owner); commits of different "
          "shards proceed in parallel and share fsyncs");
ABSL_FLAG(uint32_t, max_batch, 1000,
          "Most IDs per Issue, items per Validate, ids per Cleanup");
ABSL_FLAG(uint64_t, owner_quota, 100000, "Most live records per owner");
ABSL_FLAG(absl::Duration, tombstone_retention, absl::Hours(1),
          "How long ended records are kept so Validate says RELEASED/EXPIRED");
ABSL_FLAG(uint64_t, owner_tombstones, 100000,
          "Most ended records kept per owner; past it the owner's oldest are "
          "dropped before --tombstone_retention ends (0: no bound)");
ABSL_FLAG(uint32_t, min_lease_ttl, 1, "Shortest lease TTL, seconds");
ABSL_FLAG(uint32_t, max_lease_ttl, 86400, "Longest lease TTL, seconds");
ABSL_FLAG(uint32_t, default_page_size, 100, "ListOwned page size when unset");
ABSL_FLAG(uint32_t, max_page_size, 1000,
          "Largest ListOwned page; larger requests are clamped");
ABSL_FLAG(uint32_t, max_string_bytes, 256,
          "Longest tenant, user_id, holder, reason or label value, bytes");
ABSL_FLAG(uint32_t, max_labels, 32, "Most labels per request");
ABSL_FLAG(uint32_t, max_label_key_bytes, 64, "Longest label key, bytes");
ABSL_FLAG(uint32_t, max_message_bytes, 4 << 20,
          "Largest request message, bytes");
ABSL_FLAG(absl::Duration, tick_interval, absl::Milliseconds(100),
          "How often leases are expired and tombstones dropped");
ABSL_FLAG(absl::Duration, shutdown_drain, absl::Seconds(1),
          "On SIGTERM: time spent reporting NOT_SERVING while still answering, "
          "so load balancers move away first");
ABSL_FLAG(absl::Duration, shutdown_timeout, absl::Seconds(10),
          "On SIGTERM: how long in-flight calls may take to finish");
ABSL_FLAG(std::string, log_level, "info",
          "trace, debug, info, warn, error, critical or off");
ABSL_FLAG(std::string, log_format, "text",
          "text: [time] [level] message; json: one JSON object per line "
          "with ts, level and msg");
ABSL_FLAG(absl::Duration, log_repeat_interval, absl::Seconds(10),
          "A warning that can repeat (store write failures, a full disk) is "
          "written at most once per this interval, saying how many were "
          "left out");
ABSL_FLAG(std::string, access_log, "",
          "Write one line per call (method, caller, tenant, peer, status "
          "code, duration, the caller's traceparent and x-request-id) to "
          "this file, or to stderr with \"stderr\"; empty: no access log");
ABSL_FLAG(double, access_log_sample, 1.0,
          "Fraction of calls written to --access_log (0..1)");
ABSL_FLAG(std::string, store, "rocksdb",
          "Storage: rocksdb (durable, in --data_dir), etcd (durable, in the "
          "etcd cluster at --etcd_endpoints) or memory (nothing is "
          "kept across restarts)");
ABSL_FLAG(std::string, etcd_endpoints, "",
          "--store=etcd: the etcd members, comma-separated host:port (or "
          "http:// / https:// URLs)");
ABSL_FLAG(std::string, etcd_prefix, "/registrar",
          "--store=etcd: every key of this Registrar cluster starts with it");
ABSL_FLAG(std::string, etcd_ca_file, "",
          "--store=etcd: PEM CA that signs etcd's server certificates (TLS "
          "towards etcd; empty with https:// endpoints: the system roots)");
ABSL_FLAG(std::string, etcd_cert_file, "",
          "--store=etcd: PEM client certificate for etcd's "
          "--client-cert-auth (mTLS), with --etcd_key_file");
ABSL_FLAG(std::string, etcd_key_file, "",
          "--store=etcd: PEM private key of --etcd_cert_file");
ABSL_FLAG(int64_t, etcd_max_txn_ops, 128,
          "--store=etcd: etcd's --max-txn-ops (etcd cannot be asked); the "
          "largest batch (e.g. a lease end) must fit one transaction");
ABSL_FLAG(int64_t, etcd_max_request_bytes, 1536 * 1024,
          "--store=etcd: etcd's --max-request-bytes");
ABSL_FLAG(absl::Duration, etcd_commit_linger, absl::Milliseconds(5),
          "--store=etcd: a busy writer (its last etcd Txn carried several "
          "changes) waits up to this long for more before the next Txn, "
          "while they keep coming; fewer, larger Txns cost etcd less per "
          "record. 0 sends at once; at most 1s");
ABSL_FLAG(absl::Duration, etcd_txn_attempt_timeout, absl::Seconds(1),
          "--store=etcd: how long an etcd Txn may go unanswered before the "
          "writer asks etcd whether it applied and, if not, sends it again "
          "(a proposal a dying etcd leader dropped is otherwise answered "
          "only after etcd's request timeout, 7 s); a follower's read "
          "probe (the linearizable read of the cluster's revision) is "
          "likewise asked again of another member; about etcd's "
          "--election-timeout; 100ms..10s");
ABSL_FLAG(absl::Duration, etcd_node_ttl, absl::Seconds(10),
          "--store=etcd: TTL of the etcd lease under which this replica "
          "holds its node id (whole seconds)");
ABSL_FLAG(std::string, advertise_address, "",
          "--store=etcd: host:port at which the other replicas reach this "
          "one's --listen (changes are forwarded to the elected writer "
          "there); default: the listen address, required when that is "
          "0.0.0.0 or [::]");
ABSL_FLAG(std::string, cluster_tls_ca, "",
          "--store=etcd with TLS: PEM CA bundle the writer's certificate "
          "must chain to when a follower forwards a change (default: the "
          "system's roots)");
ABSL_FLAG(std::string, cluster_tls_server_name, "",
          "--store=etcd with TLS: the name checked against the writer's "
          "certificate when forwarding, instead of its --advertise_address "
          "(e.g. the headless Service's name, which the shared certificate "
          "names)");
ABSL_FLAG(absl::Duration, follower_max_lag, absl::Seconds(10),
          "--store=etcd: a follower that has not applied what etcd holds for "
          "this long reports NOT_SERVING");
ABSL_FLAG(std::string, data_dir, "./registrar-data",
          "Data directory of the rocksdb store");
ABSL_FLAG(std::string, durability, "fsync",
          "fsync: acknowledged after the WAL is fsynced (survives power loss); "
          "os: after the WAL write (survives a process crash); none: no WAL");
ABSL_FLAG(int32_t, commit_thread_nice, -5,
          "Nice value of the group-commit thread (--store=rocksdb, "
          "--durability fsync or os), -20..19; 0 leaves it. Below the gRPC "
          "threads' 0, the threads its replies wake do not preempt it "
          "between two replies. Lowering it needs CAP_SYS_NICE or "
          "RLIMIT_NICE (systemd: LimitNICE=); without either it stays as "
          "the process's and the server says so at start");
ABSL_FLAG(std::string, restore_from, "",
          "Before starting, copy this backup (a directory written by a "
          "backup, or a stopped server's data dir) into --data_dir, which "
          "must be missing or empty; refused otherwise. Command line only");
ABSL_FLAG(bool, accept_data_loss, false,
          "Start on a damaged data dir (a WAL or MANIFEST that lost "
          "acknowledged changes), which is otherwise refused: keep a copy of "
          "the damaged files in <data_dir>/damaged-<ms>/, serve what is "
          "left, and log what was lost. For an operator who accepts the "
          "loss; command line only (no environment variable), for one start");
ABSL_FLAG(uint64_t, event_history, 1000000,
          "Watch events kept for resuming watchers; older ones are compacted");
ABSL_FLAG(absl::Duration, clock_window, absl::Seconds(3),
          "How far ahead of use the ID clock's high-water mark is persisted");
ABSL_FLAG(uint32_t, max_watchers, 1000,
          "Most concurrent Watch streams; more are refused with "
          "RESOURCE_EXHAUSTED (0 refuses every Watch)");
ABSL_FLAG(uint32_t, max_watchers_per_tenant, 250,
          "Most concurrent Watch streams of one tenant (all-tenant streams "
          "count as one tenant); more are refused with RESOURCE_EXHAUSTED "
          "(0: only --max_watchers bounds them)");
ABSL_FLAG(uint32_t, max_watchers_per_caller, 250,
          "Most concurrent Watch streams of one caller (its name, or its "
          "address without a callers file); more are refused with "
          "RESOURCE_EXHAUSTED (0: only --max_watchers bounds them)");
ABSL_FLAG(uint64_t, watch_max_lag, 100000,
          "Revisions a Watch stream may fall behind before it is ended with "
          "RESOURCE_EXHAUSTED (it may resume where it stopped)");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain to serve TLS with (with --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle: require client certificates signed by it (mTLS)");
ABSL_FLAG(absl::Duration, tls_reload_interval, absl::Seconds(10),
          "How often the TLS files are re-read; new certificates apply to new "
          "connections without dropping open ones");
ABSL_FLAG(bool, allow_insecure, false,
          "Serve plaintext on a non-loopback --listen address (only behind a "
          "trusted network layer)");
ABSL_FLAG(std::string, callers_file, "",
          "JSON callers file (roles, tenants, token hashes, certificate "
          "identities); enables authentication. Re-read on SIGHUP and when "
          "it changes");
ABSL_FLAG(double, caller_rate, 0,
          "Calls per second each caller may make (0: unlimited); excess gets "
          "RESOURCE_EXHAUSTED with a retry delay");
ABSL_FLAG(double, caller_burst, 0,
          "Calls a caller may make at once above --caller_rate (0: one "
          "second's worth)");
ABSL_FLAG(uint32_t, max_in_flight, 4096,
          "Calls handled at once; beyond it RESOURCE_EXHAUSTED with a retry "
          "delay (0: unbounded)");
ABSL_FLAG(absl::Duration, call_timeout, absl::Seconds(30),
          "Longest a call may wait for its work to start (e.g. queued behind "
          "fsyncs); past it, or past the client's deadline, it ends "
          "DEADLINE_EXCEEDED having done nothing");
ABSL_FLAG(uint32_t, max_concurrent_streams, 1000,
          "HTTP/2 streams one connection may have open");
ABSL_FLAG(absl::Duration, min_ping_interval, absl::Seconds(10),
          "Shortest keepalive ping interval a client may use; faster pingers "
          "are disconnected");
ABSL_FLAG(absl::Duration, max_connection_idle, absl::Minutes(30),
          "Idle connections are closed after this (0: never)");
ABSL_FLAG(uint64_t, grpc_memory_limit, uint64_t{1} << 30,
          "Bytes gRPC may buffer for all connections (resource quota); past "
          "it, reading from peers pauses");
ABSL_FLAG(absl::Duration, clock_offset, absl::ZeroDuration(),
          "Testing only: shift the server's wall clock by this much");

namespace registrar {
namespace {

// Flags that may come from REGISTRAR_<NAME> environment variables.
const std::vector<std::string>& EnvFlagNames() {
  static const auto* names =
      new std::vector<std::string>{"listen",
                                   "metrics_listen",
                                   "health_listen",
                                   "port_file",
                                   "key_file",
                                   "node_id",
                                   "shards",
                                   "max_batch",
                                   "owner_quota",
                                   "tombstone_retention",
                                   "owner_tombstones",
                                   "min_lease_ttl",
                                   "max_lease_ttl",
                                   "default_page_size",
                                   "max_page_size",
                                   "max_string_bytes",
                                   "max_labels",
                                   "max_label_key_bytes",
                                   "max_message_bytes",
                                   "tick_interval",
                                   "shutdown_drain",
                                   "shutdown_timeout",
                                   "log_level",
                                   "log_format",
                                   "log_repeat_interval",
                                   "access_log",
                                   "access_log_sample",
                                   "max_watchers",
                                   "max_watchers_per_tenant",
                                   "max_watchers_per_caller",
                                   "watch_max_lag",
                                   "clock_offset",
                                   "store",
                                   "data_dir",
                                   "etcd_endpoints",
                                   "etcd_prefix",
                                   "etcd_ca_file",
                                   "etcd_cert_file",
                                   "etcd_key_file",
                                   "etcd_max_txn_ops",
                                   "etcd_max_request_bytes",
                                   "etcd_node_ttl",
                                   "etcd_commit_linger",
                                   "etcd_txn_attempt_timeout",
                                   "advertise_address",
                                   "follower_max_lag",
                                   "cluster_tls_ca",
                                   "cluster_tls_server_name",
                                   "durability",
                                   "commit_thread_nice",
                                   "event_history",
                                   "clock_window",
                                   "tls_cert",
                                   "tls_key",
                                   "tls_client_ca",
                                   "tls_reload_interval",
                                   "allow_insecure",
                                   "callers_file",
                                   "caller_rate",
                                   "caller_burst",
                                   "max_in_flight",
                                   "call_timeout",
                                   "max_concurrent_streams",
                                   "min_ping_interval",
                                   "max_connection_idle",
                                   "grpc_memory_limit"};
  return *names;
}

std::string EnvName(const std::string& flag) {
  return absl::StrCat("REGISTRAR_", absl::AsciiStrToUpper(flag));
}

absl::Status ApplyEnvironment() {
  for (const std::string& name : EnvFlagNames()) {
    const std::string env = EnvName(name);
    const char* value = std::getenv(env.c_str());
    if (value == nullptr) continue;
    absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    std::string error;
    if (flag == nullptr || !flag->ParseFrom(value, &error)) {
      return absl::InvalidArgumentError(
          absl::StrCat(env, "=", value, ": ", error));
    }
  }
  return absl::OkStatus();
}

absl::Status NonZero(const char* flag, uint64_t value) {
  if (value == 0) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, " must be > 0"));
  }
  return absl::OkStatus();
}

// --store=etcd: the --etcd_* flags into c->etcd.
// True when --node_id (or REGISTRAR_NODE_ID) was given at all.
bool NodeIdGiven(int argc, char** argv) {
  if (std::getenv("REGISTRAR_NODE_ID") != nullptr) return true;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (!absl::ConsumePrefix(&arg, "--")) absl::ConsumePrefix(&arg, "-");
    if (arg == "node_id" || absl::StartsWith(arg, "node_id=")) return true;
  }
  return false;
}

absl::Status EtcdConfig(int argc, char** argv, ServerConfig* c) {
  if (NodeIdGiven(argc, argv)) {
    return absl::InvalidArgumentError(
        "--node_id is for the single-node stores: with --store=etcd each "
        "replica claims a free node id in etcd");
  }
  etcd::EtcdBackendOptions& e = c->etcd;
  for (absl::string_view endpoint : absl::StrSplit(
           absl::GetFlag(FLAGS_etcd_endpoints), ',', absl::SkipWhitespace())) {
    e.connection.endpoints.emplace_back(absl::StripAsciiWhitespace(endpoint));
  }
  if (e.connection.endpoints.empty()) {
    return absl::InvalidArgumentError(
        "--store=etcd needs --etcd_endpoints (comma-separated host:port)");
  }
  const std::string ca = absl::GetFlag(FLAGS_etcd_ca_file);
  const std::string cert = absl::GetFlag(FLAGS_etcd_cert_file);
  const std::string key = absl::GetFlag(FLAGS_etcd_key_file);
  if (cert.empty() != key.empty()) {
    return absl::InvalidArgumentError(
        "--etcd_cert_file and --etcd_key_file go together");
  }
  if (!ca.empty() || !cert.empty()) {
    e.connection.tls = etcd::TlsOptions{
        .ca_file = ca, .cert_file = cert, .key_file = key, .server_name = ""};
  }
  e.store.prefix = absl::GetFlag(FLAGS_etcd_prefix);
  if (e.store.prefix.empty() || e.store.prefix.front() != '/' ||
      e.store.prefix.back() == '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "--etcd_prefix must start with '/' and not end with it, got \"",
        e.store.prefix, "\""));
  }
  e.store.max_txn_ops = absl::GetFlag(FLAGS_etcd_max_txn_ops);
  if (e.store.max_txn_ops < 4) {
    return absl::InvalidArgumentError("--etcd_max_txn_ops must be >= 4");
  }
  e.store.max_request_bytes = absl::GetFlag(FLAGS_etcd_max_request_bytes);
  if (e.store.max_request_bytes < 4096) {
    return absl::InvalidArgumentError(
        "--etcd_max_request_bytes must be >= 4096");
  }
  e.store.commit_linger = absl::GetFlag(FLAGS_etcd_commit_linger);
  if (e.store.commit_linger < absl::ZeroDuration() ||
      e.store.commit_linger > absl::Seconds(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--etcd_commit_linger must be within 0 and 1s, got ",
                     absl::FormatDuration(e.store.commit_linger)));
  }
  e.store.txn_attempt_timeout = absl::GetFlag(FLAGS_etcd_txn_attempt_timeout);
  if (e.store.txn_attempt_timeout < absl::Milliseconds(100) ||
      e.store.txn_attempt_timeout > e.store.commit_timeout) {
    return absl::InvalidArgumentError(
        absl::StrCat("--etcd_txn_attempt_timeout must be within 100ms and ",
                     absl::FormatDuration(e.store.commit_timeout), ", got ",
                     absl::FormatDuration(e.store.txn_attempt_timeout)));
  }
  c->advertise_address = absl::GetFlag(FLAGS_advertise_address);
  if (c->advertise_address.empty()) {
    const std::string listen = absl::GetFlag(FLAGS_listen);
    if (absl::StartsWith(listen, "0.0.0.0:") ||
        absl::StartsWith(listen, "[::]:")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--store=etcd with --listen=", listen,
          " needs --advertise_address (host:port at which the other "
          "replicas reach this one)"));
    }
  } else if (c->advertise_address.rfind(':') == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("--advertise_address must be host:port, got \"",
                     c->advertise_address, "\""));
  }
  c->follower_max_lag = absl::GetFlag(FLAGS_follower_max_lag);
  if (c->follower_max_lag <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--follower_max_lag must be > 0");
  }
  e.claim_ttl = absl::GetFlag(FLAGS_etcd_node_ttl);
  if (e.claim_ttl < absl::Seconds(2) ||
      e.claim_ttl != absl::Trunc(e.claim_ttl, absl::Seconds(1))) {
    return absl::InvalidArgumentError(
        "--etcd_node_ttl must be whole seconds, at least 2s");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ServerConfig> ConfigFromFlags(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "issues thread/run/request/connection IDs, records their "
      "owners, validates and releases them.\nEvery flag may also be set as "
      "REGISTRAR_<FLAG> in the environment; the command line wins.");
  // --help and --helpshort list the flags defined in this file (by default
  // abseil lists only those of a file named after the program, i.e. none).
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::EndsWith(file, "service/server/config.cc");
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  usage.normalize_filename = [](absl::string_view file) {
    const size_t pos = file.rfind("service/server/");
    return std::string(pos == absl::string_view::npos ? file
                                                      : file.substr(pos));
  };
  absl::SetFlagsUsageConfig(usage);
  if (absl::Status s = ApplyEnvironment(); !s.ok()) return s;
  absl::ParseCommandLine(argc, argv);

  ServerConfig c;
  c.listen = absl::GetFlag(FLAGS_listen);
  c.metrics_listen = absl::GetFlag(FLAGS_metrics_listen);
  c.health_listen = absl::GetFlag(FLAGS_health_listen);
  c.port_file = absl::GetFlag(FLAGS_port_file);
  c.key_file = absl::GetFlag(FLAGS_key_file);
  if (const char* key = std::getenv("REGISTRAR_KEY")) c.key_text = key;
  c.node_id = absl::GetFlag(FLAGS_node_id);
  if (c.node_id > kMaxNodeId) {
    return absl::InvalidArgumentError(
        absl::StrCat("--node_id must be 0..", kMaxNodeId, ", got ", c.node_id));
  }
  c.max_message_bytes = absl::GetFlag(FLAGS_max_message_bytes);
  c.tick_interval = absl::GetFlag(FLAGS_tick_interval);
  c.shutdown_drain = absl::GetFlag(FLAGS_shutdown_drain);
  c.shutdown_timeout = absl::GetFlag(FLAGS_shutdown_timeout);
  c.clock_offset = absl::GetFlag(FLAGS_clock_offset);
  c.store = absl::GetFlag(FLAGS_store);
  if (c.store != "rocksdb" && c.store != "memory" && c.store != "etcd") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--store must be rocksdb, memory or etcd, got \"", c.store, "\""));
  }
  if (c.store == "etcd") {
    if (absl::Status s = EtcdConfig(argc, argv, &c); !s.ok()) return s;
  }
  c.data_dir = absl::GetFlag(FLAGS_data_dir);
  absl::StatusOr<Durability> durability =
      ParseDurability(absl::GetFlag(FLAGS_durability));
  if (!durability.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", durability.status().message()));
  }
  c.durability = *durability;
  c.commit_thread_nice = absl::GetFlag(FLAGS_commit_thread_nice);
  if (c.commit_thread_nice < -20 || c.commit_thread_nice > 19) {
    return absl::InvalidArgumentError(
        absl::StrCat("--commit_thread_nice must be within -20 and 19, got ",
                     c.commit_thread_nice));
  }
  c.accept_data_loss = absl::GetFlag(FLAGS_accept_data_loss);
  c.restore_from = absl::GetFlag(FLAGS_restore_from);
  if (!c.restore_from.empty() && c.store != "rocksdb") {
    return absl::InvalidArgumentError("--restore_from needs --store=rocksdb");
  }
  if (c.tick_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--tick_interval must be > 0");
  }

  RegistryOptions& r = c.registry;
  r.shards = absl::GetFlag(FLAGS_shards);
  r.max_batch = absl::GetFlag(FLAGS_max_batch);
  r.owner_quota = absl::GetFlag(FLAGS_owner_quota);
  r.tombstone_retention = absl::GetFlag(FLAGS_tombstone_retention);
  r.owner_tombstones = absl::GetFlag(FLAGS_owner_tombstones);
  r.min_lease_ttl = absl::Seconds(absl::GetFlag(FLAGS_min_lease_ttl));
  r.max_lease_ttl = absl::Seconds(absl::GetFlag(FLAGS_max_lease_ttl));
  r.default_page_size = absl::GetFlag(FLAGS_default_page_size);
  r.max_page_size = absl::GetFlag(FLAGS_max_page_size);
  r.event_history = absl::GetFlag(FLAGS_event_history);
  r.clock_window = absl::GetFlag(FLAGS_clock_window);
  if (r.clock_window < absl::Milliseconds(10)) {
    return absl::InvalidArgumentError("--clock_window must be >= 10ms");
  }
  for (auto [flag, value] :
       {std::pair<const char*, uint64_t>{"shards", r.shards},
        {"max_batch", r.max_batch},
        {"owner_quota", r.owner_quota},
        {"min_lease_ttl", absl::GetFlag(FLAGS_min_lease_ttl)},
        {"default_page_size", r.default_page_size},
        {"max_page_size", r.max_page_size},
        {"max_message_bytes", c.max_message_bytes}}) {
    if (absl::Status s = NonZero(flag, value); !s.ok()) return s;
  }
  if (r.max_lease_ttl < r.min_lease_ttl) {
    return absl::InvalidArgumentError(
        "--max_lease_ttl must be >= --min_lease_ttl");
  }
  if (r.tombstone_retention < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--tombstone_retention must be >= 0");
  }

  c.watch.max_watchers = absl::GetFlag(FLAGS_max_watchers);
  c.watch.max_watchers_per_tenant =
      absl::GetFlag(FLAGS_max_watchers_per_tenant);
  c.watch.max_watchers_per_caller =
      absl::GetFlag(FLAGS_max_watchers_per_caller);
  c.watch.max_lag = absl::GetFlag(FLAGS_watch_max_lag);
  if (c.watch.max_lag == 0) {
    return absl::InvalidArgumentError("--watch_max_lag must be > 0");
  }

  ApiLimits& l = c.limits;
  l.max_batch = r.max_batch;
  l.max_string_bytes = absl::GetFlag(FLAGS_max_string_bytes);
  l.max_labels = absl::GetFlag(FLAGS_max_labels);
  l.max_label_key_bytes = absl::GetFlag(FLAGS_max_label_key_bytes);
  l.max_in_flight = absl::GetFlag(FLAGS_max_in_flight);
  l.call_timeout = absl::GetFlag(FLAGS_call_timeout);
  if (l.call_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--call_timeout must be > 0");
  }

  TransportConfig& t = c.transport;
  t.tls_cert = absl::GetFlag(FLAGS_tls_cert);
  t.tls_key = absl::GetFlag(FLAGS_tls_key);
  t.tls_client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  t.tls_reload_interval = absl::GetFlag(FLAGS_tls_reload_interval);
  t.allow_insecure = absl::GetFlag(FLAGS_allow_insecure);
  t.max_concurrent_streams = absl::GetFlag(FLAGS_max_concurrent_streams);
  t.min_ping_interval = absl::GetFlag(FLAGS_min_ping_interval);
  t.max_connection_idle = absl::GetFlag(FLAGS_max_connection_idle);
  t.memory_limit_bytes = absl::GetFlag(FLAGS_grpc_memory_limit);
  if (absl::Status s = CheckTransport(t, c.listen); !s.ok()) return s;
  c.cluster_tls_ca = absl::GetFlag(FLAGS_cluster_tls_ca);
  c.cluster_tls_server_name = absl::GetFlag(FLAGS_cluster_tls_server_name);
  if ((!c.cluster_tls_ca.empty() || !c.cluster_tls_server_name.empty()) &&
      !t.tls()) {
    return absl::InvalidArgumentError(
        "--cluster_tls_ca and --cluster_tls_server_name need TLS "
        "(--tls_cert, --tls_key): replicas forward over the API port's "
        "transport");
  }

  if (absl::Status s =
          ParseLogFormat(absl::GetFlag(FLAGS_log_format), &c.log_format);
      !s.ok()) {
    return s;
  }
  c.log_repeat_interval = absl::GetFlag(FLAGS_log_repeat_interval);
  if (c.log_repeat_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--log_repeat_interval must be >= 0");
  }
  c.access_log = absl::GetFlag(FLAGS_access_log);
  c.access_log_sample = absl::GetFlag(FLAGS_access_log_sample);
  if (!(c.access_log_sample >= 0 && c.access_log_sample <= 1)) {
    return absl::InvalidArgumentError(
        "--access_log_sample must be between 0 and 1");
  }

  c.callers_file = absl::GetFlag(FLAGS_callers_file);
  c.caller_rate.rate = absl::GetFlag(FLAGS_caller_rate);
  c.caller_rate.burst = absl::GetFlag(FLAGS_caller_burst);
  if (c.caller_rate.rate < 0 || c.caller_rate.burst < 0) {
    return absl::InvalidArgumentError(
        "--caller_rate and --caller_burst must be >= 0");
  }
  return c;
}

std::string LogLevelFlag() { return absl::GetFlag(FLAGS_log_level); }

etcd::EtcdBackendOptions EtcdBackendFor(const ServerConfig& config) {
  etcd::EtcdBackendOptions options = config.etcd;
  options.holder = config.listen;
  return options;
}

absl::Status StartupError(std::string_view prefix, const absl::Status& status) {
  std::string message = absl::StrCat(AsAbsl(prefix), status.message());
  if (std::optional<Limit> limit = LimitOf(status)) {
    absl::StrAppend(&message, " (", AsAbsl(LimitFlags(*limit)), ")");
  }
  return absl::Status(status.code(), message);
}

}  // namespace registrar
