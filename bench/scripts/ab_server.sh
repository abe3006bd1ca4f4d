#!/bin/bash
# A/B of two registrar binaries on one registrar-bench cell, alternating
# (before, after, before, ...) so that drift of a noisy machine falls on
# both alike; server pinned to CPU 1, client to CPU 0 (taskset).
# usage: [WORKLOAD="--workload=... --concurrency=N"] [REGISTRARCTL=path]
#        [BEFORE_ARGS="--flag=..."] [AFTER_ARGS="--flag=..."]
#        ab_server.sh BEFORE_BIN AFTER_BIN REGISTRAR_BENCH MODE ROUNDS
# (BEFORE_ARGS / AFTER_ARGS: extra server flags, e.g. one binary against
# itself with AFTER_ARGS=--commit_thread_nice=0)
# Default cell: release100-c1 (Cleanup by connection of 100 children, one
# caller). Prints one line per run: calls/s, p50, p90, p99.
set -u
BEFORE=$1 AFTER=$2 BENCH=$3 MODE=${4:-os} ROUNDS=${5:-3}
W=$(mktemp -d /tmp/ab.XXXXXX)
${REGISTRARCTL:-registrarctl} keygen --out=$W/key >/dev/null
run() {
  local bin=$1 label=$2 extra=$3
  rm -rf $W/data $W/ports; mkdir -p $W/data
  taskset -c 1 $bin --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0 --port_file=$W/ports \
    --key_file=$W/key --log_level=warn --shutdown_drain=0s --shutdown_timeout=2s --store=rocksdb \
    --data_dir=$W/data --durability=$MODE $extra > $W/server.log 2>&1 &
  local pid=$!
  for _ in $(seq 300); do grep -q '^grpc=' $W/ports 2>/dev/null && break; sleep 0.02; done
  local t=$(grep '^grpc=' $W/ports | cut -d= -f2)
  taskset -c 0 $BENCH --backend=registrar --target=$t --owners=1000 --duration=4s --warmup=1s \
    ${WORKLOAD:---workload=cleanup --children=100 --concurrency=1} --label="$label" 2>/dev/null | grep '^{' | tail -1 |
    python3 -c "import sys,json; d=json.loads(sys.stdin.read()); print('%-7s %8.1f calls/s p50 %7.1f p90 %7.1f p99 %8.1f us' % ('$label', d['calls_per_s'], d['p50_us'], d['p90_us'], d['p99_us']))"
  kill -TERM $pid; wait $pid 2>/dev/null
}
for r in $(seq $ROUNDS); do
  run $BEFORE before "${BEFORE_ARGS:-}"
  run $AFTER after "${AFTER_ARGS:-}"
done
rm -rf $W
