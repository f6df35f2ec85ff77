#!/usr/bin/env bash
# bench_replay.sh: measures `sockrewind-analyze replay` without a terminal, through its hidden
# `--bench` flag (the model's own open and step functions; the drawing of ~20 rows is not in
# them) on series written by tests/bench/gen_series:
#   - a day of one-minute snapshots of 10,000 sockets (24 files of 60, as cron leaves them):
#     opening (snapshot index of all files + the first snapshot + its rows) in the process, and
#     the whole process' wall time to that point;
#   - 16 snapshots of 100,000 sockets: stepping to the next snapshot. gen_series changes every
#     socket in every snapshot, so no step can take rows over from the one before: the worst
#     case;
#   - (root only, skipped otherwise) a live host of ~100k sockets in a private network
#     namespace: IDLE_CONNS idle pooled connections, ACTIVE_CONNS busy ones, CHURN_RATE short
#     connections a second, COUNT snapshots CINTERVAL s apart, as the collector wrote them and
#     as their archive (`pack`, where idle sockets are runs a step carries over).
# A step is timed twice: "ready" after the read-ahead of the next snapshot has finished (a user
# who looked at the screen for the read time), and "back to back" (a key held down: the read).
# Ten steps, five of each; the table gives the median back-to-back step and the slowest, which
# is the first (the second step after opening: no snapshot left behind yet whose memory the
# read can take over, so it faults in fresh pages).
# A benchmark, not a test: prints a Markdown table and writes it to
# tests/bench/last-replay-results.md. No root needed. Run from anywhere.
#
# Environment knobs (defaults in brackets):
#   RUNS [3]        runs per series (medians)
#   DATA_DIR []     keep the generated series here and reuse them (default: temporary)
#   NO_BUILD [0]    1: use the binaries already in BUILD
#   BUILD [build-bench]  the build directory (Release)
#   TOTAL_TIMEOUT [3600] seconds allowed to the whole script
#   LIVE [1]        0: skip the live host
#   IDLE_CONNS [48000] ACTIVE_CONNS [1000] ACTIVE_BYTES [4096] CHURN_RATE [200] WARMUP [30]
#   COUNT [8] CINTERVAL [2]   the live host
#   RESULTS [tests/bench/last-replay-results.md]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
BUILD=${BUILD:-$REPO/build-bench}
ANALYZE="$BUILD/analyzer/sockrewind-analyze"
GEN="$BUILD/tests/bench/gen_series"
COLLECT="$BUILD/collector/sockrewind-collect"
SOCKLOAD="$BUILD/tests/bench/sockload"
LIVE=${LIVE:-1}
IDLE_CONNS=${IDLE_CONNS:-48000} ACTIVE_CONNS=${ACTIVE_CONNS:-1000} ACTIVE_BYTES=${ACTIVE_BYTES:-4096}
CHURN_RATE=${CHURN_RATE:-200} WARMUP=${WARMUP:-30} COUNT=${COUNT:-8} CINTERVAL=${CINTERVAL:-2}
READY_TIMEOUT=180
BASE_PORT=7000
RUNS=${RUNS:-3}
DATA_DIR=${DATA_DIR:-}
NO_BUILD=${NO_BUILD:-0}
RESULTS=${RESULTS:-$SCRIPT_DIR/last-replay-results.md}

BENCH_NAME=bench_replay.sh
# shellcheck source=tests/bench/lib.sh
source "$SCRIPT_DIR/lib.sh"
((RUNS >= 1)) || die "RUNS must be >= 1"

WORK=$(mktemp -d /tmp/srbench-replay.XXXXXX)
TOTAL_TIMEOUT=${TOTAL_TIMEOUT:-3600}
NS=""
cleanup_extra() { cleanup_live_mix; }
install_traps
start_watchdog
[[ $(id -u) -eq 0 ]] || LIVE=0

if [[ $NO_BUILD != 1 ]]; then
  if ((LIVE)); then
    build_release "$REPO" "$BUILD" sockrewind-analyze gen_series sockrewind-collect sockload
  else
    build_release "$REPO" "$BUILD" sockrewind-analyze gen_series
  fi
fi
[[ -x $ANALYZE ]] || die "$ANALYZE not built"
[[ -x $GEN ]] || die "$GEN not built"

if [[ -n $DATA_DIR ]]; then
  mkdir -p "$DATA_DIR"
  DATA=$(cd "$DATA_DIR" && pwd)
else
  DATA=$WORK/data
fi

