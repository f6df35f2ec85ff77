#!/usr/bin/env bash
# bench_report.sh: measures `sockrewind-analyze report DIR --format json` on synthetic series
# written by tests/bench/gen_series (the collector's own writer, see tests/synth): a day of
# one-minute snapshots of 1,000 sockets (24 files of 60 snapshots, as cron would leave them),
# and the same day with 4x the sockets, to show that the cost grows linearly with the rows.
# A benchmark, not a test: it prints a Markdown table and writes it to
# tests/bench/last-report-results.md. No root needed. Run from anywhere.
#
# Environment knobs (defaults in brackets):
#   RUNS [3]              timed runs per series (the figures are medians; peak RSS the maximum)
#   SNAPSHOTS [1440]      snapshots of the base series
#   SOCKETS [1000]        sockets per snapshot of the base series
#   INTERVAL [60]         seconds between snapshots
#   SCALE [sockets]       how the 4x series is made: `sockets` (1,440 x 4,000) or `snapshots`
#                         (5,760 x 1,000)
#   DATA_DIR []           keep the generated series here and reuse them on the next run
#                         (default: a temporary directory, deleted at exit)
#   RUN_TIMEOUT [600]     seconds allowed to one report run
#   TOTAL_TIMEOUT [2400]  seconds allowed to the whole script
#   NO_BUILD [0]          1: do not (re)build; use the binaries already in build-bench
#   QUIET_WAIT [600]      seconds to wait for a running bench_collect.sh to finish first
#   RESULTS [tests/bench/last-report-results.md]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
BUILD="$REPO/build-bench"
ANALYZE="$BUILD/analyzer/sockrewind-analyze"
GEN="$BUILD/tests/bench/gen_series"

RUNS=${RUNS:-3}
SNAPSHOTS=${SNAPSHOTS:-1440}
SOCKETS=${SOCKETS:-1000}
INTERVAL=${INTERVAL:-60}
SCALE=${SCALE:-sockets}
DATA_DIR=${DATA_DIR:-}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
TOTAL_TIMEOUT=${TOTAL_TIMEOUT:-2400}
NO_BUILD=${NO_BUILD:-0}
QUIET_WAIT=${QUIET_WAIT:-600}
RESULTS=${RESULTS:-$SCRIPT_DIR/last-report-results.md}
# Goals for the base case (a day of minute snapshots of 1,000 sockets).
GOAL_WALL_S=3
GOAL_RSS_MIB=256

BENCH_NAME=bench_report.sh
# shellcheck source=tests/bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

((RUNS >= 1)) || die "RUNS must be >= 1"
((SNAPSHOTS > 0 && SOCKETS >= 20 && INTERVAL > 0)) || die "bad SNAPSHOTS/SOCKETS/INTERVAL"
[[ $SCALE == sockets || $SCALE == snapshots ]] || die "SCALE must be 'sockets' or 'snapshots'"
[[ -x /usr/bin/time ]] || die "missing /usr/bin/time (Debian package 'time')"
for tool in cmake awk timeout; do
  command -v "$tool" >/dev/null || die "missing tool: $tool"
done

# ---------------------------------------------------------------------------------------------
# State and cleanup. Everything the script starts is ended by pid on any exit.
WORK=$(mktemp -d /tmp/srbench-report.XXXXXX)

install_traps

start_watchdog

# ---------------------------------------------------------------------------------------------
# Build (Release).
if [[ $NO_BUILD != 1 ]]; then
  build_release "$REPO" "$BUILD" sockrewind-analyze gen_series
fi
[[ -x $ANALYZE ]] || die "$ANALYZE not built"
[[ -x $GEN ]] || die "$GEN not built"
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
[[ $build_type == Release ]] || log "warning: $BUILD is CMAKE_BUILD_TYPE='$build_type', not Release"

# ---------------------------------------------------------------------------------------------
# Series. gen SERIES SNAPSHOTS SOCKETS: writes (or reuses) $DATA/SERIES, one file per 60
# snapshots; SERIES.rows gets the socket rows the generator wrote.
if [[ -n $DATA_DIR ]]; then
  mkdir -p "$DATA_DIR"
  DATA=$(cd "$DATA_DIR" && pwd)
