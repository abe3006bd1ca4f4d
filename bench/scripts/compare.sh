#!/usr/bin/env bash
# Registrar against its baselines, same client, same machine, same run
# (issue 6): every workload of registrar-bench against
#   registrar-fsync / registrar-os / registrar-none  registrar, RocksDB store,
#                                                    --durability=<mode>
#   echo          registrar-echo: the same gRPC API answering at once (the
#                 ceiling of any gRPC service here; same client code path)
#   etcd          etcd (single member) through its v3 gRPC API
#   redis         redis-server through hiredis, pipelined; redis-nopipe:
#                 the same server, one round trip per command (only the
#                 workloads with several commands per operation)
# Each run gets a fresh server on 127.0.0.1 (free ports) with its data in
# a temp dir, so every cell starts from an empty store. Then ONE table:
# calls/s, items/s (IDs, verdicts, released, renewals, RPCs), p50, p99,
# errors, and ratios to echo and to etcd in the same cell; then the issue-6
# targets checked against it.
#
# Usage: bench/scripts/compare.sh [--smoke] BUILD_DIR
#   BUILD_DIR   a build with registrar, registrar-bench and registrar-echo
#               (Release for figures that mean anything)
#   --smoke     ~1 s per cell, 5 cells, registrar (fsync) + the baselines:
#               checks that everything starts, runs and reports no errors
#               (ctest perf_compare_smoke); about 40 s
# Exit status: 0 when every run produced figures with no errors and no
# unexpected results, 1 otherwise, 2 on bad usage or missing programs.
#
# Environment knobs [defaults]:
#   DURATION [4] WARMUP [1]   seconds measured / warm-up per run (smoke: 1 / 0.2)
#   MODES ["fsync os none"]   registrar durability modes
#   BASELINES ["echo etcd redis"]  (set and empty: registrar alone)
#   SERVER_BIN [BUILD_DIR/service/server/registrar]  the registrar to measure
#                             (compare_ab.sh: another commit's, same client)
#   OPEN_LOOP [1]             0: skip the two open-loop runs of issue-c64
#   SERVER_CPU [1] CLIENT_CPU [0]  taskset pinning ("" disables it)
#   REDIS_FSYNC [everysec]    redis AOF policy (always | everysec | no)
#   DATA_ROOT [$TMPDIR or /tmp]  where the temp dir goes
#   RAW [unset]               also append every JSON line to this file
#   ONLY [unset]              run only these cells (ids, space-separated)
#   LIST_CELLS [unset]        1: print the cell ids, one a line, and exit
# Redis runs with --appendonly yes --appendfsync everysec --save '': the
# durable setting redis recommends, which can lose about a second of writes
# on power loss, so its honest counterpart is registrar's `os` mode (fsync:
# `REDIS_FSYNC=always`). etcd fsyncs its WAL before every acknowledgement,
# like registrar's `fsync` mode.
# The full run (11 closed-loop cells + 2 open-loop ones, 75 runs) takes
# about 7.5 minutes at the defaults.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

smoke_args "$@"
BUILD=$(cd "$BUILD_ARG" && pwd)
SERVER=${SERVER_BIN:-$BUILD/service/server/registrar}
BENCH=$BUILD/bench/programs/registrar-bench
ECHO=$BUILD/bench/programs/registrar-echo
for b in "$SERVER" "$BENCH" "$ECHO"; do
  [[ -x $b ]] || { echo "missing $b (build it first)" >&2; exit 2; }
done

if [[ $SMOKE == 1 ]]; then
  DURATION=${DURATION:-1}
  WARMUP=${WARMUP:-0.2}
  MODES=${MODES:-fsync}
else
  DURATION=${DURATION:-4}
  WARMUP=${WARMUP:-1}
  MODES=${MODES:-"fsync os none"}
