#!/usr/bin/env bash
# Durability-mode comparison: for each of --durability=fsync|os|none (RocksDB
# store) and --store=memory, start a fresh `registrar` on 127.0.0.1 with a
# temp data dir, run registrar-bench `issue` (count 1) and `connection`
# (KIND_CONNECTION bound to a lease) at concurrency 1, 16 and 64, read how
# many calls shared each fsync, stop the server, and print ONE table.
#
# Builds nothing. Usage:
#   bench/scripts/durability.sh BUILD_DIR            # e.g. build-bench (Release)
# Environment knobs (defaults in brackets):
#   DURATION [10]  WARMUP [2]   seconds per run / warm-up per run
#   CONCURRENCY ["1 16 64"]     MODES ["fsync os none memory"]
#   WORKLOADS ["issue connection"]  OWNERS [1000]  CHANNELS [1]
#   SERVER_CPU [1] CLIENT_CPU [0]   taskset pinning ("" disables it)
#   DATA_ROOT [$TMPDIR or /tmp]     where the temp data dirs go
#   RAW [unset]                     also append the JSON lines to this file
#   BENCH_ARGS [unset]              extra registrar-bench flags, e.g.
#                                   "--rate=2000" (open loop) or "--batch=10"
#   SERVER_ARGS [unset]             extra registrar flags
# Calls per fsync (fsync mode): from /metrics, registrar_store_batches_total /
# registrar_store_writes_total over the run (group commit: committed batches,
# about one per changing call, and backend writes = fsyncs); with a server
# that lacks them, counted with `perf stat` (the server's fsync + fdatasync
# syscalls during the run, divided by the run's calls); else "n/a". "-" for
# os, none and memory (commits are not fsynced) and for read-only workloads.
# other_cpu%: CPU used during each run by anything but this server and
# client (other builds on a shared machine), in % of one CPU.
# At 10 s + 2 s per run the default matrix is 24 runs, about 4 min 50 s.
set -euo pipefail

# shellcheck source=bench/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_binaries "${1:?usage: bench/scripts/durability.sh BUILD_DIR}"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONCURRENCY=${CONCURRENCY:-"1 16 64"}
MODES=${MODES:-"fsync os none memory"}
WORKLOADS=${WORKLOADS:-"issue connection"}
OWNERS=${OWNERS:-1000}
CHANNELS=${CHANNELS:-1}
SERVER_CPU=${SERVER_CPU-1}
CLIENT_CPU=${CLIENT_CPU-0}
DATA_ROOT=${DATA_ROOT:-${TMPDIR:-/tmp}}

metric_sum() {  # metric_sum NAME < metrics text: sum over label sets
  awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF; f = 1 }
                 END { if (f) printf "%.0f\n", s }'
}