# gen NAME SNAPSHOTS SOCKETS FILES
gen() {
  local dir=$DATA/$1
  if [[ -f $dir/.complete ]]; then
    log "reusing $dir"
    return
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  log "generating $1: $2 snapshots of $3 sockets"
  "$GEN" --out "$dir" --snapshots "$2" --sockets "$3" --interval 60 --files "$4" >&2
  touch "$dir/.complete"
}
gen day-10k 1440 10000 24
gen burst-100k-16 16 100000 1

# field NAME LINE: the number after NAME in a --bench line.
field() { awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' <<<"$2"; }

all=(day-10k burst-100k-16)
if ((LIVE)); then
  for b in "$COLLECT" "$SOCKLOAD"; do [[ -x $b ]] || die "$b not built"; done
  capture_live_mix "$WORK/live"
  rm -f "$DATA/live-pack.sqlite" "$DATA/live-collected.sqlite" # a kept DATA_DIR's last ones
  "$ANALYZE" pack "$CAP" -o "$DATA/live-pack.sqlite" >/dev/null 2>&1 || die "pack failed"
  mv "$CAP" "$DATA/live-collected.sqlite"
  all+=(live-collected.sqlite live-pack.sqlite)
fi

declare -A fig
for series in "${all[@]}"; do
  for k in open wall ready b2b b2bmax sort; do : >"$WORK/$series.$k"; done
  for ((r = 1; r <= RUNS; r++)); do
    start=$(date +%s%N)
    line=$("$ANALYZE" replay "$DATA/$series" --bench --bench-steps 0)
    end=$(date +%s%N)
    echo "scale=1; ($end - $start) / 1000000" | bc >>"$WORK/$series.wall"
    field open_ms "$line" >>"$WORK/$series.open"
    line=$("$ANALYZE" replay "$DATA/$series" --bench --bench-steps 10)
    log "$series run $r: $line"
    field step_ready_median_ms "$line" >>"$WORK/$series.ready"
    field step_back_to_back_median_ms "$line" >>"$WORK/$series.b2b"
    field step_back_to_back_max_ms "$line" >>"$WORK/$series.b2bmax"
    # The slowest of the re-sorts by Recv-Q, Send-Q, state, owner and port (their medians).
    for key in recvq sendq state owner port; do field "sort_${key}_median_ms" "$line"; done \
      | sort -g | tail -1 >>"$WORK/$series.sort"
    fig[$series.sockets]=$(field sockets "$line")
    fig[$series.snapshots]=$(field snapshots "$line")
  done
  for k in open wall ready b2b b2bmax sort; do
    fig[$series.$k]=$(median "$WORK/$series.$k" 1)
  done
done

live_rows() {
  ((LIVE)) || { echo "| live host | skipped (not root, or LIVE=0) | | | | | | | |"; return; }
  local s name
  for s in live-collected.sqlite live-pack.sqlite; do
    name="live host, as collected (1 file)"
    [[ $s == live-pack.sqlite ]] && name="live host, archived (pack)"
    echo "| $name | ${fig[$s.snapshots]} | ${fig[$s.sockets]} | ${fig[$s.open]} ms | ${fig[$s.wall]} ms | ${fig[$s.ready]} ms | ${fig[$s.b2b]} ms | ${fig[$s.b2bmax]} ms | ${fig[$s.sort]} ms |"
  done
}

table=$(
  cat <<EOF
| series | snapshots | sockets/snapshot | open (in process) | process to first screen | step, read-ahead ready | step, back to back | slowest back-to-back step | re-sort, slowest key |
|---|---|---|---|---|---|---|---|---|
| day, 10k sockets (24 files) | ${fig[day-10k.snapshots]} | ${fig[day-10k.sockets]} | ${fig[day-10k.open]} ms | ${fig[day-10k.wall]} ms | ${fig[day-10k.ready]} ms | ${fig[day-10k.b2b]} ms | ${fig[day-10k.b2bmax]} ms | ${fig[day-10k.sort]} ms |
| 100k sockets, every one changing every snapshot (gen_series) | ${fig[burst-100k-16.snapshots]} | ${fig[burst-100k-16.sockets]} | ${fig[burst-100k-16.open]} ms | ${fig[burst-100k-16.wall]} ms | ${fig[burst-100k-16.ready]} ms | ${fig[burst-100k-16.b2b]} ms | ${fig[burst-100k-16.b2bmax]} ms | ${fig[burst-100k-16.sort]} ms |
$(live_rows)

Goals: open a day at 10k sockets <= 1000 ms; step <= 50 ms at 100k sockets per snapshot.
Medians of $RUNS runs on $(nproc) CPUs ($(uname -r)), $(date -u +%Y-%m-%d).
EOF
)
printf '%s\n' "$table"
printf '%s\n' "$table" >"$RESULTS"
