#!/usr/bin/env bash
# The cluster against its baselines (issue 13, "Measured"), same client,
# same machine, same run:
#   cluster         3 replicas (--store=etcd) over a 3-member etcd, started
#                   by scripts/cluster.sh; the calls spread round-robin over
#                   the 3 replicas (--channels=3), so 2 of 3 changes are
#                   forwarded by a follower to the writer
#   cluster-writer  the same cluster, every call to the elected writer
#   single          one registrar, RocksDB store, --durability=fsync (the
#                   embedded default)
#   etcd            the cluster's own etcd members used directly (keys
#                   outside the replicas' prefix, round-robin over the 3
#                   members): registrar-bench's etcd backend, e.g. a
#                   connection = LeaseGrant + Put with that lease
# Cells: connection-c64, issue-c64, issue100-c16, validate100-c16,
# open-context-c16 (closed loop, 1,000 owners, 3 gRPC channels each). One
# table: calls/s, items/s, p50, p99, errors, items/s relative to etcd and
# to single, and the CPU each part used (% of one CPU over the run: the
# etcd members together, the writer, the followers together, the single
# server, the client); then the issue's target (cluster connection-c64 >= 5x
# etcd's).
# Then failover windows: an issue-c16 load over the 3 replicas while one is
# killed with SIGKILL (the writer, then a follower, KILLS times each) and
# restarted after the run; per kill the longest time in which no call
# succeeded (registrar-bench's max_ok_gap_ms) and the failed calls (calls
# on the killed replica's channel fail until it is back; the bench does not
# fail over, registrar::Client does: tests/cluster/replicas_chaos_test.cc).
#
# Usage: bench/scripts/cluster_compare.sh [--smoke] BUILD_DIR
#   BUILD_DIR   a build with registrar, registrarctl and registrar-bench
#               (Release for figures that mean anything)
#   --smoke     2 cells of 0.5 s and one kill of each role: checks that
#               everything starts, runs and reports (ctest
#               perf_cluster_compare_smoke)
# Environment: DURATION [4] WARMUP [1] (seconds per run), KILLS [5],
#   RAW [unset] (append every JSON line to this file), DATA_ROOT [/tmp].
# Nothing is pinned: the 6 cluster processes, the single server and the
# client share the machine's CPUs (2 here), which bounds every figure.
# Exit status: 0 when every run produced figures and no run but a failover
# one had errors, 1 otherwise, 2 on bad usage or missing programs.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
source "$HERE/lib.sh"

smoke_args "$@"
bench_binaries "$BUILD_ARG"
command -v etcd >/dev/null || { echo "etcd not installed (etcd-server)" >&2; exit 2; }

if [[ $SMOKE == 1 ]]; then
  DURATION=${DURATION:-0.5}; WARMUP=${WARMUP:-0.2}; KILLS=${KILLS:-1}
  CELLS=(
    "connection-c64|--workload=connection --concurrency=64"
    "validate100-c16|--workload=validate --batch=100 --concurrency=16"
  )
  FAILOVER_SECONDS=4; KILL_AFTER=1.5
else
  DURATION=${DURATION:-4}; WARMUP=${WARMUP:-1}; KILLS=${KILLS:-5}
  CELLS=(
    "connection-c64|--workload=connection --concurrency=64"
    "issue-c64|--workload=issue --concurrency=64"
    "issue100-c16|--workload=issue-batch --batch=100 --concurrency=16"
    "validate100-c16|--workload=validate --batch=100 --concurrency=16"
    "open-context-c16|--workload=open-context --concurrency=16"
  )
  FAILOVER_SECONDS=8; KILL_AFTER=3
fi
BACKENDS=(cluster cluster-writer single etcd)