else
  DATA="$WORK/data"
  mkdir -p "$DATA"
fi

gen() {
  local name=$1 snaps=$2 socks=$3
  local dir="$DATA/$name" stamp
  stamp="$snaps $socks $INTERVAL $(stat -c %Y "$GEN")"
  if [[ -f $dir/.done && $(cat "$dir/.done") == "$stamp" ]]; then
    log "reusing $dir ($snaps snapshots x $socks sockets)"
  else
    rm -rf "$dir"
    log "generating $snaps snapshots x $socks sockets into $dir"
    timeout "$RUN_TIMEOUT" "$GEN" --out "$dir" --snapshots "$snaps" --sockets "$socks" \
      --interval "$INTERVAL" >"$WORK/gen.out" 2>"$WORK/gen.err" || {
      cat "$WORK/gen.err" >&2
      die "gen_series failed"
    }
    sed -n 's/.*snapshots, \([0-9]*\) socket rows.*/\1/p' "$WORK/gen.err" >"$dir/.rows"
    echo "$stamp" >"$dir/.done"
    log "  $(cat "$WORK/gen.err")"
  fi
  cp "$dir/.rows" "$WORK/$name.rows"
}

BASE_NAME="base"
if [[ $SCALE == sockets ]]; then
  X4_SNAPS=$SNAPSHOTS
  X4_SOCKS=$((SOCKETS * 4))
else
  X4_SNAPS=$((SNAPSHOTS * 4))
  X4_SOCKS=$SOCKETS
fi
X4_NAME="x4-$SCALE"
gen "$BASE_NAME" "$SNAPSHOTS" "$SOCKETS"
gen "$X4_NAME" "$X4_SNAPS" "$X4_SOCKS"

# ---------------------------------------------------------------------------------------------
# Do not measure beside the collector benchmark (it wants an idle host, and so do we).
deadline=$((SECONDS + QUIET_WAIT))
while pgrep -f 'bench_collect[.]sh' >/dev/null; do
  if ((SECONDS >= deadline)); then
    log "bench_collect.sh still running after ${QUIET_WAIT}s; measuring anyway"
    break
  fi
  log "bench_collect.sh is running; waiting (QUIET_WAIT=${QUIET_WAIT}s)"
  sleep 10
done

# measure SERIES: one report run; appends "wall_s maxrss_kib user_s sys_s cpu_s" to
# $WORK/SERIES.dat (the warm-up run's JSON is kept in $WORK/SERIES.json).
measure() {
  timed "$1" "$ANALYZE" report "$DATA/$1" --format json
}

for name in "$BASE_NAME" "$X4_NAME"; do
  log "$name: warm-up run (page cache; output checked)"
  rc=0
  timeout -k 5 "$RUN_TIMEOUT" "$ANALYZE" report "$DATA/$name" --format json \
    >"$WORK/$name.json" 2>"$WORK/err" || rc=$?
  if ((rc != 0)); then
    tail -5 "$WORK/err" >&2
    die "report on $name failed (exit $rc)"
  fi
  for ((r = 1; r <= RUNS; r++)); do
    measure "$name"
    log "  run $r/$RUNS: $(tail -1 "$WORK/$name.dat" | awk '{printf "%s s, %.1f MiB", $1, $2 / 1024}')"
  done
done

# ---------------------------------------------------------------------------------------------
# Figures.
# findings SERIES: "N (detector×count, ...)" from the warm-up run's JSON.
findings() {
  if command -v jq >/dev/null; then
    jq -r '[.findings[].detector] | group_by(.) | map("\(.[0]) ×\(length)") as $g
      | "\(length) (\($g | join(", ")))"' "$WORK/$1.json" 2>/dev/null || echo "?"
  else
    echo "? (jq missing)"
  fi
}