fi
BASELINES=${BASELINES-"echo etcd redis"}
SERVER_CPU=${SERVER_CPU-1}
CLIENT_CPU=${CLIENT_CPU-0}
REDIS_FSYNC=${REDIS_FSYNC:-everysec}
DATA_ROOT=${DATA_ROOT:-${TMPDIR:-/tmp}}
for b in $BASELINES; do
  case $b in
    etcd)
      if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
        echo "etcd/etcdctl not installed (etcd-server etcd-client)" >&2; exit 2
      fi ;;
    redis)
      if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
        echo "redis-server/redis-cli not installed (redis-server)" >&2; exit 2
      fi ;;
    echo) ;;
    *) echo "unknown baseline $b" >&2; exit 2 ;;
  esac
done
if [[ -n $SERVER_CPU$CLIENT_CPU ]] &&
   { ! command -v taskset >/dev/null || [[ $(nproc) -lt 2 ]]; }; then
  echo "note: no taskset or fewer than 2 CPUs: not pinning" >&2
  SERVER_CPU=; CLIENT_CPU=
fi

# Cells: id | registrar-bench arguments. Pools for the cleanup cells are
# per backend (below).
if [[ $SMOKE == 1 ]]; then
  CELLS=(
    "issue-c16|--workload=issue --concurrency=16"
    "validate10-c4|--workload=validate --batch=10 --concurrency=4 --pool=10"
    "connection-c16|--workload=connection --concurrency=16"
    "cleanup-c4|--workload=cleanup --concurrency=4"
    "gateway-c4|--workload=gateway --concurrency=4 --messages=2"
  )
  NOPIPE_CELLS="gateway-c4"
  OWNERS=100
else
  CELLS=(
    "issue-c1|--workload=issue --concurrency=1"
    "issue-c64|--workload=issue --concurrency=64"
    "issue100-c16|--workload=issue-batch --batch=100 --concurrency=16"
    "validate100-c16|--workload=validate --batch=100 --concurrency=16"
    "connection-c64|--workload=connection --concurrency=64"
    "connection100-c1|--workload=connection --batch=100 --concurrency=1"
    "cleanup-c16|--workload=cleanup --concurrency=16"
    "release100-c1|--workload=cleanup --children=100 --concurrency=1"
    "open-context-c16|--workload=open-context --concurrency=16"
    "lease-c16|--workload=lease --concurrency=16"
    "gateway-c16|--workload=gateway --concurrency=16"
  )
  NOPIPE_CELLS="issue100-c16 validate100-c16 connection100-c1 open-context-c16 gateway-c16"
  OWNERS=1000
fi

if [[ ${LIST_CELLS:-} == 1 ]]; then
  for entry in "${CELLS[@]}"; do echo "${entry%%|*}"; done
  exit 0
fi

BACKENDS=()
for m in $MODES; do BACKENDS+=("registrar-$m"); done
for b in $BASELINES; do
  BACKENDS+=("$b")
  [[ $b == redis ]] && BACKENDS+=(redis-nopipe)
done

