#!/bin/bash
# What Registrar's state costs in etcd and how fast a replica starts on it
# (issue 13, "bounded etcd"): a 3-member etcd on loopback with the README's
# settings ("etcd settings"), RECORDS live records written through
# registrar-etcdbench (record_mix.h's gateway-like mix), then
#  1. etcd's database size per record, after compaction and defragmentation;
#  2. a writer's load of them into the registry, in-process (etcdbench load);
#  3. the real `registrar --store=etcd` from exec until it serves (its port
#     file written: node id claimed, state loaded, gRPC listening), and the
#     start-up time its own log reports.
# usage: bench/scripts/etcd_start.sh BUILD_DIR [RECORDS (1000000)]
# Needs etcd and etcdctl (Debian's etcd-server, etcd-client). Takes about
# 3 minutes at 1M records on the 2-core machine; everything runs unpinned.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
source "$HERE/lib.sh"
bench_binaries "${1:?usage: etcd_start.sh BUILD_DIR [RECORDS]}"
RECORDS=${2:-1000000}
ETCDBENCH=$BUILD/bench/programs/registrar-etcdbench
CTL=$BUILD/tools/registrarctl/registrarctl
[[ -x $ETCDBENCH && -x $CTL ]] || { echo "build registrar-etcdbench and registrarctl first" >&2; exit 2; }
W=$(mktemp -d /tmp/etcd-start.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT

read -r -a PORTS <<<"$(python3 -c 'import socket
s=[socket.socket() for _ in range(6)]
[x.bind(("127.0.0.1",0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')"
CLUSTER="" ENDPOINTS=""
for i in 0 1 2; do
  CLUSTER+="${CLUSTER:+,}m$i=http://127.0.0.1:${PORTS[$((3 + i))]}"
  ENDPOINTS+="${ENDPOINTS:+,}127.0.0.1:${PORTS[$i]}"
done
for i in 0 1 2; do
  etcd --name "m$i" --data-dir "$W/m$i" \
    --listen-client-urls "http://127.0.0.1:${PORTS[$i]}" \
    --advertise-client-urls "http://127.0.0.1:${PORTS[$i]}" \
    --listen-peer-urls "http://127.0.0.1:${PORTS[$((3 + i))]}" \
    --initial-advertise-peer-urls "http://127.0.0.1:${PORTS[$((3 + i))]}" \
    --initial-cluster "$CLUSTER" --initial-cluster-state new \
    --max-txn-ops=16384 --max-request-bytes=8388608 \
    --quota-backend-bytes=2147483648 \
    --auto-compaction-mode=revision --auto-compaction-retention=10000 \
    >"$W/etcd$i.log" 2>&1 &
  PIDS+=($!)
done
for _ in $(seq 300); do
  ETCDCTL_API=3 etcdctl --endpoints="$ENDPOINTS" endpoint health >/dev/null 2>&1 && break
  sleep 0.1
done
ETCDCTL_API=3 etcdctl --endpoints="$ENDPOINTS" endpoint health >/dev/null
echo "etcd: 3 members at $ENDPOINTS ($(etcd --version | head -1))"

common=(--etcd_endpoints="$ENDPOINTS" --etcd_prefix=/registrar)
"$ETCDBENCH" --phase=create --records="$RECORDS" "${common[@]}"
"$ETCDBENCH" --phase=load "${common[@]}"

"$CTL" keygen --out="$W/key" >/dev/null
start=$(date +%s.%N)
"$SERVER" --store=etcd "${common[@]}" --etcd_max_txn_ops=16384 \
  --etcd_max_request_bytes=8388608 --key_file="$W/key" \
  --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0 --port_file="$W/ports" \
  --log_level=info >"$W/server.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 1200); do
  grep -q '^grpc=' "$W/ports" 2>/dev/null && break
  kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$W/server.log"; exit 1; }
  sleep 0.05
done
serving=$(date +%s.%N)
grep -q '^grpc=' "$W/ports" || { echo "server did not start" >&2; cat "$W/server.log"; exit 1; }
printf 'registrar --store=etcd: exec to serving %.2f s (bound: 0.05 s polling)\n' \
  "$(python3 -c "print($serving - $start)")"
grep -E 'storage: etcd|now the writer|recovered' "$W/server.log" | sed 's/^/  log: /'
