#!/usr/bin/env bash
# bench_query.sh: what the commands that look at part of a series cost on a day of minute
# snapshots, this checkout beside an earlier one (OLD_REV) on the same files: `show --at`,
# `timeline --port`, `timeline --pid`, `diff` and `info` read only what they show, `report` the
# whole series. Each command's output is compared between the two (they must be identical).
# A benchmark, not a test: it prints a Markdown table and writes it to
# tests/bench/last-query-results.md. No root needed. Run from anywhere.
#
# Environment knobs (defaults in brackets):
#   RUNS [3]              timed runs per command and build (medians; peak RSS the maximum)
#   SNAPSHOTS [1440] SOCKETS [1000] INTERVAL [60]    gen_series' day (one file per 60 snapshots)
#   PORTS ["22 443"]      the ports `timeline --port` looks at (gen_series: sshd's, a few per cent
#                         of the sockets; nginx's, a third of them)
#   PID [1001]            the pid `timeline --pid` looks at (gen_series: an nginx worker)
#   REPORT [1]            1: also time `report` (the whole series in memory)
#   PACKED [0]            1: also pack the day into one file with each build (`pack`, the new
#                         build with `--port-index`) and time `timeline --port` on each
#                         build's own pack
#   OLD_REV [3d92457]     the earlier checkout, exported from this repository's history into
#                         build-bench-query/old-src and built Release there
#   DATA_DIR []           keep the generated day here and reuse it on the next run
#   RUN_TIMEOUT [900] TOTAL_TIMEOUT [3600]   seconds allowed to one command / the whole script
#   NO_BUILD [0]          1: use the binaries already built
#   RESULTS [tests/bench/last-query-results.md]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
BUILD="$REPO/build-bench"
OLD_REV=${OLD_REV:-3d92457}
OLD_SRC="$REPO/build-bench-query/old-src"
OLD_BUILD="$REPO/build-bench-query/old-build"
RUNS=${RUNS:-3}
SNAPSHOTS=${SNAPSHOTS:-1440}
SOCKETS=${SOCKETS:-1000}
INTERVAL=${INTERVAL:-60}
PORTS=${PORTS:-22 443}
PID=${PID:-1001}
REPORT=${REPORT:-1}
PACKED=${PACKED:-0}
DATA_DIR=${DATA_DIR:-}
RUN_TIMEOUT=${RUN_TIMEOUT:-900}
TOTAL_TIMEOUT=${TOTAL_TIMEOUT:-3600}
NO_BUILD=${NO_BUILD:-0}
RESULTS=${RESULTS:-$SCRIPT_DIR/last-query-results.md}

BENCH_NAME=bench_query.sh
# shellcheck source=tests/bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

((RUNS >= 1)) || die "RUNS must be >= 1"
((SNAPSHOTS >= 3 && SOCKETS >= 20 && INTERVAL > 0)) || die "bad SNAPSHOTS/SOCKETS/INTERVAL"
[[ -x /usr/bin/time ]] || die "missing /usr/bin/time (Debian package 'time')"

WORK=$(mktemp -d /tmp/srbench-query.XXXXXX)
install_traps
start_watchdog

if [[ $NO_BUILD != 1 ]]; then
  if [[ ! -f $OLD_SRC/CMakeLists.txt ]]; then
    mkdir -p "$OLD_SRC"
    git -C "$REPO" archive "$OLD_REV" | tar -x -C "$OLD_SRC"
  fi
  build_release "$REPO" "$BUILD" sockrewind-analyze gen_series
  build_release "$OLD_SRC" "$OLD_BUILD" sockrewind-analyze
fi
declare -A ANALYZE=([old]="$OLD_BUILD/analyzer/sockrewind-analyze"
  [new]="$BUILD/analyzer/sockrewind-analyze")
GEN="$BUILD/tests/bench/gen_series"
for bin in "${ANALYZE[old]}" "${ANALYZE[new]}" "$GEN"; do
  [[ -x $bin ]] || die "$bin not built"
done

DATA=${DATA_DIR:-$WORK/data}
mkdir -p "$DATA"
DAY="$DATA/day-${SNAPSHOTS}x${SOCKETS}"
if [[ ! -d $DAY ]]; then
  log "generating $SNAPSHOTS x $SOCKETS into $DAY"
  "$GEN" --out "$DAY.tmp" --snapshots "$SNAPSHOTS" --sockets "$SOCKETS" --interval "$INTERVAL" \
    --host vm >/dev/null
  mv "$DAY.tmp" "$DAY"