WORK=$(mktemp -d "$DATA_ROOT/registrar-durability.XXXXXX")
SERVER_PID=
LAUNCH_PID=
cleanup() {
  for p in $SERVER_PID $LAUNCH_PID; do
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT

printf '0 %s\n' "$(head -c16 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  > "$WORK/key"
chmod 600 "$WORK/key"

# perf (which slows the server's syscalls a little) only when the server
# does not count its own writes.
HAVE_PERF=0
STORE_METRICS=0
if grep -q registrar_store_writes_total "$SERVER"; then
  STORE_METRICS=1
elif command -v perf >/dev/null &&
   perf stat -x, -e syscalls:sys_enter_fdatasync -- true >/dev/null 2>&1; then
  HAVE_PERF=1
fi

start_server() {  # start_server MODE
  local mode=$1 args=() wrap=()
  rm -f "$WORK/ports" "$WORK/perf.txt"
  if [[ $mode == memory ]]; then
    args=(--store=memory)
  else
    rm -rf "$WORK/data"
    args=(--store=rocksdb --data_dir="$WORK/data" --durability="$mode")
    if [[ $HAVE_PERF == 1 ]]; then
      # Count the server's fsync/fdatasync calls (all its threads, including
      # ones started later) in 100 ms intervals, to split them per run.
      wrap=(perf stat -I 100 -x, -o "$WORK/perf.txt"
            -e syscalls:sys_enter_fdatasync,syscalls:sys_enter_fsync --)
    fi
  fi
  local pinning=()
  if [[ -n $SERVER_CPU ]] && command -v taskset >/dev/null; then
    pinning=(taskset -c "$SERVER_CPU")
  fi
  T0=$(date +%s.%N)
  # Started directly (not through a shell function), so that $! is the
  # process itself: taskset execs perf (or the server), perf forks it.
  "${pinning[@]}" "${wrap[@]}" "$SERVER" --listen=127.0.0.1:0 \
    --metrics_listen=127.0.0.1:0 \
    --port_file="$WORK/ports" --key_file="$WORK/key" --log_level=warn \
    --shutdown_drain=0s --shutdown_timeout=2s "${args[@]}" ${SERVER_ARGS:-} \
    >"$WORK/server-$mode.log" 2>&1 &
  LAUNCH_PID=$!
  SERVER_PID=$LAUNCH_PID
  for _ in $(seq 200); do
    [[ -s $WORK/ports ]] && grep -q '^metrics=' "$WORK/ports" && break
    kill -0 "$LAUNCH_PID" 2>/dev/null || {
      echo "registrar ($mode) exited:" >&2; cat "$WORK/server-$mode.log" >&2
      exit 1; }
    sleep 0.02
  done
  if [[ ${#wrap[@]} -gt 0 ]]; then
    SERVER_PID=$(pgrep -P "$LAUNCH_PID" | head -1)
    sleep 0.2  # keep the start-up's fsyncs out of the first run's intervals
  fi
  GRPC=$(sed -n 's/^grpc=//p' "$WORK/ports")
  METRICS=$(sed -n 's/^metrics=//p' "$WORK/ports")
}

stop_server() {
  # SIGTERM, then SIGKILL after 0.5 s: the server shuts down in a few ms but
  # its process then lingers ~2 s in the /metrics HTTP server's stop, which
  # would cost this script 8 s of its 5-minute budget.
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 20); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.025
  done
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  wait "$LAUNCH_PID" 2>/dev/null || true  # perf, if any, ends with its child
  if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "registrar $SERVER_PID did not stop" >&2
  fi
  SERVER_PID=
}

now_rel() { awk -v a="$(date +%s.%N)" -v b="$T0" 'BEGIN { printf "%.3f", a - b }'; }

fsyncs_between() {  # fsyncs_between REL_START REL_END < perf -I output
  awk -F, -v s="$1" -v e="$2" '
    /^#/ || NF < 4 { next }
    $4 ~ /sys_enter_f(data)?sync/ && $1 + 0 > s && $1 + 0 <= e + 0.1 { n += $2 }
    END { print n + 0 }'
}

HZ=$(getconf CLK_TCK)
machine_busy() {  # jiffies all CPUs spent busy
  awk '/^cpu / { printf "%d\n", $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat
}
scrape() { curl -s --max-time 2 "http://$METRICS/metrics" || true; }

ROWS=()
FSYNC_SOURCE=
T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
for mode in $MODES; do
  start_server "$mode"
  PENDING=()  # runs of this mode: fields for the row, fsyncs filled in later
  for wl in $WORKLOADS; do
    for c in $CONCURRENCY; do
      before=$(scrape)
      b0=$(machine_busy); s0=$(proc_cpu "$SERVER_PID")
      rel0=$(now_rel)
      json=$(pin "$CLIENT_CPU" "$BENCH" --target="$GRPC" --workload="$wl" \
               --concurrency="$c" --channels="$CHANNELS" --owners="$OWNERS" \
               --duration="${DURATION}s" --warmup="${WARMUP}s" \
               --label="durability=$mode" ${BENCH_ARGS:-} \
               2>>"$WORK/bench.err" | grep '^{' |
               tail -1)
      rel1=$(now_rel)
      b1=$(machine_busy); s1=$(proc_cpu "$SERVER_PID")
      # CPU used by anything but this server and this client during the run,
      # in % of one CPU: other engineers' builds, leftover processes, ...
      k=$(awk -v c="$(jnum client_cpu_s <<<"$json")" -v hz="$HZ" \
          'BEGIN { printf "%d", c * hz }')
      other=$(awk -v b="$((b1 - b0))" -v s="$((s1 - s0))" -v k="$k" \
                  -v hz="$HZ" -v a="$rel0" -v z="$rel1" \
              'BEGIN { o = (b - s - k) / hz / (z - a) * 100; if (o < 0) o = 0;
                       printf "%.0f", o }')
      after=$(scrape)
      [[ -n ${RAW:-} ]] && echo "$json" >>"$RAW"
      cps=$(jnum calls_per_s <<<"$json"); p50=$(jnum p50_us <<<"$json")
      p99=$(jnum p99_us <<<"$json"); errs=$(jnum errors <<<"$json")
      all=$(jnum all_calls <<<"$json")
      per_fsync=
      if [[ $mode == memory ]] || [[ $mode != fsync && $STORE_METRICS == 1 ]]; then
        per_fsync="-"
      else
        c0=$(metric_sum registrar_store_batches_total <<<"$before")
        c1=$(metric_sum registrar_store_batches_total <<<"$after")
        w0=$(metric_sum registrar_store_writes_total <<<"$before")
        w1=$(metric_sum registrar_store_writes_total <<<"$after")
        if [[ -n $c1 && -n $w1 && $mode == fsync ]]; then
          # "-" for read-only workloads: their few commits are the
          # server's own (clock, probes), not the calls'.
          per_fsync=$(awk -v a="$((c1 - ${c0:-0}))" -v b="$((w1 - ${w0:-0}))" \
                          -v calls="${all:-0}" \
                      'BEGIN { if (a * 100 < calls) print "-";
                               else if (b > 0) printf "%.1f", a / b;
                               else print "n/a" }')
          FSYNC_SOURCE="/metrics: registrar_store_batches_total / registrar_store_writes_total over the run (setup and warm-up included)"
        fi
      fi
      PENDING+=("$wl $c ${cps:-0} ${p50:-0} ${p99:-0} ${errs:-?} ${all:-0} $rel0 $rel1 ${per_fsync:-?} $other")
      echo "  done: $mode $wl c=$c: ${cps:-?} calls/s p50 ${p50:-?} us p99 ${p99:-?} us" >&2
    done
  done
  stop_server
  for p in "${PENDING[@]}"; do
    read -r wl c cps p50 p99 errs all rel0 rel1 per_fsync other <<<"$p"
    if [[ $per_fsync == "?" ]]; then
      per_fsync=n/a
      if [[ -s $WORK/perf.txt ]]; then
        n=$(fsyncs_between "$rel0" "$rel1" <"$WORK/perf.txt")
        per_fsync=$(awk -v a="$all" -v b="$n" \
                    'BEGIN { if (b > 0) printf "%.1f", a / b; else print "no fsync" }')
        FSYNC_SOURCE=${FSYNC_SOURCE:-"perf stat: the server's fsync+fdatasync syscalls during the run / the run's calls (setup and warm-up included)"}
      fi
    fi
    ROWS+=("$(printf '%-7s %-11s %5s %10.0f %9.0f %9.0f %11s %7s %10s' \
      "$mode" "$wl" "$c" "$cps" "$p50" "$p99" "$per_fsync" "$errs" "$other")")
  done
done
T_END=$(date +%s)

echo
echo "registrar durability comparison ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs," \
     "server on CPU ${SERVER_CPU:-any}, client on CPU ${CLIENT_CPU:-any};" \
     "${DURATION}s + ${WARMUP}s warm-up per run, $OWNERS owners, $CHANNELS channel(s)${BENCH_ARGS:+, bench: $BENCH_ARGS}${SERVER_ARGS:+, server: $SERVER_ARGS})"
printf '%-7s %-11s %5s %10s %9s %9s %11s %7s %10s\n' mode workload conc calls/s \
  p50_us p99_us calls/fsync errors other_cpu%
for r in "${ROWS[@]}"; do echo "$r"; done
echo "calls/fsync source: ${FSYNC_SOURCE:-n/a (server exports no store commit metrics and perf is unavailable)}"
echo "calls/fsync: '-' where commits are not fsynced (os: WAL written, not synced; none: no WAL; memory)"
echo "other_cpu%: CPU used during the run by processes other than this server and client, in % of one CPU (0 = a quiet machine)"
echo "total $((T_END - T_START)) s; load average at start: $LOAD_START, now: $(cut -d' ' -f1-3 /proc/loadavg)"