WORK=$(mktemp -d "${DATA_ROOT:-/tmp}/registrar-cluster-compare.XXXXXX")
CLUSTER_DIR=$WORK/cluster
SINGLE_PID=
cleanup() {
  set +e  # every step runs, whatever the one before returned
  [[ -n $SINGLE_PID ]] && { kill -KILL "$SINGLE_PID"; wait "$SINGLE_PID"; } 2>/dev/null
  STOP_TIMEOUT=5 "$ROOT/scripts/cluster.sh" --build="$BUILD" stop \
    "$CLUSTER_DIR" >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ------------------------------------------------------------- servers

cluster_start() {
  "$ROOT/scripts/cluster.sh" --build="$BUILD" start "$CLUSTER_DIR" \
    >"$WORK/cluster-start.out" 2>&1 || {
    cat "$WORK/cluster-start.out" >&2; exit 1; }
}
cluster_start
# shellcheck disable=SC1091
source "$CLUSTER_DIR/cluster.env"
REPLICAS=() ETCD_MEMBERS=()
for i in 0 1 2; do
  v=GRPC_$i; REPLICAS+=("127.0.0.1:${!v}")
  v=ETCD_CLIENT_$i; ETCD_MEMBERS+=("127.0.0.1:${!v}")
done
ALL_REPLICAS=$(IFS=,; echo "${REPLICAS[*]}")
ALL_MEMBERS=$(IFS=,; echo "${ETCD_MEMBERS[*]}")

"$BUILD/tools/registrarctl/registrarctl" keygen --out="$WORK/key" >/dev/null
"$SERVER" --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0 \
  --port_file="$WORK/single.ports" --key_file="$WORK/key" --log_level=warn \
  --store=rocksdb --data_dir="$WORK/single" --durability=fsync \
  >"$WORK/single.log" 2>&1 &
SINGLE_PID=$!
for _ in $(seq 500); do  # a real child process: poll, bounded (10 s)
  grep -q '^grpc=' "$WORK/single.ports" 2>/dev/null && break
  kill -0 "$SINGLE_PID" 2>/dev/null || { cat "$WORK/single.log" >&2; exit 1; }
  sleep 0.02
done
SINGLE=$(sed -n 's/^grpc=//p' "$WORK/single.ports")
[[ -n $SINGLE ]] || { echo "the single server did not start" >&2; exit 1; }

echo "cluster: replicas $ALL_REPLICAS (writer replica$(cluster_writer)), etcd $ALL_MEMBERS ($(etcd --version | head -1))"
echo "single:  $SINGLE (RocksDB, fsync)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) CPUs, nothing pinned"

# ------------------------------------------------------------- cells

FAILURES=0
RESULTS=$WORK/results.tsv
: >"$RESULTS"

# bench LABEL BACKEND TARGET ARGS...: one registrar-bench run; prints its
# JSON line (empty if it failed to report).
bench() {
  local label=$1 backend=$2 target=$3; shift 3
  local out=$WORK/bench.out rc=0
  "$BENCH" --backend="$backend" --target="$target" --channels=3 \
    --owners=1000 --duration="${DURATION}s" --warmup="${WARMUP}s" \
    --label="$label" "$@" >"$out" 2>"$WORK/bench.err" || rc=$?
  local json
  json=$(grep '^{' "$out" | tail -1 || true)
  if [[ -z $json ]]; then
    echo "registrar-bench failed ($label, rc=$rc):" >&2
    tail -5 "$WORK/bench.err" >&2
  fi
  [[ -n ${RAW:-} && -n $json ]] && echo "$json" >>"$RAW"
  echo "$json"
}

# CPU time so far (jiffies) of: the etcd members, the writer (replica
# $1), the followers, the single server; space-separated.
HZ=$(getconf CLK_TCK)
cpu_groups() {
  local e=0 w=0 f=0 i
  for i in 0 1 2; do
    e=$((e + $(proc_cpu "$(cat "$CLUSTER_DIR/run/etcd$i.pid")")))
    if [[ $i == "$1" ]]; then
      w=$(proc_cpu "$(cat "$CLUSTER_DIR/run/replica$i.pid")")
    else
      f=$((f + $(proc_cpu "$(cat "$CLUSTER_DIR/run/replica$i.pid")")))
    fi
  done
  echo "$e $w $f $(proc_cpu "$SINGLE_PID")"
}

for spec in "${CELLS[@]}"; do
  cell=${spec%%|*}
  read -r -a args <<<"${spec#*|}"
  for backend in "${BACKENDS[@]}"; do
    w=$(cluster_writer) || exit 1
    case $backend in
      cluster) kind=registrar target=$ALL_REPLICAS extra=() ;;
      cluster-writer) kind=registrar target=${REPLICAS[$w]} extra=() ;;
      single) kind=registrar target=$SINGLE extra=() ;;
      etcd) kind=etcd target=$ALL_MEMBERS extra=(--etcd_max_txn_ops=1000) ;;
    esac
    read -r -a cpu0 <<<"$(cpu_groups "$w")"
    t0=$(date +%s.%N)
    json=$(bench "$cell $backend" "$kind" "$target" "${args[@]}" "${extra[@]}")
    t1=$(date +%s.%N)
    read -r -a cpu1 <<<"$(cpu_groups "$w")"
    # Shares of one CPU over the whole run (setup and warm-up included).
    cpu=$(awk -v t="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
      -v hz="$HZ" -v c="$(jnum client_cpu_s <<<"$json")" \
      -v d="$((cpu1[0] - cpu0[0])) $((cpu1[1] - cpu0[1])) $((cpu1[2] - cpu0[2])) $((cpu1[3] - cpu0[3]))" \
      'BEGIN { n = split(d, x, " ")
               for (i = 1; i <= n; ++i) printf "%.0f/", 100 * x[i] / hz / t
               printf "%.0f", 100 * c / t }')
    errs=$(jnum errors <<<"$json")
    if [[ -z $json || ${errs:-1} != 0 ]]; then
      FAILURES=$((FAILURES + 1))
      grep -m3 '^  error' "$WORK/bench.out" >&2 || true
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cell" "$backend" \
      "$(jnum calls_per_s <<<"$json")" "$(jnum items_per_s <<<"$json")" \
      "$(jnum p50_us <<<"$json")" "$(jnum p99_us <<<"$json")" \
      "${errs:--}" "$cpu" >>"$RESULTS"
  done
