#!/usr/bin/env bash
# Runs every libFuzzer target of a build for a bounded time and fails if
# any finds a crash, a leak, a timeout or runs out of memory.
#
#   fuzz/run.sh <build dir> <seconds per target> [target...]
#
# The build must have been configured with REGISTRAR_BUILD_FUZZERS=ON
# (the asan preset does: fuzz/run.sh build-asan 60). Each target starts
# from its seed corpus (fuzz/corpus/<target>/) and the kept regressions
# (fuzz/regressions/<target>/); new inputs go to a scratch corpus, never
# into the repository. A crashing input is saved as
# <scratch>/<target>/crash-<sha1> and named in the output: fix the bug,
# then keep the input as fuzz/regressions/<target>/<short name> so every
# build replays it (ctest fuzz_replay.<target>).
#
# Environment: FUZZ_WORK_DIR (scratch; default a temp dir, kept on
# failure), FUZZ_JOBS (parallel targets, default 1).
set -uo pipefail

if [[ $# -lt 2 ]]; then
  echo "usage: $0 <build dir> <seconds per target> [target...]" >&2
  exit 2
fi
build="$(cd "$1" && pwd)"
seconds="$2"
shift 2
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  targets=(id_fuzzer key_file_fuzzer callers_file_fuzzer requests_fuzzer)
fi
work="${FUZZ_WORK_DIR:-$(mktemp -d -t registrar-fuzz.XXXXXX)}"
mkdir -p "$work"

# Leaks and UB abort the run like crashes; ASan/UBSan settings as in the
# asan test preset.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

run_target() {
  local target="$1" bin="$build/fuzz/$1"
  local out="$work/$target"
  mkdir -p "$out/corpus"
  if [[ ! -x "$bin" ]]; then
    echo "fuzz: $bin not found (configure with -DREGISTRAR_BUILD_FUZZERS=ON" \
         "and build target 'fuzzers')" >&2
    return 1
  fi
  local start=$SECONDS
  # -timeout: one input taking longer is a finding (slow parsing is a DoS).
  # -rss_limit_mb: bounded memory per input. -max_len: inputs as large as a
  # request the server would take are not needed to find parser bugs.
  "$bin" "$out/corpus" "$root/fuzz/corpus/$target" \
      "$root/fuzz/regressions/$target" \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -max_len=4096 -print_final_stats=1 \
      -artifact_prefix="$out/" >"$out/log" 2>&1
  local rc=$?
  local stats
  stats=$(grep -E "^stat::(number_of_executed_units|peak_rss_mb)" "$out/log" |
          sed 's/^stat:://' | tr '\n' ' ')
  if [[ $rc -eq 0 ]]; then
    echo "fuzz: $target ok in $((SECONDS - start)) s: $stats" \
         "corpus $(ls "$out/corpus" | wc -l) new inputs"
    return 0
  fi
  echo "fuzz: $target FAILED (exit $rc) after $((SECONDS - start)) s" >&2
  grep -E "^==[0-9]+==|ERROR: libFuzzer|SUMMARY|_fuzzer: |^ *#[0-9]+ 0x" \
      "$out/log" | head -60 >&2
  local artifact
  for artifact in "$out"/crash-* "$out"/leak-* "$out"/timeout-* "$out"/oom-* \
                  "$out"/slow-unit-*; do
    [[ -e "$artifact" ]] || continue
    echo "fuzz: input: $artifact (keep it in fuzz/regressions/$target/" \
         "once fixed; reproduce with: $bin $artifact)" >&2
  done
  echo "fuzz: full log: $out/log" >&2
  return 1
}

# Each target's verdict goes to <scratch>/<target>/status (0 = passed), so
# targets can run in parallel.
run_one() { run_target "$1"; echo $? >"$work/$1/status"; }
jobs="${FUZZ_JOBS:-1}"
for t in "${targets[@]}"; do
  mkdir -p "$work/$t"
  rm -f "$work/$t/status"
  if [[ "$jobs" -le 1 ]]; then
    run_one "$t"
  else
    while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do wait -n; done
    run_one "$t" &
  fi
done
wait
failed=()
for t in "${targets[@]}"; do
  [[ "$(cat "$work/$t/status" 2>/dev/null)" == 0 ]] || failed+=("$t")
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: failed: ${failed[*]} (scratch kept in $work)" >&2
  exit 1
fi
[[ -z "${FUZZ_WORK_DIR:-}" ]] && rm -rf "$work"
exit 0