WORK=$(mktemp -d "$DATA_ROOT/registrar-compare.XXXXXX")
SERVER_PID=
cleanup() {
  if [[ -n $SERVER_PID ]]; then kill -KILL "$SERVER_PID" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

printf '0 %s\n' "$(head -c16 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  >"$WORK/key"
chmod 600 "$WORK/key"

free_port() {
  local py
  for py in python3 /usr/bin/python3; do
    if "$py" -c 'import socket; s = socket.socket()
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null; then
      return 0
    fi
  done
  echo $((20000 + RANDOM % 30000))
}

HZ=$(getconf CLK_TCK)
machine_busy() { awk '/^cpu / { printf "%d\n", $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

server_failed() {  # server_failed NAME LOG
  echo "FAILED to start $1; its log:" >&2
  tail -20 "$2" >&2
  exit 1
}

# start_server BACKEND: starts a fresh server for it; sets TARGET, SERVER_PID.
start_server() {
  local backend=$1 log=$WORK/server.log pinning=()
  TARGET=
  rm -rf "$WORK/data" "$WORK/ports"
  mkdir -p "$WORK/data"
  [[ -n $SERVER_CPU ]] && pinning=(taskset -c "$SERVER_CPU")
  case $backend in
    registrar-*)
      # Started directly so that $! is the server itself (taskset execs it).
      "${pinning[@]}" "$SERVER" --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0 \
        --port_file="$WORK/ports" --key_file="$WORK/key" --log_level=warn \
        --shutdown_drain=0s --shutdown_timeout=2s --store=rocksdb \
        --data_dir="$WORK/data" --durability="${backend#registrar-}" \
        >"$log" 2>&1 &
      SERVER_PID=$!
      for _ in $(seq 500); do
        grep -q '^grpc=' "$WORK/ports" 2>/dev/null && break
        kill -0 "$SERVER_PID" 2>/dev/null || server_failed "$backend" "$log"
        sleep 0.02
      done
      TARGET=$(sed -n 's/^grpc=//p' "$WORK/ports")
      ;;
    echo)
      "${pinning[@]}" "$ECHO" --listen=127.0.0.1:0 --port_file="$WORK/ports" \
        --cleanup_children=100 >"$log" 2>&1 &
      SERVER_PID=$!
      for _ in $(seq 500); do
        grep -q '^grpc=' "$WORK/ports" 2>/dev/null && break
        kill -0 "$SERVER_PID" 2>/dev/null || server_failed "$backend" "$log"
        sleep 0.02
      done
      TARGET=$(sed -n 's/^grpc=//p' "$WORK/ports")
      ;;
    etcd)
      local cport pport
      cport=$(free_port); pport=$(free_port)
      while [[ $pport == "$cport" ]]; do pport=$(free_port); done
      "${pinning[@]}" etcd --name compare --data-dir "$WORK/data/etcd" \
        --listen-client-urls "http://127.0.0.1:$cport" \
        --advertise-client-urls "http://127.0.0.1:$cport" \
        --listen-peer-urls "http://127.0.0.1:$pport" \
        --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "compare=http://127.0.0.1:$pport" \
        --initial-cluster-state new --max-txn-ops 1000 \
        --quota-backend-bytes 8589934592 --logger zap --log-level warn \
        >"$log" 2>&1 &
      SERVER_PID=$!
      TARGET=127.0.0.1:$cport
      for _ in $(seq 150); do
        ETCDCTL_API=3 etcdctl --endpoints="$TARGET" --command-timeout=1s \
          endpoint health >/dev/null 2>&1 && break
        kill -0 "$SERVER_PID" 2>/dev/null || server_failed etcd "$log"
        sleep 0.1
      done
      ;;
    redis|redis-nopipe)
      local port
      port=$(free_port)
      "${pinning[@]}" redis-server --port "$port" --bind 127.0.0.1 --save '' \
        --appendonly yes --appendfsync "$REDIS_FSYNC" --dir "$WORK/data" \
        --daemonize no --logfile '' >"$log" 2>&1 &
      SERVER_PID=$!
      TARGET=127.0.0.1:$port
      for _ in $(seq 150); do
        [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]] && break
        kill -0 "$SERVER_PID" 2>/dev/null || server_failed redis "$log"
        sleep 0.05
      done
      ;;
  esac
  if [[ -z $TARGET ]] || ! kill -0 "$SERVER_PID" 2>/dev/null; then
    server_failed "$backend" "$log"
  fi
}

stop_server() {
  # SIGTERM, then SIGKILL after 0.5 s: the data is a throw-away temp dir
  # (registrar lingers ~2 s in its /metrics server's stop after a clean
  # shutdown).
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 20); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.025
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=
}