done

echo
awk -F'\t' '
  { key = $1 SUBSEP $2; ips[key] = $4; row[NR] = $0 }
  END {
    printf "%-17s %-15s %9s %11s %9s %9s %6s %7s %9s  %s\n", "cell", "backend",
           "calls/s", "items/s", "p50_us", "p99_us", "errors", "x_etcd",
           "x_single", "cpu% etcd/writer/followers/single/client"
    for (i = 1; i <= NR; ++i) {
      split(row[i], f, "\t")
      e = ips[f[1] SUBSEP "etcd"]; s = ips[f[1] SUBSEP "single"]
      printf "%-17s %-15s %9.0f %11.0f %9.1f %9.1f %6s %7s %9s  %s\n", f[1],
             f[2], f[3], f[4], f[5], f[6], f[7],
             (e > 0 ? sprintf("%.2f", f[4] / e) : "-"),
             (s > 0 ? sprintf("%.2f", f[4] / s) : "-"), f[8]
      if (f[2] == "etcd" && i < NR) print ""
    }
  }' "$RESULTS"
read -r cl et < <(awk -F'\t' '$1 == "connection-c64" && $2 == "cluster" { c = $4 }
  $1 == "connection-c64" && $2 == "etcd" { e = $4 } END { print c + 0, e + 0 }' "$RESULTS")
awk -v c="$cl" -v e="$et" 'BEGIN {
  r = (e > 0 ? c / e : 0)
  printf "\ntarget: cluster connection-c64 >= 5x etcd Put-with-lease: %.0f vs %.0f connections/s = %.1fx: %s\n",
         c, e, r, (r >= 5 ? "met" : "NOT met") }'

# ------------------------------------------------------------- failover

echo
echo "failover: issue-c16 over the 3 replicas for ${FAILOVER_SECONDS} s, SIGKILL to one replica ${KILL_AFTER} s in, restarted after the run"
printf '%-9s %4s %9s %14s %12s %9s\n' killed run calls/s "no-OK gap ms" "failed calls" "restart s"
for role in writer follower; do
  for k in $(seq "$KILLS"); do
    w=$(cluster_writer) || { echo "no writer" >&2; FAILURES=$((FAILURES + 1)); break; }
    victim=$w
    [[ $role == follower ]] && victim=$(((w + 1 + RANDOM % 2) % 3))
    DURATION=$FAILOVER_SECONDS WARMUP=0 bench "failover $role $k" registrar \
      "$ALL_REPLICAS" --workload=issue --concurrency=16 >"$WORK/failover.json" &
    bench_pid=$!
    sleep "$KILL_AFTER"  # the load runs meanwhile: a benchmark, not a test
    kill -KILL "$(cat "$CLUSTER_DIR/run/replica$victim.pid")"
    wait "$bench_pid" || true
    json=$(cat "$WORK/failover.json")
    t0=$(date +%s.%N)
    cluster_start
    t1=$(date +%s.%N)
    [[ -n $json ]] || FAILURES=$((FAILURES + 1))
    printf '%-9s %4s %9.0f %14s %12s %9.2f\n' "$role" "$k" \
      "$(jnum calls_per_s <<<"$json")" "$(jnum max_ok_gap_ms <<<"$json")" \
      "$(jnum errors <<<"$json")" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
  done
done
echo "(no-OK gap: the longest time in which no call on any replica succeeded;"
echo " restart: cluster.sh start until the restarted replica serves with one writer)"
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
exit $((FAILURES > 0))
