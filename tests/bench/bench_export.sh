#!/usr/bin/env bash
# Export throughput: `sockrewind-analyze export --to clickhouse` (all tables) in socket-samples
# (rows of the `sockets` view) per second, on two kinds of data, side by side with the stock
# sqlite3 shell dumping only the sockets view of the same files. A benchmark, not a test: it
# prints a Markdown table and writes it to tests/bench/last-export-results.md. Run from anywhere.
#
#   (a) gen_series' day (SNAPSHOTS x SOCKETS): every established socket's counters move in every
#       snapshot, so nearly every socket-sample is a run of its own (the worst case for the
#       compact format): the 24 hourly files gen_series writes, and the same day packed into one
#       file (`pack`, one file read by several workers in parts).
#   (b) root only (skipped otherwise): a live mixed capture in a private network namespace, on
#       127.0.0.1 only: IDLE_CONNS idle pooled connections, ACTIVE_CONNS connections that send
#       ACTIVE_BYTES a second, CHURN_RATE short connections a second (TIME-WAIT), all held by
#       tests/bench/sockload; COUNT snapshots CINTERVAL s apart by sockrewind-collect, exported as
#       the collector wrote them and as their archive (`pack`: idle sockets are long runs).
# Each export is timed RUNS times with --jobs 1 and --jobs 2 (medians of wall and CPU seconds).
#
#   tests/bench/bench_export.sh [BUILD_DIR]   (default build-bench, built here as Release)
# Environment knobs (defaults in brackets):
#   PARTS ["a b"]  RUNS [3]  SNAPSHOTS [1440] SOCKETS [1000] INTERVAL [60]  DATA_DIR [] (keep (a))
#   IDLE_CONNS [10000] ACTIVE_CONNS [1000] ACTIVE_BYTES [4096] CHURN_RATE [200] WARMUP [65]
#   COUNT [60] CINTERVAL [2]  NO_BUILD [0]  TOTAL_TIMEOUT [3600]
#   RESULTS [tests/bench/last-export-results.md]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
BUILD=$(realpath -m "${1:-$REPO/build-bench}")
ANALYZE=$BUILD/analyzer/sockrewind-analyze
COLLECT=$BUILD/collector/sockrewind-collect
GEN=$BUILD/tests/bench/gen_series
SOCKLOAD=$BUILD/tests/bench/sockload
PARTS=${PARTS:-a b} RUNS=${RUNS:-3} NO_BUILD=${NO_BUILD:-0}
SNAPSHOTS=${SNAPSHOTS:-1440} SOCKETS=${SOCKETS:-1000} INTERVAL=${INTERVAL:-60}
DATA_DIR=${DATA_DIR:-}
IDLE_CONNS=${IDLE_CONNS:-10000} ACTIVE_CONNS=${ACTIVE_CONNS:-1000} ACTIVE_BYTES=${ACTIVE_BYTES:-4096}
CHURN_RATE=${CHURN_RATE:-200} WARMUP=${WARMUP:-65} COUNT=${COUNT:-60} CINTERVAL=${CINTERVAL:-2}
RESULTS=${RESULTS:-$SCRIPT_DIR/last-export-results.md}
RUN_TIMEOUT=600
READY_TIMEOUT=180
BASE_PORT=7000

BENCH_NAME=bench_export.sh
WORK=$(mktemp -d /tmp/srbench-export.XXXXXX)
TOTAL_TIMEOUT=${TOTAL_TIMEOUT:-3600}
# shellcheck source=tests/bench/lib.sh
source "$SCRIPT_DIR/lib.sh"
NS=""
cleanup_extra() { cleanup_live_mix; }
install_traps
start_watchdog
command -v sqlite3 >/dev/null || die "sqlite3 missing"
if [[ $NO_BUILD != 1 ]]; then
  build_release "$REPO" "$BUILD" sockrewind-analyze sockrewind-collect gen_series sockload
fi
for b in "$ANALYZE" "$GEN"; do [[ -x $b ]] || die "$b not built"; done
TABLE=$WORK/table.md

samples_of() { # FILE...: rows of the sockets view
  local f n=0
  for f in "$@"; do n=$((n + $(sqlite3 -readonly "$f" 'SELECT count(*) FROM sockets'))); done
  echo "$n"
}
runs_of() { # FILE...: rows of sock_runs
  local f n=0
  for f in "$@"; do n=$((n + $(sqlite3 -readonly "$f" 'SELECT count(*) FROM sock_runs'))); done
  echo "$n"
}

