#!/usr/bin/env bash
# A Registrar cluster on this machine, for development: a 3-member etcd
# cluster (Debian's etcd) and 3 registrar replicas with --store=etcd on one
# prefix, everything on 127.0.0.1 (free ports picked at the first start).
#
# Usage: scripts/cluster.sh [--build=BUILD_DIR] start|stop|status [DIR]
#   start   starts what is not running, waits until every replica reports
#           SERVING (grpc.health.v1) and exactly one is the elected writer,
#           then prints the endpoints and a --target= line for registrarctl
#   stop    SIGTERM to the replicas, then to etcd; SIGKILL to what is still
#           there after STOP_TIMEOUT; returns once every process is gone
#   status  which processes are up, each replica's role and health, the
#           etcd members' leader
#   DIR     the cluster's directory [./registrar-cluster]: ports, pids, logs
#           (DIR/logs/), etcd's data (DIR/etcd/), the tag key (DIR/tag.key,
#           made once with `registrarctl keygen`). A later start reuses it,
#           so records survive stop/start; `rm -rf DIR` starts afresh.
#
# Environment:
#   BUILD_DIR [build]       where registrar and registrarctl were built
#                           (--build= wins)
#   ETCD [/usr/bin/etcd]    the etcd binary
#   START_TIMEOUT [60]      seconds start waits for health and a writer
#   STOP_TIMEOUT [20]       seconds stop waits before SIGKILL
#   REGISTRAR_<FLAG>        passed on to every replica (registrar reads its
#                           flags from the environment), e.g.
#                           REGISTRAR_ETCD_NODE_TTL=4s, REGISTRAR_LOG_LEVEL=debug
#
# etcd runs with the settings of README "etcd settings" (--max-txn-ops
# 16384, --max-request-bytes 8 MiB, quota, revision auto compaction) and
# the replicas with the same two limits. Replicas serve plaintext on
# loopback (no TLS, no callers file): a developer's cluster, not a
# deployment (deploy/k8s/registrar-cluster.yaml is one).
#
# Exit status: 0 ok, 1 failure (start: something did not come up; the
# log's tail is printed), 2 usage. tests/deploy/cluster_sh_test.py runs it.
set -euo pipefail

PY=/usr/bin/python3
MEMBERS=3
PREFIX=/registrar

usage() {
  sed -n '/^# Usage/,/^# Exit status/p' "${BASH_SOURCE[0]}" |
    sed -e '$d' -e 's/^# \{0,1\}//' >&2
  exit 2
}

build="${BUILD_DIR:-build}"
while [[ $# -gt 0 && "$1" == --* ]]; do
  case "$1" in
    --build=*) build="${1#--build=}" ;;
    --help | -h) usage ;;
    *) echo "cluster.sh: unknown option $1" >&2; usage ;;
  esac
  shift