b_rows=$(cat "$WORK/$BASE_NAME.rows")
x_rows=$(cat "$WORK/$X4_NAME.rows")
b_wall=$(median "$WORK/$BASE_NAME.dat" 1)
x_wall=$(median "$WORK/$X4_NAME.dat" 1)
b_rss=$(max_col "$WORK/$BASE_NAME.dat" 2)
# CPU (user + sys, column 5) tells how much of the wall time was the report's own work on a
# busy host.
b_cpu=$(median "$WORK/$BASE_NAME.dat" 5)
x_cpu=$(median "$WORK/$X4_NAME.dat" 5)
x_rss=$(max_col "$WORK/$X4_NAME.dat" 2)
b_spm=$(div "$b_wall" "$(div "$b_rows" 1000000 %.6f)")
x_spm=$(div "$x_wall" "$(div "$x_rows" 1000000 %.6f)")
b_files=$(find "$DATA/$BASE_NAME" -name '*.sqlite' | wc -l)
x_files=$(find "$DATA/$X4_NAME" -name '*.sqlite' | wc -l)
b_bytes=$(du -sb "$DATA/$BASE_NAME" | cut -f1)
x_bytes=$(du -sb "$DATA/$X4_NAME" | cut -f1)
rows_ratio=$(div "$x_rows" "$b_rows")
wall_ratio=$(div "$x_wall" "$b_wall")
rss_ratio=$(div "$x_rss" "$b_rss")
# Linear: the 4x series costs at most 1.25x of 4x the base per row.
lin_goal=$(awk -v r="$rows_ratio" 'BEGIN {printf "%.1f", r * 1.25}')

cpu_model=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -1)
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=""
if [[ -n $(git -C "$REPO" --no-optional-locks status --porcelain 2>/dev/null | head -1) ]]; then
  dirty=" + local changes"
fi
version=$("$ANALYZE" --version 2>/dev/null | head -1 || true)

{
  echo "## sockrewind-analyze report benchmark"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'); kernel $(uname -r); ${cpu_model:-unknown CPU} ×$(nproc);" \
    "commit $commit$dirty; build $build_type${version:+; $version}."
  echo "\`sockrewind-analyze report DIR --format json > /dev/null\`, wall and peak RSS from" \
    "\`/usr/bin/time -f '%e %M %U %S'\`: median of $RUNS runs after one warm-up run (page cache warm);" \
    "peak RSS is the maximum of the runs. Series from \`tests/bench/gen_series\`" \
    "(\`tests/bench/bench_report.sh\`): one file per 60 snapshots, ${INTERVAL} s apart."
  echo
  echo "| series | files (MiB) | socket rows | wall s | CPU s | peak RSS MiB | wall s per million rows | findings |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|"
  echo "| $SNAPSHOTS × $SOCKETS | $b_files ($(mib "$((b_bytes / 1024))")) | $(thousands "$b_rows") |" \
    "$b_wall | $b_cpu | $(mib "$b_rss") | $b_spm | $(findings "$BASE_NAME") |"
  echo "| $X4_SNAPS × $X4_SOCKS | $x_files ($(mib "$((x_bytes / 1024))")) | $(thousands "$x_rows") |" \
    "$x_wall | $x_cpu | $(mib "$x_rss") | $x_spm | $(findings "$X4_NAME") |"
  echo
  echo "| figure | value | goal | met |"
  echo "|---|---:|---:|:-:|"
  echo "| wall, $SNAPSHOTS × $SOCKETS | $b_wall s | ≤ $GOAL_WALL_S s | $(ok "$b_wall" "$GOAL_WALL_S") |"
  echo "| peak RSS, $SNAPSHOTS × $SOCKETS | $(mib "$b_rss") MiB | ≤ $GOAL_RSS_MIB MiB |" \
    "$(ok "$(mib "$b_rss")" "$GOAL_RSS_MIB") |"
  echo "| wall ratio 4× / 1× (rows ratio $rows_ratio) | $wall_ratio | ≤ $lin_goal (linear) |" \
    "$(ok "$wall_ratio" "$lin_goal") |"
  echo "| CPU ratio 4× / 1× | $(div "$x_cpu" "$b_cpu") | ≤ $lin_goal (linear) | $(ok "$(div "$x_cpu" "$b_cpu")" "$lin_goal") |"
  echo "| peak RSS ratio 4× / 1× | $rss_ratio | – | – |"
  echo "| load average (1 min) at the end | $(cut -d' ' -f1 /proc/loadavg) | – | – |"
} >"$WORK/table.md"

echo
cat "$WORK/table.md"
cp "$WORK/table.md" "$RESULTS"
log "written to $RESULTS"
