# Shell helpers the bench scripts share (sourced, not run).

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