done
[[ $# -ge 1 && $# -le 2 ]] || usage
command="$1"
dir="$(realpath -m -- "${2:-registrar-cluster}")"
[[ "$build" == /* ]] || build="$PWD/$build"
REGISTRAR="$build/service/server/registrar"
REGISTRARCTL="$build/tools/registrarctl/registrarctl"
ETCD="${ETCD:-/usr/bin/etcd}"
START_TIMEOUT="${START_TIMEOUT:-60}"
STOP_TIMEOUT="${STOP_TIMEOUT:-20}"
ENV_FILE="$dir/cluster.env"

die() {
  echo "cluster.sh: $*" >&2
  exit 1
}

# ------------------------------------------------------------- helpers

# N free TCP ports on 127.0.0.1 (held together while picked, so distinct).
free_ports() {
  "$PY" - "$1" <<'EOF'
import socket, sys
held = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(" ".join(str(s.getsockname()[1]) for s in held))
EOF
}

# grpc.health.v1.Health/Check of registrar.v1.Registrar at ADDRESS: prints
# SERVING, NOT_SERVING, ... or DOWN. The messages are encoded by hand (one
# string field; one enum field), so no generated stubs are needed.
health() {
  "$PY" - "$1" <<'EOF' 2>/dev/null || echo DOWN
import sys
import grpc
service = b"registrar.v1.Registrar"
request = b"\x0a" + bytes([len(service)]) + service
names = {b"": "UNKNOWN", b"\x08\x01": "SERVING", b"\x08\x02": "NOT_SERVING"}
with grpc.insecure_channel(sys.argv[1]) as channel:
    try:
        reply = channel.unary_unary("/grpc.health.v1.Health/Check")(
            request, timeout=2)
        print(names.get(reply, "UNKNOWN"))
    except grpc.RpcError:
        print("DOWN")
EOF
}

# The value of an unlabelled gauge on a replica's /metrics (empty if none).
gauge() {
  curl -fsS --max-time 2 "http://$1/metrics" 2>/dev/null |
    awk -v name="$2" '$1 == name { print $2; exit }' || true
}

# Whether PID runs (a zombie no longer does: it waits for a reaper that
# may be slow to come, e.g. in a container).
running() {
  local state
  # The state follows the command name, which is in parentheses.
  state="$(sed -n 's/.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null)" ||
    return 1
  [[ -n "$state" && "$state" != Z && "$state" != X ]]
}

# Whether the pid in FILE is alive and still the process started from DIR
# (its command line names DIR: a recycled pid is not ours).
alive() {
  local file="$1" pid
  [[ -f "$file" ]] || return 1
  pid="$(cat "$file")"
  [[ -n "$pid" ]] && running "$pid" &&
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$dir/"
}

# Starts a detached process (own session: a Ctrl-C at the shell that ran
# start does not reach it) with its output in LOG and its pid in PIDFILE.
spawn() {
  local pidfile="$1" log="$2"
  shift 2
  setsid "$@" </dev/null >>"$log" 2>&1 &
  echo $! >"$pidfile"
}

# Polls (a real child process tells no one when it is ready) until
# "$@" succeeds or TIMEOUT seconds pass.
poll() {
  local timeout="$1"
  shift
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

load_env() {
  if [[ ! -f "$ENV_FILE" ]]; then
    local ports
    read -r -a ports <<<"$(free_ports $((4 * MEMBERS)))"
    {
      for ((i = 0; i < MEMBERS; ++i)); do
        echo "ETCD_CLIENT_$i=${ports[$i]}"
        echo "ETCD_PEER_$i=${ports[$((MEMBERS + i))]}"
        echo "GRPC_$i=${ports[$((2 * MEMBERS + i))]}"
        echo "METRICS_$i=${ports[$((3 * MEMBERS + i))]}"
      done
    } >"$ENV_FILE"
  fi
  # shellcheck disable=SC1090
  source "$ENV_FILE"
  ETCD_ENDPOINTS=""
  INITIAL_CLUSTER=""
  TARGET=""
  for ((i = 0; i < MEMBERS; ++i)); do
    local client="ETCD_CLIENT_$i" peer="ETCD_PEER_$i" grpc="GRPC_$i"
    ETCD_ENDPOINTS+="${ETCD_ENDPOINTS:+,}127.0.0.1:${!client}"
    INITIAL_CLUSTER+="${INITIAL_CLUSTER:+,}etcd$i=http://127.0.0.1:${!peer}"
    TARGET+="${TARGET:+,}127.0.0.1:${!grpc}"
  done
}

grpc_address() { local v="GRPC_$1"; echo "127.0.0.1:${!v}"; }
metrics_address() { local v="METRICS_$1"; echo "127.0.0.1:${!v}"; }
etcd_client() { local v="ETCD_CLIENT_$1"; echo "127.0.0.1:${!v}"; }

tail_logs() {
  local log
  for log in "$@"; do
    [[ -f "$log" ]] || continue
    echo "--- last lines of $log" >&2
    tail -n 15 "$log" >&2
  done
}

# ------------------------------------------------------------- start

start_etcd() {
  local i="$1" client peer
  client="ETCD_CLIENT_$i"
  peer="ETCD_PEER_$i"
  # etcd reads ETCD_* variables as flags: none may leak in from here.
  local unset=() name
  for name in $(compgen -e); do
    [[ "$name" == ETCD* ]] && unset+=(-u "$name")
  done
  spawn "$dir/run/etcd$i.pid" "$dir/logs/etcd$i.log" \
    env "${unset[@]}" "$ETCD" --name="etcd$i" --data-dir="$dir/etcd/etcd$i" \
    --listen-client-urls="http://127.0.0.1:${!client}" \
    --advertise-client-urls="http://127.0.0.1:${!client}" \
    --listen-peer-urls="http://127.0.0.1:${!peer}" \
    --initial-advertise-peer-urls="http://127.0.0.1:${!peer}" \
    --initial-cluster="$INITIAL_CLUSTER" \
    --initial-cluster-state=new \
    --initial-cluster-token="registrar-dev-$(basename "$dir")" \
    --max-txn-ops=16384 --max-request-bytes=8388608 \
    --quota-backend-bytes=2147483648 \
    --auto-compaction-mode=revision --auto-compaction-retention=10000 \
    --logger=zap --log-outputs=stderr
}

start_replica() {
  local i="$1"
  mkdir -p "$dir/replica$i"
  rm -f "$dir/replica$i/ports"
  spawn "$dir/run/replica$i.pid" "$dir/logs/replica$i.log" \
    "$REGISTRAR" --store=etcd --etcd_endpoints="$ETCD_ENDPOINTS" \
    --etcd_prefix="$PREFIX" \
    --etcd_max_txn_ops=16384 --etcd_max_request_bytes=8388608 \
    --listen="$(grpc_address "$i")" \
    --advertise_address="$(grpc_address "$i")" \
    --metrics_listen="$(metrics_address "$i")" \
    --key_file="$dir/tag.key" \
    --data_dir="$dir/replica$i/data" \
    --port_file="$dir/replica$i/ports"
}

etcd_healthy() {
  local i
  for ((i = 0; i < MEMBERS; ++i)); do
    alive "$dir/run/etcd$i.pid" || die "etcd$i exited; $(tail_logs \
      "$dir/logs/etcd$i.log" 2>&1)"
    curl -fsS --max-time 2 "http://$(etcd_client "$i")/health" 2>/dev/null |
      grep -q '"health":"true"' || return 1
  done
}

# Every replica SERVING and exactly one of them the writer.
replicas_ready() {
  local i writers=0
  for ((i = 0; i < MEMBERS; ++i)); do
    alive "$dir/run/replica$i.pid" || die "replica$i exited; $(tail_logs \
      "$dir/logs/replica$i.log" 2>&1)"
    [[ -f "$dir/replica$i/ports" ]] || return 1
    [[ "$(health "$(grpc_address "$i")")" == SERVING ]] || return 1
    [[ "$(gauge "$(metrics_address "$i")" registrar_cluster_is_leader)" == 1 ]] &&
      writers=$((writers + 1))
  done
  ((writers == 1))
}

cmd_start() {
  [[ -x "$REGISTRAR" && -x "$REGISTRARCTL" ]] ||
    die "no registrar/registrarctl in $build (build them, or pass --build=DIR)"
  [[ -x "$ETCD" ]] || die "no etcd at $ETCD (apt-get install etcd-server)"
  mkdir -p "$dir/run" "$dir/logs" "$dir/etcd"
  load_env
  if [[ ! -f "$dir/tag.key" ]]; then
    "$REGISTRARCTL" keygen --out="$dir/tag.key" >/dev/null
  fi
  local i
  for ((i = 0; i < MEMBERS; ++i)); do
    alive "$dir/run/etcd$i.pid" || start_etcd "$i"
  done
  poll "$START_TIMEOUT" etcd_healthy || {
    tail_logs "$dir"/logs/etcd*.log
    die "etcd did not become healthy within ${START_TIMEOUT}s"
  }
  for ((i = 0; i < MEMBERS; ++i)); do
    alive "$dir/run/replica$i.pid" || start_replica "$i"
  done
  poll "$START_TIMEOUT" replicas_ready || {
    tail_logs "$dir"/logs/replica*.log
    cmd_status >&2 || true
    die "the replicas were not all SERVING with one writer within" \
      "${START_TIMEOUT}s"
  }
  echo "Registrar cluster in $dir: etcd $ETCD_ENDPOINTS (prefix $PREFIX)"
  for ((i = 0; i < MEMBERS; ++i)); do
    local role=follower
    [[ "$(gauge "$(metrics_address "$i")" registrar_cluster_is_leader)" == 1 ]] &&
      role=writer
    echo "  replica$i  grpc $(grpc_address "$i")  metrics" \
      "http://$(metrics_address "$i")/metrics  pid" \
      "$(cat "$dir/run/replica$i.pid")  $role"
  done
  echo "--target=$TARGET"
  echo "e.g. $REGISTRARCTL --target=$TARGET issue --kind=thread" \
    "--tenant=acme --user=alice"
}

# ------------------------------------------------------------- stop

# SIGTERM to every live pid file given, then waits; SIGKILL at the timeout.
stop_all() {
  local file pids=()
  for file in "$@"; do
    if alive "$file"; then
      pids+=("$(cat "$file")")
      kill -TERM "$(cat "$file")" 2>/dev/null || true
    fi
  done
  gone() {
    local pid
    for pid in "${pids[@]}"; do
      running "$pid" && return 1
    done
    return 0
  }
  if ! poll "$STOP_TIMEOUT" gone; then
    echo "cluster.sh: SIGKILL to what did not stop within ${STOP_TIMEOUT}s" >&2
    for file in "$@"; do
      if alive "$file"; then kill -KILL "$(cat "$file")" 2>/dev/null || true; fi
    done
    poll 10 gone || die "processes ${pids[*]} did not go"
  fi
  rm -f "$@"
}

cmd_stop() {
  [[ -d "$dir/run" ]] || { echo "nothing started in $dir"; return 0; }
  local i replicas=() members=()
  for ((i = 0; i < MEMBERS; ++i)); do
    replicas+=("$dir/run/replica$i.pid")
    members+=("$dir/run/etcd$i.pid")
  done
  # Replicas first: they still reach etcd while they stop.
  stop_all "${replicas[@]}"
  stop_all "${members[@]}"
  echo "stopped the cluster in $dir"
}

# ------------------------------------------------------------- status

cmd_status() {
  [[ -f "$ENV_FILE" ]] || { echo "no cluster in $dir"; return 1; }
  load_env
  local i up=0
  for ((i = 0; i < MEMBERS; ++i)); do
    if alive "$dir/run/etcd$i.pid"; then
      up=$((up + 1))
      echo "etcd$i      up    $(etcd_client "$i")  pid $(cat "$dir/run/etcd$i.pid")"
    else
      echo "etcd$i      down  $(etcd_client "$i")"
    fi
  done
  for ((i = 0; i < MEMBERS; ++i)); do
    if alive "$dir/run/replica$i.pid"; then
      up=$((up + 1))
      local role=follower
      [[ "$(gauge "$(metrics_address "$i")" registrar_cluster_is_leader)" == 1 ]] &&
        role=writer
      echo "replica$i   up    $(grpc_address "$i")  pid" \
        "$(cat "$dir/run/replica$i.pid")  $(health "$(grpc_address "$i")")  $role"
    else
      echo "replica$i   down  $(grpc_address "$i")"
    fi
  done
  if ((up > 0)) && command -v etcdctl >/dev/null; then
    echo "etcd members (etcdctl endpoint status):"
    ETCDCTL_API=3 etcdctl --endpoints="$ETCD_ENDPOINTS" \
      --command-timeout=2s endpoint status -w table 2>&1 | sed 's/^/  /' || true
  fi
  echo "--target=$TARGET"
  ((up == 2 * MEMBERS))
}

case "$command" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) usage ;;
esac
