#!/usr/bin/env bash
# What a stalled watcher costs issuers: one `registrar` on 127.0.0.1, then
# registrar-bench `issue` (count 1) runs that alternate between no watcher
# and --stalled_watchers=N (Watch streams from the newest revision, each on
# its own connection, never read until the run ends), REPS pairs, and ONE
# table: calls/s and the server's CPU per 1000 calls of each run, their
# medians, and the ratio stalled / none.
#
# The server's CPU per call is the steadier figure on a shared machine: it
# does not move with what other processes take from the cores, only with
# what the server does per call. A stalled watcher that cost work per event
# would show there first.
#
# A "stalled" watcher is not stalled at once: its client's HTTP/2 receive
# window (which gRPC grows by BDP probing, to megabytes) takes events until
# it is full; from then on the server holds one unsent batch for it and
# does nothing per commit. --watch_max_lag is set high enough that the
# watcher is not cut off during a run; the bench cancels it unread at the
# end of the run, so the server never sends what it held back.
#
# Builds nothing. Usage:
#   bench/scripts/stalled_watcher.sh BUILD_DIR      # e.g. build (Release)
# Environment (defaults in brackets):
#   REPS [5]  DURATION [4]  WARMUP [3]   pairs of runs; seconds per run
#   CONCURRENCY [16]  WATCHERS [1]       issuers in flight; stalled watchers
#   WINDOW_KB [0]                        the watchers' receive window in KiB
#                                        without BDP probing (0: gRPC's
#                                        default, growing to megabytes)
#   STORE [memory]                       memory | rocksdb (fsync)
#   SERVER_CPU [0] CLIENT_CPU [1]        taskset pinning ("" disables it)
#   SERVER_ARGS [unset]                  extra registrar flags
set -euo pipefail

# shellcheck source=bench/scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bench_binaries "${1:?usage: bench/scripts/stalled_watcher.sh BUILD_DIR}"
REPS=${REPS:-5}
DURATION=${DURATION:-4}
WARMUP=${WARMUP:-3}
CONCURRENCY=${CONCURRENCY:-16}
WATCHERS=${WATCHERS:-1}
WINDOW_KB=${WINDOW_KB:-0}
STORE=${STORE:-memory}
SERVER_CPU=${SERVER_CPU-0}
CLIENT_CPU=${CLIENT_CPU-1}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/registrar-stalled.XXXXXX")
SERVER_PID=
cleanup() {
  [[ -n $SERVER_PID ]] && kill -KILL "$SERVER_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

store_args=(--store=memory)
[[ $STORE == rocksdb ]] && store_args=(--store=rocksdb --data_dir="$WORK/data")
pinning=()
if [[ -n $SERVER_CPU ]] && command -v taskset >/dev/null; then
  pinning=(taskset -c "$SERVER_CPU")
fi
# Started directly (not through a shell function), so that $! is the server
# itself (taskset execs it).
"${pinning[@]}" "$SERVER" --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0 \
  --port_file="$WORK/ports" --log_level=warn "${store_args[@]}" \
  --event_history=20000000 --watch_max_lag=20000000 ${SERVER_ARGS:-} \
  >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 500); do  # a real child process: bounded poll
  [[ -s $WORK/ports ]] && grep -q '^metrics=' "$WORK/ports" && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.log" >&2; exit 1; }
  sleep 0.02
done
GRPC=$(sed -n 's/^grpc=//p' "$WORK/ports")
HZ=$(getconf CLK_TCK)

echo "stalled watchers: $STORE store, issue count 1, concurrency $CONCURRENCY," \
  "watchers' window ${WINDOW_KB} KiB (0: default)," \
  "$REPS pairs of ${DURATION} s runs (+${WARMUP} s warm-up), server on" \
  "CPU ${SERVER_CPU:-any}, client on CPU ${CLIENT_CPU:-any}; $(date -u +%F\ %H:%M) UTC"
printf '%-4s %-9s %10s %16s\n' rep watchers calls/s cpu_ms/1000calls
for rep in $(seq "$REPS"); do
  for w in 0 "$WATCHERS"; do
    pin "$CLIENT_CPU" "$BENCH" --target="$GRPC" --workload=issue \
      --concurrency="$CONCURRENCY" --duration="${DURATION}s" \
      --warmup="${WARMUP}s" --stalled_watchers="$w" \
      --stalled_window_kb="$WINDOW_KB" >"$WORK/out" 2>&1 &
    bench=$!
    # The server's CPU over the measured window only (after the warm-up,
    # in which the watchers' receive windows fill), read on the bench's
    # schedule: setup takes milliseconds, so the edges are off by about
    # that much.
    sleep "$WARMUP"
    s0=$(proc_cpu "$SERVER_PID")
    sleep "$DURATION"
    s1=$(proc_cpu "$SERVER_PID")
    wait "$bench"
    out=$(cat "$WORK/out")
    json=$(grep '^{' <<<"$out" | tail -1)
    rate=$(jnum calls_per_s <<<"$json")
    calls=$(jnum calls <<<"$json")  # in the measured window
    cpu=$(awk -v j=$((s1 - s0)) -v hz="$HZ" -v c="$calls" \
      'BEGIN { printf "%.1f", (c > 0 ? 1e6 * j / hz / c : 0) }')
    printf '%-4s %-9s %10.0f %16s\n' "$rep" "$w" "$rate" "$cpu"
    echo "$w $rate $cpu" >>"$WORK/rows"
  done
done
for w in 0 "$WATCHERS"; do
  r=$(awk -v w="$w" '$1 == w { print $2 }' "$WORK/rows" | median)
  c=$(awk -v w="$w" '$1 == w { print $3 }' "$WORK/rows" | median)
  echo "median  watchers=$w  calls/s $r  cpu_ms/1000calls $c"
  echo "$r $c" >>"$WORK/medians"
done
awk 'NR == 1 { r = $1; c = $2 } NR == 2 {
       printf "stalled / none: calls/s %.2f, server CPU per call %.2f\n",
              $1 / r, $2 / c }' "$WORK/medians"