# Per-backend arguments: cleanup pools sized to last the run without a
# long setup (a run that uses its pool up is measured until then).
backend_args() {  # backend_args BACKEND CELL
  local backend=$1 cell=$2 args=()
  case $backend in
    etcd) args+=(--etcd_max_txn_ops=1000) ;;
    redis-nopipe) args+=(--redis_pipeline=false) ;;
  esac
  case $cell in
    cleanup-*)
      if [[ $SMOKE == 1 ]]; then
        args+=(--pool=20000)
      else
        case $backend in
          etcd) args+=(--pool=40000) ;;
          redis*) args+=(--pool=600000) ;;
          *) args+=(--pool=300000) ;;
        esac
      fi ;;
    release*)
      case $backend in
        etcd) args+=(--pool=2000) ;;
        *) args+=(--pool=15000) ;;
      esac ;;
  esac
  echo "${args[*]}"
}

RESULTS=$WORK/results.tsv
: >"$RESULTS"
FAILURES=0

# run_cell CELL BACKEND ARGS...: one server start, one registrar-bench run,
# one row in $RESULTS.
run_cell() {
  local cell=$1 backend=$2; shift 2
  local bench_backend=$backend out=$WORK/bench.out
  case $backend in
    registrar-*) bench_backend=registrar ;;
    redis-nopipe) bench_backend=redis ;;
  esac
  start_server "$backend"
  local b0 s0 t0 b1 s1 t1 rc=0
  b0=$(machine_busy); s0=$(proc_cpu "$SERVER_PID"); t0=$(date +%s.%N)
  # shellcheck disable=SC2046
  pin "$CLIENT_CPU" "$BENCH" --backend="$bench_backend" --target="$TARGET" \
    --owners="$OWNERS" --duration="${DURATION}s" --warmup="${WARMUP}s" \
    --label="$cell $backend" "$@" $(backend_args "$backend" "$cell") \
    >"$out" 2>"$WORK/bench.err" || rc=$?
  b1=$(machine_busy); s1=$(proc_cpu "$SERVER_PID"); t1=$(date +%s.%N)
  stop_server
  local json
  json=$(grep '^{' "$out" | tail -1 || true)
  [[ -n ${RAW:-} && -n $json ]] && echo "$json" >>"$RAW"
  local status=ok cps ips p50 p99 errs unexp calls ccpu other
  cps=$(jnum calls_per_s <<<"$json"); ips=$(jnum items_per_s <<<"$json")
  p50=$(jnum p50_us <<<"$json"); p99=$(jnum p99_us <<<"$json")
  errs=$(jnum errors <<<"$json"); unexp=$(jnum unexpected <<<"$json")
  calls=$(jnum calls <<<"$json"); ccpu=$(jnum client_cpu_s <<<"$json")
  if [[ $rc != 0 || -z $json ]]; then
    status="FAILED(rc=$rc)"
  elif [[ ${calls:-0} == 0 ]]; then
    status="FAILED(no-calls)"
  elif [[ ${errs:-1} != 0 || ${unexp:-1} != 0 ]]; then
    status="ERRORS"
  fi
  if [[ $status != ok ]]; then
    FAILURES=$((FAILURES + 1))
    {
      echo "== $cell $backend: $status"
      grep -E 'error|unexpected|pool|cannot|failed' "$out" || true
      tail -5 "$WORK/bench.err"
    } >&2
  fi
  # CPU used during the run by anything but this server and this client
  # (other people's builds), in % of one CPU.
  other=$(awk -v b="$((b1 - b0))" -v s="$((s1 - s0))" -v c="${ccpu:-0}" \
              -v hz="$HZ" -v a="$t0" -v z="$t1" \
          'BEGIN { o = (b - s - c * hz) / hz / (z - a) * 100;
                   printf "%.0f", o < 0 ? 0 : o }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$cell" "$backend" \
    "${cps:-0}" "${ips:-0}" "${p50:-0}" "${p99:-0}" "${errs:-?}" \
    "${unexp:-?}" "$other" "$status" >>"$RESULTS"
  echo "  $(printf '%-18s %-15s' "$cell" "$backend") ${cps:-?} calls/s" \
       "${ips:-?} items/s p50 ${p50:-?} us p99 ${p99:-?} us $status" >&2
}

