# Shell helpers the bench scripts share (sourced, not run).

# The calling script's header comment (its usage).
bench_usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

# Parses "[--smoke] BUILD_DIR" (--help prints the usage): sets SMOKE (0 or
# 1) and BUILD_ARG; exits 2 on bad usage.
smoke_args() {
  SMOKE=0
  while [[ $# -gt 0 ]]; do
    case $1 in
      --smoke) SMOKE=1; shift ;;
      -h|--help) bench_usage; exit 0 ;;
      -*) echo "unknown option $1" >&2; bench_usage >&2; exit 2 ;;
      *) break ;;
    esac
  done
  [[ $# -eq 1 ]] || { bench_usage >&2; exit 2; }
  BUILD_ARG=$1
}

# Checks the build dir ($1) holds the server and the bench, and sets
# BUILD, SERVER and BENCH.
bench_binaries() {
  BUILD=$(cd "$1" && pwd)
  SERVER=$BUILD/service/server/registrar
  BENCH=$BUILD/bench/programs/registrar-bench
  local b
  for b in "$SERVER" "$BENCH"; do
    [[ -x $b ]] || { echo "missing $b (build it first)" >&2; exit 2; }
  done
}

pin() {  # pin CPU cmd...: runs cmd on that CPU (taskset), or as is
  local cpu=$1; shift
  if [[ -n $cpu ]] && command -v taskset >/dev/null; then
    taskset -c "$cpu" "$@"
  else
    "$@"
  fi
}

jnum() {  # jnum KEY < json line: the number under KEY
  sed -n "s/.*\"$1\":\(-\{0,1\}[0-9][0-9.e+-]*\).*/\1/p"
}

proc_cpu() {  # jiffies a process has used (utime + stime)
  awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# The index (0-2) of the replica of a scripts/cluster.sh cluster that is the
# writer now (its registrar_cluster_is_leader gauge is 1); the cluster's
# cluster.env must be sourced (METRICS_0..2). Fails when none is. Each page
# is read whole before grep: grep -q leaving a pipe early fails curl
# (SIGPIPE), and pipefail would then call the writer a follower.
cluster_writer() {
  local i v page
  for i in 0 1 2; do
    v=METRICS_$i
    page=$(curl -fsS --max-time 2 "http://127.0.0.1:${!v}/metrics" 2>/dev/null) ||
      continue
    if grep -q '^registrar_cluster_is_leader 1' <<<"$page"; then
      echo "$i"
      return 0
    fi
  done
  echo "no replica is the writer" >&2
  return 1
}