# measure NAME FILE...: the export with --jobs 1 and 2 and the sqlite3 dump, RUNS times each
# (interleaved), one table row each.
measure() {
  local name=$1
  shift
  local samples runs j label key
  key=$WORK/$(printf '%s' "$name" | tr -c 'a-zA-Z0-9' '_')
  samples=$(samples_of "$@")
  runs=$(runs_of "$@")
  log "$name: $samples socket-samples in $runs runs ($# files, $(bytes_of "$@") bytes)"
  for _ in $(seq "$RUNS"); do
    for j in 1 2; do
      rm -rf "$WORK/x"
      timed "$(basename "$key")-j$j" "$ANALYZE" export "$@" --to clickhouse --jobs "$j" --out "$WORK/x"
    done
    # shellcheck disable=SC2016 # expanded by the inner shell
    timed "$(basename "$key")-jsql" bash -c 'for f; do sqlite3 -readonly "$f" "SELECT * FROM sockets"; done' \
      _ "$@"
  done
  rm -rf "$WORK/x"
  for j in 1 2 sql; do
    local w c
    w=$(median "$key-j$j.dat" 1)
    c=$(median "$key-j$j.dat" 5)
    label="\`export --jobs $j\`"
    [[ $j == sql ]] && label="sqlite3 \`SELECT * FROM sockets\` (the view only)"
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$(thousands "$samples")" \
      "$(div "$samples" "$runs" %.1f)" "$label" "$w / $c" \
      "$(thousands "$(div "$samples" "$w" %.0f)")" "$(thousands "$(div "$samples" "$c" %.0f)")" \
      >>"$TABLE"
  done
}

{
  echo "Export throughput ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)" \
    "at the start; \`tests/bench/bench_export.sh\`, Release build; medians of $RUNS runs)"
  echo
  echo "| data | socket-samples | per run | command | wall / CPU s | socket-samples/s (wall) | per CPU-second |"
  echo "|---|---:|---:|---|---:|---:|---:|"
} >"$TABLE"

if [[ " $PARTS " == *" a "* ]]; then
  data=${DATA_DIR:-$WORK/data}
  stamp="$SNAPSHOTS $SOCKETS $INTERVAL"
  if [[ ! -f $data/.done || $(cat "$data/.done") != "$stamp" ]]; then
    log "(a) gen_series: $SNAPSHOTS x $SOCKETS"
    rm -rf "$data"
    "$GEN" --out "$data" --snapshots "$SNAPSHOTS" --sockets "$SOCKETS" --interval "$INTERVAL" \
      >/dev/null 2>&1
    echo "$stamp" >"$data/.done"
  fi
  files=("$data"/synth-*.sqlite)
  ((${#files[@]} > 0)) || die "gen_series wrote no file in $data"
  measure "(a) gen_series day, ${#files[@]} files" "${files[@]}"
  rm -f "$WORK/day-pack.sqlite"
  log "(a) pack of the day"
  "$ANALYZE" pack "${files[@]}" -o "$WORK/day-pack.sqlite" >/dev/null 2>&1 || die "pack failed"
  measure "(a) gen_series day, packed (1 file)" "$WORK/day-pack.sqlite"
  rm -f "$WORK/day-pack.sqlite"
fi

if [[ " $PARTS " == *" b "* ]]; then
  if [[ $(id -u) -ne 0 ]]; then
    log "(b) skipped: needs root (network namespaces)"
    printf '| (b) live mixed capture | skipped: not root | | | | | |\n' >>"$TABLE"
  else
    for b in "$COLLECT" "$SOCKLOAD"; do [[ -x $b ]] || die "$b not built"; done
    capture_live_mix "$WORK/cap"
    cap=$CAP
    measure "(b) live capture, as collected" "$cap"
    "$ANALYZE" pack "$cap" -o "$WORK/cap-pack.sqlite" >/dev/null 2>&1 || die "pack failed"
    measure "(b) live capture, archived (pack)" "$WORK/cap-pack.sqlite"
  fi
fi

cp "$TABLE" "$RESULTS"
cat "$TABLE"