field() {  # field CELL BACKEND COLUMN(3=calls/s 4=items/s 5=p50 6=p99)
  awk -F'\t' -v c="$1" -v b="$2" -v f="$3" '$1 == c && $2 == b { v = $f } END { print v }' "$RESULTS"
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
T_START=$(date +%s)
PINNING="server pinned to CPU ${SERVER_CPU:-?}, client (registrar-bench) to CPU ${CLIENT_CPU:-?} with taskset"
[[ -z $SERVER_CPU ]] && PINNING="no CPU pinning"
echo "compare: $(date -u '+%Y-%m-%d %H:%M UTC'), load average $LOAD_START; $PINNING;" \
     "${DURATION}s measured after ${WARMUP}s warm-up per run" >&2

for entry in "${CELLS[@]}"; do
  cell=${entry%%|*}
  [[ -n ${ONLY:-} && " $ONLY " != *" $cell "* ]] && continue
  read -r -a args <<<"${entry#*|}"
  for backend in "${BACKENDS[@]}"; do
    if [[ $backend == redis-nopipe && " $NOPIPE_CELLS " != *" $cell "* ]]; then
      continue
    fi
    run_cell "$cell" "$backend" "${args[@]}"
  done
  # Open loop at half of registrar's closed-loop maximum (issue, 64 callers)
  # in fsync and os mode, and echo at the same rates.
  if [[ $cell == issue-c64 && ${OPEN_LOOP:-1} != 0 ]]; then
    for m in fsync os; do
      [[ " $MODES " == *" $m "* ]] || continue
      max=$(field issue-c64 "registrar-$m" 3)
      rate=$(awk -v m="${max:-0}" 'BEGIN { printf "%.0f", m / 2 }')
      [[ $rate -gt 0 ]] || continue
      for backend in "registrar-$m" echo; do
        [[ $backend == echo && " $BASELINES " != *" echo "* ]] && continue
        run_cell "open@$rate-$m" "$backend" --workload=issue --concurrency=64 \
          --rate="$rate"
      done
    done
  fi
done

LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(( $(date +%s) - T_START ))

# The table.
{
  echo
  echo "registrar vs baselines, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -n)," \
       "$(nproc) CPUs; $PINNING"
  echo "${DURATION}s measured after ${WARMUP}s warm-up per run, fresh server per run;" \
       "load average before $LOAD_START, after $LOAD_END; ${ELAPSED}s in total"
  echo "items: IDs (issue, connection, open-context), verdicts (validate), released (cleanup),"
  echo "renewals (lease), RPCs or round trips (gateway: one call = one session)."
  echo "x_echo / x_etcd: items/s relative to echo / etcd in the same cell;"
  echo "p50/echo, p99/echo: latency relative to echo's. other%: CPU used by other processes."
  echo
  awk -F'\t' '
    { cell[NR] = $1; be[NR] = $2; cps[NR] = $3; ips[NR] = $4; p50[NR] = $5
      p99[NR] = $6; err[NR] = $7; unexp[NR] = $8; oth[NR] = $9; st[NR] = $10
      if ($2 == "echo") { ei[$1] = $4; e50[$1] = $5; e99[$1] = $6 }
      if ($2 == "etcd") { ti[$1] = $4 } }
    function ratio(a, b) { return (b > 0 && a > 0) ? sprintf("%.2f", a / b) : "-" }
    END {
      printf "%-18s %-15s %10s %11s %9s %9s %6s %7s %8s %8s %7s %6s\n",
             "cell", "backend", "calls/s", "items/s", "p50_us", "p99_us",
             "errors", "x_echo", "p50/echo", "p99/echo", "x_etcd", "other%"
      for (i = 1; i <= NR; i++) {
        if (i > 1 && cell[i] != cell[i - 1]) print ""
        e = err[i] + unexp[i]
        if (st[i] != "ok" && st[i] != "ERRORS") e = st[i]
        printf "%-18s %-15s %10.0f %11.0f %9.1f %9.1f %6s %7s %8s %8s %7s %6s\n",
               cell[i], be[i], cps[i], ips[i], p50[i], p99[i], e,
               be[i] == "echo" ? "1" : ratio(ips[i], ei[cell[i]]),
               be[i] == "echo" ? "1" : ratio(p50[i], e50[cell[i]]),
               be[i] == "echo" ? "1" : ratio(p99[i], e99[cell[i]]),
               be[i] == "etcd" ? "1" : ratio(ips[i], ti[cell[i]]), oth[i]
      }
    }' "$RESULTS"
} | tee "$WORK/table.txt"

# The issue-6 targets, from the table (full run only).
if [[ $SMOKE == 0 ]]; then
  check() {  # check DESCRIPTION VALUE OP LIMIT UNIT
    local verdict
    if [[ -z $2 ]]; then
      verdict="n/a "
    else
      verdict=$(awk -v v="$2" -v l="$4" -v op="$3" \
        'BEGIN { ok = (op == ">=") ? v >= l : v <= l; print ok ? "MET " : "MISS" }')
    fi
    local shown=${2:+$2$5}
    printf '  %s %-62s %s (target %s %s)\n' "$verdict" "$1" "${shown:--}" \
      "$3" "$4$5"
  }
  r() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b }'; }
  echo
  echo "issue-6 targets on this run:"
  check "Issue c=64, fsync: calls/s vs echo" \
    "$(r "$(field issue-c64 registrar-fsync 3)" "$(field issue-c64 echo 3)")" ">=" 0.85 ""
  check "Issue count=100 c=16, none: IDs/s vs echo" \
    "$(r "$(field issue100-c16 registrar-none 4)" "$(field issue100-c16 echo 4)")" ">=" 0.85 ""
  check "Issue count=100 c=16, fsync: IDs/s" \
    "$(field issue100-c16 registrar-fsync 4)" ">=" 1000000 ""
  check "Validate 100 IDs c=16, fsync: verdicts/s vs echo" \
    "$(r "$(field validate100-c16 registrar-fsync 4)" "$(field validate100-c16 echo 4)")" ">=" 0.85 ""
  check "Connection registration c=64, fsync: vs etcd" \
    "$(r "$(field connection-c64 registrar-fsync 4)" "$(field connection-c64 etcd 4)")" ">=" 10 ""
  check "100 connection IDs, 1 caller, os: p50 vs echo" \
    "$(r "$(field connection100-c1 registrar-os 5)" "$(field connection100-c1 echo 5)")" "<=" 1.3 ""
  check "100 connection IDs, 1 caller, fsync: p50" \
    "$(field connection100-c1 registrar-fsync 5)" "<=" 550 " us"
  check "Release a connection with 100 children, os: p50" \
    "$(field release100-c1 registrar-os 5)" "<=" 200 " us"
  open_os=$(awk -F'\t' '$1 ~ /^open@.*-os$/ { print $1; exit }' "$RESULTS")
  open_fsync=$(awk -F'\t' '$1 ~ /^open@.*-fsync$/ { print $1; exit }' "$RESULTS")
  check "Open loop at half max (${open_os:-none}), os: p99 vs echo" \
    "$(r "$(field "$open_os" registrar-os 6)" "$(field "$open_os" echo 6)")" "<=" 1.5 ""
  check "Open loop at half max (${open_fsync:-none}), fsync: p99" \
    "$(field "$open_fsync" registrar-fsync 6)" "<=" 2000 " us"
  echo "  (memory per record and start-up: registrar-storebench, not measured here)"
fi

if [[ $FAILURES -gt 0 ]]; then
  echo "compare: $FAILURES run(s) failed or reported errors (details above on stderr)" >&2
  exit 1
fi
echo "compare: all runs OK" >&2
