#!/usr/bin/env bash
# The sanitizer and fuzzing stage of CI, run by .ci/run after the normal
# build and tests. From the repository root:
#   1. asan preset: clang ASan+UBSan build of everything (with the libFuzzer
#      targets and the benchmark programs), every unit and integration test
#      and the benchmark smoke test (ctest --preset asan);
#   2. the fuzz targets of that build, FUZZ_SECONDS each, FUZZ_JOBS at once
#      (fuzz/run.sh);
#   3. tsan preset: clang TSan build without the benchmark programs, every
#      unit and integration test.
# A stage fails on a failed test or on any sanitizer report (from a test or
# from a server it started). Every stage runs even when an earlier one
# failed; the exit status is non-zero if any failed. Prints how long each
# stage took.
#
# Environment: JOBS (build and test parallelism, default 2), BUILD_JOBS
# (build parallelism, default JOBS), FUZZ_SECONDS
# (per target, default 60), FUZZ_JOBS (targets fuzzed at once, default 4:
# all of them), SANITIZERS (stages to run, default "asan fuzz tsan"),
# TSAN_TESTS (ctest -R regex limiting the tsan tests, default all),
# EXCLUDE_LABELS (ctest -LE regex, default none; "perf" leaves out the
# benchmark smoke test).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

jobs="${JOBS:-2}"
build_jobs="${BUILD_JOBS:-$jobs}"
fuzz_seconds="${FUZZ_SECONDS:-60}"
export FUZZ_JOBS="${FUZZ_JOBS:-4}"
exclude_labels="${EXCLUDE_LABELS:-}"
stages="${SANITIZERS:-asan fuzz tsan}"
failed=()
summary=()

# stage <name> <command...>: runs and times one step.
stage() {
  local name="$1"
  shift
  echo "=== ci-sanitizers: $name: $*"
  local start=$SECONDS
  "$@"
  local rc=$?
  local took=$((SECONDS - start))
  summary+=("$(printf '%-14s %5d s  %s' "$name" "$took" \
                "$([[ $rc -eq 0 ]] && echo ok || echo "FAILED ($rc)")")")
  [[ $rc -eq 0 ]] || failed+=("$name")
  return $rc
}

# The test presets send every sanitizer report, from the tests and from
# the servers they start (which a test may kill without looking at its
# exit status), to build-<preset>/sanitizer-reports/. Any file there fails
# the stage.
check_reports() {
  local dir="$1" n
  n=$(find "$dir" -type f | wc -l)
  if [[ "$n" -eq 0 ]]; then
    echo "ci-sanitizers: no sanitizer reports in $dir"
    return 0
  fi
  echo "ci-sanitizers: $n sanitizer report file(s) in $dir:" >&2
  local f
  for f in "$dir"/*; do
    echo "----- $f" >&2
    head -n 120 "$f" >&2
  done
  return 1
}

sanitizer_preset() {
  local preset="$1" regex="${2:-}"
  local reports="build-$preset/sanitizer-reports"
  stage "$preset-configure" cmake --preset "$preset" || return
  stage "$preset-build" cmake --build --preset "$preset" -j "$build_jobs" || return
  rm -rf "$reports" && mkdir -p "$reports"
  local filter=()
  [[ -n "$regex" ]] && filter+=(-R "$regex")
  [[ -n "$exclude_labels" ]] && filter+=(-LE "$exclude_labels")
  rm -f "build-$preset/Testing/Temporary/LastTestsFailed.log"
  if ! stage "$preset-test" ctest --preset "$preset" -j "$jobs" "${filter[@]}"; then
    # Named again in the summary: CI shows the end of the output, and the
    # test output of a later stage would hide ctest's own list.
    local list="build-$preset/Testing/Temporary/LastTestsFailed.log"
    [[ -f "$list" ]] && while IFS= read -r line; do
      summary+=("  failed: $line")
    done < "$list"
  fi
  stage "$preset-reports" check_reports "$reports"
}

for s in $stages; do
  case "$s" in
    asan) sanitizer_preset asan ;;
    fuzz)
      if [[ -x build-asan/fuzz/requests_fuzzer ]]; then
        stage fuzz fuzz/run.sh build-asan "$fuzz_seconds"
      else
        summary+=("fuzz           skipped: no fuzz targets in build-asan")
        failed+=(fuzz)
      fi
      ;;
    tsan) sanitizer_preset tsan "${TSAN_TESTS:-}" ;;
    *) echo "ci-sanitizers: unknown stage $s" >&2; exit 2 ;;
  esac
done

# The assertions of failed tests, just above the summary (CI shows the end).
for preset in asan tsan; do
  log="build-$preset/Testing/Temporary/LastTest.log"
  [[ -s "build-$preset/Testing/Temporary/LastTestsFailed.log" && -f "$log" ]] \
    || continue
  echo "=== ci-sanitizers: $preset: failed assertions (first 80 lines)"
  grep -E -A 6 ': Failure$|^\[  FAILED  \]|ERROR: (Address|Thread|Leak)Sanitizer' \
    "$log" | head -n 80
  # Tests that are not GoogleTest programs (Python, shell) print no
  # "Failure" line: show the end of each failed test's output.
  while IFS= read -r line; do
    name="${line#*:}"
    echo "=== ci-sanitizers: $preset: end of the output of $name"
    awk -v t="$name" '
      $0 ~ /^[0-9]+\/[0-9]+ Test: / { sub(/^[0-9]+\/[0-9]+ Test: /, ""); in_t = ($0 == t); next }
      in_t && /^<end of output>$/ { in_t = 0 }
      in_t { print }' "$log" | tail -n 40
  done < "build-$preset/Testing/Temporary/LastTestsFailed.log"
done

echo "=== ci-sanitizers: summary (wall time per stage)"
printf '%s\n' "${summary[@]}"
printf '%-14s %5d s\n' total "$SECONDS"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "ci-sanitizers: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "ci-sanitizers: all passed"