fi
rows=$(for f in "$DAY"/*.sqlite; do sqlite3 -readonly "$f" 'SELECT sum(sockets) FROM snapshots'; done \
  | awk '{s += $1} END {print s + 0}')
# The middle snapshot's time, for show --at; diff from the 2nd to the second-to-last snapshot.
first=$(ls "$DAY"/*.sqlite | head -1)
mid_file=$(ls "$DAY"/*.sqlite | awk -v n="$(ls "$DAY"/*.sqlite | wc -l)" 'NR == int((n + 1) / 2)')
at=$(sqlite3 -readonly "$mid_file" \
  "SELECT strftime('%Y-%m-%dT%H:%M:%SZ', realtime_ns / 1000000000 + 1, 'unixepoch')
   FROM snapshots ORDER BY snapshot_id LIMIT 1")
[[ -n $first && -n $at ]] || die "no snapshots in $DAY"

declare -a NAMES=(show)
declare -A ARGS=([show]="show $mid_file --at $at --format json")
for port in $PORTS; do
  NAMES+=("timeline-port-$port")
  ARGS[timeline-port-$port]="timeline $DAY --port $port --format json"
done
NAMES+=(timeline-pid diff info)
ARGS+=(
  [timeline-pid]="timeline $DAY --pid $PID --format json"
  [diff]="diff $DAY --from 2 --to $((SNAPSHOTS - 1)) --format json"
  [info]="info $DAY")
if [[ $REPORT == 1 ]]; then
  NAMES+=(report)
  ARGS[report]="report $DAY --format json"
fi
packs=""
if [[ $PACKED == 1 ]]; then
  for v in old new; do
    log "packing the day ($v)"
    index=() # the old build (3d92457 by default) has no --port-index
    [[ $v == new ]] && index=(--port-index)
    "${ANALYZE[$v]}" pack "$DAY" "${index[@]}" -o "$WORK/pack-$v.sqlite" >/dev/null 2>"$WORK/err" \
      || die "pack ($v) failed: $(tail -1 "$WORK/err")"
  done
  packs=" The day packed into one file (PACK): $(thousands "$(bytes_of "$WORK/pack-old.sqlite")")"
  packs+=" bytes by the old build, $(thousands "$(bytes_of "$WORK/pack-new.sqlite")") by the new."
  for port in $PORTS; do
    NAMES+=("packed-port-$port")
    ARGS[packed-port-$port]="timeline @PACK@ --port $port --format json"
  done
fi
same=()
for name in "${NAMES[@]}"; do
  for v in old new; do
    args=${ARGS[$name]//@PACK@/$WORK/pack-$v.sqlite} # each build's own pack
    log "$name ($v): warm-up, then $RUNS runs"
    # shellcheck disable=SC2086 # ARGS are words without spaces (paths under mktemp/DATA_DIR)
    "${ANALYZE[$v]}" $args >"$WORK/$name.$v.json" 2>"$WORK/err" \
      || die "$name ($v) failed: $(tail -1 "$WORK/err")"
    for ((r = 1; r <= RUNS; r++)); do
      # shellcheck disable=SC2086
      timed "$name.$v" "${ANALYZE[$v]}" $args
    done
  done
  if cmp -s "$WORK/$name.old.json" "$WORK/$name.new.json"; then
    same+=("yes")
  else
    same+=("**no**")
  fi
done

{
  built=$(git -C "$REPO" rev-parse --short HEAD)
  [[ $NO_BUILD == 1 ]] && built+=" (NO_BUILD=1: the binaries as they were last built)"
  echo "## Commands on part of a series: $OLD_REV vs $built"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores; \`tests/bench/bench_query.sh\`;" \
    "gen_series' day of $SNAPSHOTS × $SOCKETS sockets ($(thousands "$rows") socket-samples," \
    "$(ls "$DAY"/*.sqlite | wc -l) schema-3 minute files of 60 snapshots)." \
    "Medians of $RUNS runs after a warm-up (page cache warm); peak RSS the maximum.${packs}"
  echo
  echo "| command | before: wall s | peak RSS MiB | now: wall s | peak RSS MiB | same output |"
  echo "|---|---:|---:|---:|---:|:-:|"
  for i in "${!NAMES[@]}"; do
    name=${NAMES[$i]}
    args=${ARGS[$name]//$DAY/DAY}
    echo "| \`${args//@PACK@/PACK}\` | $(median "$WORK/$name.old.dat" 1) |" \
      "$(mib "$(max_col "$WORK/$name.old.dat" 2)") | $(median "$WORK/$name.new.dat" 1) |" \
      "$(mib "$(max_col "$WORK/$name.new.dat" 2)") | ${same[$i]} |"
  done
} | tee "$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
log "written to $RESULTS"
