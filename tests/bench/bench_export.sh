#!/usr/bin/env bash
# Export throughput: `sockrewind-analyze export --to clickhouse` on a day of snapshots written by
# tests/bench/gen_series, in socket-samples (socket rows of the sockets view) per second, side by
# side with the stock sqlite3 shell dumping the same view (`SELECT * FROM sockets` per file).
# Wall time is the best of RUNS runs; CPU time (user+sys) of that run is shown too, since the
# machine may be shared. README "Fleet: ClickHouse" quotes the result.
#   tests/bench/bench_export.sh [BUILD_DIR]    (default: build; needs sockrewind-analyze, gen_series)
# Environment: SNAPSHOTS (1440), SOCKETS (1000 per snapshot), INTERVAL (60 s), RUNS (3),
# JOBS ("1 2": export --jobs values), DATA_DIR (keep the series there), OUT_DIR (where the
# export is written; default a temporary directory).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:-$root/build}" && pwd)
ANALYZE=$BUILD/analyzer/sockrewind-analyze
GEN=$BUILD/tests/bench/gen_series
SNAPSHOTS=${SNAPSHOTS:-1440} SOCKETS=${SOCKETS:-1000} INTERVAL=${INTERVAL:-60} RUNS=${RUNS:-3}
JOBS=${JOBS:-1 2}
for b in "$ANALYZE" "$GEN"; do [[ -x $b ]] || { echo "bench_export.sh: $b not built" >&2; exit 1; }; done
command -v sqlite3 >/dev/null || { echo "bench_export.sh: sqlite3 missing" >&2; exit 1; }
work=$(mktemp -d /tmp/sockrewind-bench-export.XXXXXX)
trap 'rm -rf "$work"' EXIT
data=${DATA_DIR:-$work/data}
out=${OUT_DIR:-$work}/export-out
stamp="$SNAPSHOTS $SOCKETS $INTERVAL"
if [[ ! -f $data/.done || $(cat "$data/.done") != "$stamp" ]]; then
  rm -rf "$data"
  "$GEN" --out "$data" --snapshots "$SNAPSHOTS" --sockets "$SOCKETS" --interval "$INTERVAL" \
    >/dev/null 2>&1
  echo "$stamp" >"$data/.done"
fi
files=("$data"/*.sqlite)
samples=0
for f in "${files[@]}"; do samples=$((samples + $(sqlite3 -readonly "$f" 'SELECT count(*) FROM sockets'))); done

# best RUN: prints "wall cpu" of the fastest of RUNS runs of the command
best() {
  local best_wall='' best_cpu='' t0 t1 wall cpu
  for _ in $(seq "$RUNS"); do
    rm -rf "$out"
    t0=$(date +%s.%N)
    /usr/bin/time -o "$work/time" -f '%U %S' "$@" >/dev/null 2>&1
    cpu=$(awk '{ print $1 + $2 }' "$work/time")
    t1=$(date +%s.%N)
    wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    if [[ -z $best_wall ]] || awk -v a="$wall" -v b="$best_wall" 'BEGIN { exit !(a < b) }'; then
      best_wall=$wall best_cpu=$cpu
    fi
  done
  echo "$best_wall $best_cpu"
}
row() { # NAME WALL CPU
  awk -v n="$1" -v w="$2" -v c="$3" -v s="$samples" \
    'BEGIN { printf "| %s | %.2f | %.2f | %.0f | %.0f |\n", n, w, c, s / w, s / c }'
}
export files_list="${files[*]}"

echo "$SNAPSHOTS snapshots x ~$SOCKETS sockets (gen_series, ${#files[@]} files, $(du -sh "$data" | cut -f1)): $samples socket-samples; $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)"
echo
echo "| command | wall s | CPU s | socket-samples/s (wall) | socket-samples per CPU-second |"
echo "|---|---|---|---|---|"
for j in $JOBS; do
  read -r w c < <(best "$ANALYZE" export "${files[@]}" --to clickhouse --jobs "$j" --out "$out")
  row "sockrewind-analyze export --to clickhouse --jobs $j (all tables)" "$w" "$c"
done
read -r w c < <(best bash -c 'for f in $files_list; do sqlite3 -readonly "$f" "SELECT * FROM sockets"; done')
row "sqlite3 \`SELECT * FROM sockets\` (the view only)" "$w" "$c"
rm -rf "$out"
