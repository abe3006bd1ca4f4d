#!/usr/bin/env bash
# etcd's database under steady load (issue 13, "bounded etcd"): a cluster
# from scripts/cluster.sh (3-member etcd with the README's settings: revision
# auto-compaction, 2 GiB quota; 3 replicas) under registrar-bench's gateway
# workload (connect, keep-alive, OpenContext + Validate per message,
# disconnect: records are made and ended all the time) spread over the 3
# replicas, for SECONDS. Every SAMPLE seconds one row: etcd's revision, its
# database size (the file) and the part in use, the keys under Registrar's
# prefix, the writer's live records and tombstones. Registrar's tombstone
# removal (--tombstone_retention) and event-log trimming (--event_history)
# delete keys; etcd's compaction frees their old revisions and bbolt reuses
# the pages, so the database must level off instead of growing with the
# records ever made. The retention and history are shortened (below) so
# that the steady state comes within minutes instead of hours.
#
# Usage: bench/scripts/etcd_steady.sh BUILD_DIR [SECONDS (660)]
# Environment: TOMBSTONE_RETENTION [60s], EVENT_HISTORY [100000],
#   SAMPLE [15] seconds between rows, CONCURRENCY [16], DATA_ROOT [/tmp],
#   REUSE [1]: the share of sessions that go on with their owner's last
#   thread (registrar-bench --session_reuse). At 1 the threads stay one per
#   owner, so the live records level off and only history would grow; below
#   1 new threads pile up (conversations nobody ends) and the database grows
#   with them, as it must.
# etcd 3.4's revision auto-compaction runs every 5 minutes: run longer than
# that (the default, 660 s, sees two) to see history freed.
# Nothing pinned; needs etcd and etcdctl (etcd-server, etcd-client).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
source "$HERE/lib.sh"
bench_binaries "${1:?usage: etcd_steady.sh BUILD_DIR [SECONDS]}"
SECS=${2:-660}
SAMPLE=${SAMPLE:-15}
export REGISTRAR_TOMBSTONE_RETENTION=${TOMBSTONE_RETENTION:-60s}
export REGISTRAR_EVENT_HISTORY=${EVENT_HISTORY:-100000}
command -v etcdctl >/dev/null || { echo "etcdctl not installed (etcd-client)" >&2; exit 2; }

W=$(mktemp -d "${DATA_ROOT:-/tmp}/registrar-etcd-steady.XXXXXX")
BENCH_PID=
cleanup() {
  set +e  # every step runs, whatever the one before returned
  [[ -n $BENCH_PID ]] && kill -KILL "$BENCH_PID" 2>/dev/null
  STOP_TIMEOUT=5 "$ROOT/scripts/cluster.sh" --build="$BUILD" stop "$W/cluster" \
    >/dev/null 2>&1 || true
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
"$ROOT/scripts/cluster.sh" --build="$BUILD" start "$W/cluster" >"$W/start.out" 2>&1 ||
  { cat "$W/start.out" >&2; exit 1; }
# shellcheck disable=SC1091
source "$W/cluster/cluster.env"
REPLICAS="127.0.0.1:$GRPC_0,127.0.0.1:$GRPC_1,127.0.0.1:$GRPC_2"
ETCD="127.0.0.1:$ETCD_CLIENT_0,127.0.0.1:$ETCD_CLIENT_1,127.0.0.1:$ETCD_CLIENT_2"
ctl() { ETCDCTL_API=3 etcdctl --endpoints="$ETCD" --command-timeout=10s "$@"; }

# The writer's /metrics page (empty when there is none at the moment).
writer_metrics() {
  local w v
  w=$(cluster_writer 2>/dev/null) || return 0
  v=METRICS_$w
  curl -fsS --max-time 2 "http://127.0.0.1:${!v}/metrics" 2>/dev/null || true
}

echo "etcd $ETCD ($(etcd --version | head -1)); replicas $REPLICAS"
echo "replicas: --tombstone_retention=$REGISTRAR_TOMBSTONE_RETENTION --event_history=$REGISTRAR_EVENT_HISTORY; load: gateway, concurrency ${CONCURRENCY:-16}, thread reuse ${REUSE:-1}, ${SECS} s"
"$BENCH" --backend=registrar --target="$REPLICAS" --channels=3 \
  --workload=gateway --concurrency="${CONCURRENCY:-16}" --owners=1000 \
  --session_reuse="${REUSE:-1}" \
  --warmup=0s --duration="${SECS}s" --label="etcd-steady" >"$W/bench.out" 2>&1 &
BENCH_PID=$!

printf '%6s %10s %10s %10s %10s %10s %11s\n' t_s revision db_MiB in_use_MiB keys live tombstones
start=$SECONDS
rows=$W/rows
: >"$rows"
while kill -0 "$BENCH_PID" 2>/dev/null; do
  t=$((SECONDS - start))
  # One member's status (the leader's view is enough: members hold the same
  # keys; each has its own file).
  # (|| true: a sample that fails shows as "-", it does not end the run.)
  status=$(ctl endpoint status -w json 2>/dev/null | tr '{' '\n' |
    awk '/"dbSize"/ { print; exit }' || true)
  rev=$(jnum revision <<<"$status"); db=$(jnum dbSize <<<"$status")
  inuse=$(jnum dbSizeInUse <<<"$status")
  # A Range's count is every key in it, whatever its limit.
  keys=$(ctl get --prefix /registrar --keys-only --limit=1 -w json 2>/dev/null |
    jnum count || true)
  page=$(writer_metrics || true)
  live=$(awk '/^registrar_live_records\{/ { s += $2 } END { print s + 0 }' <<<"$page")
  tomb=$(awk '$1 == "registrar_tombstones" { print $2 }' <<<"$page")
  printf '%6d %10s %10.1f %10.1f %10s %10s %11s\n' "$t" "${rev:--}" \
    "$(awk -v b="${db:-0}" 'BEGIN { print b / 1048576 }')" \
    "$(awk -v b="${inuse:-0}" 'BEGIN { print b / 1048576 }')" \
    "${keys:--}" "${live:--}" "${tomb:--}" | tee -a "$rows"
  # Sampling a running load: a benchmark's pacing, not a test's wait.
  for _ in $(seq "$((SAMPLE * 10))"); do
    kill -0 "$BENCH_PID" 2>/dev/null || break
    sleep 0.1
  done
done
wait "$BENCH_PID" || true
BENCH_PID=
grep -E '^  (calls|rpcs|started|error|longest)' "$W/bench.out" || true
# Level: the database's largest size in the first and the second half.
awk -v half=$((SECS / 2)) '
  $1 < half { if ($3 > a) a = $3; if ($4 > ai) ai = $4 }
  $1 >= half { if ($3 > b) b = $3; if ($4 > bi) bi = $4 }
  END { printf "largest db file: first half %.1f MiB, second half %.1f MiB; in use: %.1f / %.1f MiB\n", a, b, ai, bi }' "$rows"
