#!/usr/bin/env bash
# Two registrar servers through compare.sh's cells in one sitting, the two
# runs of a cell and mode back to back (before then after in odd rounds,
# after then before in even ones), so that the drift of a noisy machine
# falls on both alike; then one table of medians (issue 17's "no workload
# slower beyond noise"). Runs of whole compare.sh tables minutes apart do
# not do that: on this project's machines even echo's figure for a cell
# moves by up to 2x from one table to the next (bench/RESULTS.md
# section 17).
#
# Usage: bench/scripts/compare_ab.sh [--smoke] BEFORE_SERVER AFTER_BUILD
#   BEFORE_SERVER  the registrar binary to compare against (e.g. a Release
#                  build of an older commit in a git worktree)
#   AFTER_BUILD    a Release build with registrar, registrar-bench and
#                  registrar-echo; its client serves both sides
#   --smoke        compare.sh --smoke's cells (~1 s each, fsync mode), one
#                  round: checks that the script runs (ctest
#                  perf_compare_ab_smoke)
#
# Environment knobs [defaults]:
#   ROUNDS [3]        runs per server, cell and mode
#   MODES ["fsync os none"], ONLY [every cell], DURATION, WARMUP,
#   SERVER_CPU, CLIENT_CPU   passed to compare.sh (see its header)
#   OUT [unset]       also keep the JSON lines as OUT-{before,after}.jsonl
#                     and the table as OUT-table.txt
# Per cell and mode: the median calls/s of each server, the ratio of the
# two medians, the median of the per-round ratios (after/before of the two
# back-to-back runs: the paired figure, which the machine's drift from
# round to round does not move), and each run's figure. A row is marked
# SLOWER when the paired median is below 0.95 AND after was slower in
# every round (3 rounds or more; 5 of 5 happens by chance 1 time in 32);
# "lower" when only the paired median is below 0.95.
# Takes about 6.5 s a run: 11 cells x 3 modes x 2 servers x ROUNDS runs
# (ROUNDS=5 took 36 minutes on 2026-12-04, so ROUNDS=3 about 21).
# Exit status: 0 when every run succeeded and every row has figures of
# both servers (whatever they are), 1 otherwise, 2 on bad usage.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

[[ ${1:-} == -h || ${1:-} == --help ]] && { bench_usage; exit 0; }
SMOKE_ARG=()
if [[ ${1:-} == --smoke ]]; then
  SMOKE_ARG=(--smoke)
  ROUNDS=${ROUNDS:-1}
  MODES=${MODES:-fsync}
  shift
fi
[[ $# -eq 2 ]] || { bench_usage >&2; exit 2; }
BEFORE=$(realpath "$1")
AFTER_BUILD=$(cd "$2" && pwd)
[[ -x $BEFORE ]] || { echo "not an executable: $1" >&2; exit 2; }
ROUNDS=${ROUNDS:-3}
MODES=${MODES:-"fsync os none"}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
COMPARE=$HERE/compare.sh
CELLS=${ONLY:-$(LIST_CELLS=1 "$COMPARE" "${SMOKE_ARG[@]}" "$AFTER_BUILD")}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/registrar-compare-ab.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
status=0
one_run() {  # one_run SIDE CELL MODE ROUND
  local server=$AFTER_BUILD/service/server/registrar
  [[ $1 == before ]] && server=$BEFORE
  if ! SERVER_BIN=$server ONLY=$2 MODES=$3 BASELINES='' OPEN_LOOP=0 \
      RAW=$WORK/$1-$4.jsonl "$COMPARE" "${SMOKE_ARG[@]}" "$AFTER_BUILD" \
      >"$WORK/run.txt" 2>&1; then
    echo "compare.sh failed: $1, $2, $3:" >&2
    tail -20 "$WORK/run.txt" >&2
    status=1
  fi
}
for r in $(seq "$ROUNDS"); do
  echo "round $r/$ROUNDS ($(date -u +%H:%M:%S) UTC)" >&2
  sides="before after"
  (( r % 2 == 0 )) && sides="after before"
  for cell in $CELLS; do
    for mode in $MODES; do
      for side in $sides; do one_run "$side" "$cell" "$mode" "$r"; done
    done
  done
done
if [[ -n ${OUT:-} ]]; then
  for side in before after; do
    cat "$WORK/$side"-*.jsonl >"$OUT-$side.jsonl" 2>/dev/null || true
  done
fi

table=/dev/null
[[ -n ${OUT:-} ]] && table=$OUT-table.txt
if ! python3 - "$WORK" "$ROUNDS" <<'PY' | tee "$table"; then
import collections, json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
# runs[key][side][round] = calls/s; a failed run leaves its round out, so
# the pairs below are always the two runs of one round.
runs = collections.defaultdict(lambda: {"before": {}, "after": {}})
order = []
for side in ("before", "after"):
    for r in range(1, rounds + 1):
        try:
            lines = open(f"{work}/{side}-{r}.jsonl").read().splitlines()
        except OSError:
            lines = []
        for line in lines:
            j = json.loads(line)
            key = j["label"]
            if key not in runs:
                order.append(key)
            runs[key][side][r] = j["calls_per_s"]
missing = 0
print("%-30s %9s %9s %6s %6s  %s" % ("cell mode (calls/s)", "before",
                                      "after", "ratio", "paired",
                                      "runs: before | after"))
for key in order:
    rb, ra = runs[key]["before"], runs[key]["after"]
    b, a = list(rb.values()), list(ra.values())
    if not b or not a:
        print("%-30s no figures from %s" % (key, "before" if not b else "after"))
        missing += 1
        continue
    mb, ma = statistics.median(b), statistics.median(a)
    ratio = ma / mb if mb else float("nan")
    pairs = [ra[r] / rb[r] for r in rb if r in ra and rb[r] > 0]
    paired = statistics.median(pairs) if pairs else float("nan")
    mark = ""
    if paired < 0.95:
        every = len(pairs) >= 3 and all(p < 1 for p in pairs)
        mark = "  SLOWER" if every else "  lower"
    print("%-30s %9.0f %9.0f %6.2f %6.2f  %s | %s%s" % (
        key, mb, ma, ratio, paired, " ".join("%.0f" % x for x in b),
        " ".join("%.0f" % x for x in a), mark))
if not order:
    print("no figures at all")
sys.exit(1 if missing or not order else 0)
PY
  status=1
fi
exit $status
