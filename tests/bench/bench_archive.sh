#!/usr/bin/env bash
# bench_archive.sh: bytes per socket-sample of the previous file format (schema v2) and of the
# compact one (schema v3, runs of unchanged snapshots; issue 13), side by side on the same data,
# and what the new format costs the collector, `pack` and `report`. A benchmark, not a test: it
# prints a Markdown table and writes it to tests/bench/last-archive-results.md. Run from anywhere.
#
#   (a) gen_series' day (SNAPSHOTS x SOCKETS, one file per 60 snapshots), written by the v2 and
#       by the v3 gen_series, each packed into one file by its own `sockrewind-analyze pack`;
#       the v3 pack also through `zstd`; `pack` and `report` on the packed file timed (GNU time).
#   (b) root only (skipped otherwise): a live mixed capture in a private network namespace, on
#       127.0.0.1 only: IDLE_CONNS idle pooled TCP connections, ACTIVE_CONNS connections whose
#       clients send ACTIVE_BYTES every second, and CHURN_RATE short connections a second (so
#       about 60 x CHURN_RATE sockets in TIME-WAIT), all held by tests/bench/sockload. Captured by
#       the v2 and the v3 `sockrewind-collect --count COUNT --interval CINTERVAL`, one after
#       the other on the same load, each file packed by its own `pack`; then single-snapshot
#       collector runs (the minute run) of both beside `ss -tanpie`, interleaved.
#
# The previous format comes from a second checkout (OLD_SRC; by default the last schema-2 commit,
# OLD_REV 6f2dea2, exported from this repository's history into build-bench-old/src), built
# Release into OLD_BUILD; this checkout is built Release into build-bench.
#
# Environment knobs (defaults in brackets):
#   PARTS ["a b"]          which data sets to run
#   RUNS [3]               timed runs of pack / report / the minute run (medians; RSS the maximum)
#   SNAPSHOTS [1440] SOCKETS [1000] INTERVAL [60]    (a): gen_series' day
#   DATA_DIR []            keep (a)'s generated series here and reuse them on the next run
#   IDLE_CONNS [10000] IDLE_LOADERS [3]              (b): idle connections (2 sockets each)
#   ACTIVE_CONNS [1000] ACTIVE_BYTES [4096]          (b): busy connections, bytes a second each
#   CHURN_RATE [200]       (b): short connections a second
#   WARMUP [65]            (b): seconds of churn before the first capture (TIME-WAIT lasts 60 s)
#   COUNT [30] CINTERVAL [2]                         (b): snapshots and seconds between them
#   ZSTD_ARGS ["-19 --long=27 -T2"]  the compression of the packed v3 file
#   ZSTD_OLD [1]           1: also compress the packed v2 file with ZSTD_ARGS (for comparison)
#   OLD_REV [6f2dea2]  OLD_SRC [build-bench-old/src]  OLD_BUILD [OLD_SRC/build-bench]
#   RUN_TIMEOUT [900]      seconds allowed to one command
#   TOTAL_TIMEOUT [3600]   seconds allowed to the whole script
#   NO_BUILD [0]           1: do not (re)build; use the binaries already built
#   RESULTS [tests/bench/last-archive-results.md]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
BUILD="$REPO/build-bench"
OLD_REV=${OLD_REV:-6f2dea2}
OLD_SRC=${OLD_SRC:-}
OLD_LABEL=""
if [[ -z $OLD_SRC ]]; then
  OLD_LABEL=$OLD_REV
  OLD_SRC="$REPO/build-bench-old/src"
  if [[ ! -f $OLD_SRC/CMakeLists.txt ]]; then
    mkdir -p "$OLD_SRC"
    git -C "$REPO" archive "$OLD_REV" | tar -x -C "$OLD_SRC"
  fi
fi
OLD_BUILD=${OLD_BUILD:-$OLD_SRC/build-bench}

PARTS=${PARTS:-a b}
RUNS=${RUNS:-3}
SNAPSHOTS=${SNAPSHOTS:-1440}
SOCKETS=${SOCKETS:-1000}
INTERVAL=${INTERVAL:-60}
DATA_DIR=${DATA_DIR:-}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_LOADERS=${IDLE_LOADERS:-3}
ACTIVE_CONNS=${ACTIVE_CONNS:-1000}
ACTIVE_BYTES=${ACTIVE_BYTES:-4096}
CHURN_RATE=${CHURN_RATE:-200}
WARMUP=${WARMUP:-65}
COUNT=${COUNT:-30}
CINTERVAL=${CINTERVAL:-2}
ZSTD_ARGS=${ZSTD_ARGS:--19 --long=27 -T2}
ZSTD_OLD=${ZSTD_OLD:-1}
RUN_TIMEOUT=${RUN_TIMEOUT:-900}
TOTAL_TIMEOUT=${TOTAL_TIMEOUT:-3600}
NO_BUILD=${NO_BUILD:-0}
RESULTS=${RESULTS:-$SCRIPT_DIR/last-archive-results.md}
BASE_PORT=7000
READY_TIMEOUT=180
GOAL_BPS=10 # bytes per socket-sample of the compact form (issue 13)

BENCH_NAME=bench_archive.sh
# shellcheck source=tests/bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

((RUNS >= 1)) || die "RUNS must be >= 1"
((SNAPSHOTS > 0 && SOCKETS >= 20 && INTERVAL > 0)) || die "bad SNAPSHOTS/SOCKETS/INTERVAL"
((IDLE_LOADERS > 0 && (IDLE_CONNS + IDLE_LOADERS - 1) / IDLE_LOADERS <= 9000)) \
  || die "IDLE_CONNS/IDLE_LOADERS must be <= 9000 (20,000 open files per process)"
((ACTIVE_CONNS > 0 && ACTIVE_CONNS <= 9000 && CHURN_RATE > 0 && COUNT > 0)) \
  || die "bad ACTIVE_CONNS/CHURN_RATE/COUNT"
for tool in cmake awk timeout sqlite3 stat; do
  command -v "$tool" >/dev/null || die "missing tool: $tool"
done
if [[ ! -x /usr/bin/time ]] || ! command -v zstd >/dev/null; then
  log "installing GNU time and zstd"
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq time zstd >/dev/null \
    || die "cannot install the packages 'time' and 'zstd'"
fi

# ---------------------------------------------------------------------------------------------
# State and cleanup. Everything the script starts is ended by pid on any exit.
WORK=$(mktemp -d /tmp/srbench-archive.XXXXXX)
NS=""

delete_netns() {
  local pid
  [[ -n $NS ]] || return 0
  # Only our own processes can be in our private namespace; end any straggler by pid.
  for pid in $(ip netns pids "$NS" 2>/dev/null); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  ip netns del "$NS" 2>/dev/null || true
  NS=""
}

cleanup_extra() {
  stop_loads
  delete_netns
}
install_traps

start_watchdog

# ---------------------------------------------------------------------------------------------
# Build (Release) both checkouts.
if [[ $NO_BUILD != 1 ]]; then
  build_release "$REPO" "$BUILD" sockrewind-collect sockrewind-analyze gen_series sockload
  build_release "$OLD_SRC" "$OLD_BUILD" sockrewind-collect sockrewind-analyze gen_series sockload
fi
declare -A COLLECT ANALYZE GEN SOCKLOAD_OF
for v in old new; do
  b=$BUILD
  [[ $v == old ]] && b=$OLD_BUILD
  COLLECT[$v]="$b/collector/sockrewind-collect"
  ANALYZE[$v]="$b/analyzer/sockrewind-analyze"
  GEN[$v]="$b/tests/bench/gen_series"
  SOCKLOAD_OF[$v]="$b/tests/bench/sockload"
  for bin in "${COLLECT[$v]}" "${ANALYZE[$v]}" "${GEN[$v]}"; do
    [[ -x $bin ]] || die "$bin not built"
  done
done
SOCKLOAD=${SOCKLOAD_OF[new]}
[[ -x $SOCKLOAD ]] || die "$SOCKLOAD not built"
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
[[ $build_type == Release ]] || log "warning: $BUILD is CMAKE_BUILD_TYPE='$build_type', not Release"
NEW_COMMIT=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$REPO" --no-optional-locks status --porcelain 2>/dev/null | head -1) ]]; then
  NEW_COMMIT+=" + local changes"
fi
OLD_COMMIT=${OLD_LABEL:-$(git -C "$OLD_SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)}

# ---------------------------------------------------------------------------------------------
# Helpers.

# samples FILE...: the socket-samples (sum of snapshots.sockets) of the files.
samples() {
  local f s=0 n
  for f in "$@"; do
    n=$(sqlite3 "$f" 'SELECT coalesce(sum(sockets), 0) FROM snapshots') || die "sqlite3 $f"
    s=$((s + n))
  done
  echo "$s"
}
# runs_of FILE: "sock_runs sock_ident" of a v3 file ("- -" for an older one).
runs_of() {
  sqlite3 -separator ' ' "$1" "SELECT (SELECT count(*) FROM sock_runs),
    (SELECT count(*) FROM sock_ident)" 2>/dev/null || echo "- -"
}
# run_hist FILE: how long the socket runs of a v3 file are, "len:count ..." (buckets).
run_hist() {
  sqlite3 -separator ' ' "$1" "SELECT CASE WHEN n = 1 THEN '1' WHEN n <= 4 THEN '2-4'
      WHEN n <= 16 THEN '5-16' WHEN n <= 63 THEN '17-63' ELSE '64' END AS b, count(*)
    FROM (SELECT last_snapshot_id - first_snapshot_id + 1 AS n FROM sock_runs)
    GROUP BY b ORDER BY min(n)" 2>/dev/null \
    | awk '{printf "%s%s: %s", (NR > 1 ? ", " : ""), $1, $2}' || true
}
# table_bytes FILE: where the bytes of FILE go, "table-or-index MiB (share), ..." (top 4).
table_bytes() {
  sqlite3 -separator ' ' "$1" "SELECT name, sum(pgsize) FROM dbstat GROUP BY name
    ORDER BY 2 DESC LIMIT 4" 2>/dev/null | awk -v t="$(stat -c %s "$1")" \
    '{printf "%s%s %.1f MiB (%.0f%%)", (NR > 1 ? ", " : ""), $1, $2 / 1048576, 100 * $2 / t}' \
    || true
}
# findings FILE.json: "N (detector×count, ...)".
findings() {
  if command -v jq >/dev/null; then
    jq -r '[.findings[].detector] | group_by(.) | map("\(.[0]) ×\(length)") as $g
      | "\(length) (\($g | join(", ")))"' "$1" 2>/dev/null || echo "?"
  else
    echo "? (jq missing)"
  fi
}
# pack_timed V LABEL OUT IN...: RUNS timed packs by version V (the last one kept as OUT).
pack_timed() {
  local v=$1 label=$2 out=$3 r
  shift 3
  for ((r = 1; r <= RUNS; r++)); do
    rm -f "$out"
    timed "$label" "${ANALYZE[$v]}" pack "$@" -o "$out"
  done
  [[ -s $out ]] || die "pack by $v wrote no $out"
}
# zstd_timed LABEL FILE: compresses FILE into FILE.zst with ZSTD_ARGS (timed once).
zstd_timed() {
  rm -f "$2.zst"
  # shellcheck disable=SC2086 # ZSTD_ARGS is a list of options
  timed "$1" zstd -q $ZSTD_ARGS "$2" -o "$2.zst"
}

TABLE="$WORK/table.md"
cpu_model=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -1)
{
  echo "## Archive format benchmark: schema v2 ($OLD_COMMIT) vs v3 ($NEW_COMMIT)"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'); kernel $(uname -r); ${cpu_model:-unknown CPU} ×$(nproc);" \
    "build $build_type; \`tests/bench/bench_archive.sh\`. Bytes per socket-sample = file bytes /" \
    "sum of \`snapshots.sockets\`. Times from GNU time: medians of $RUNS runs (peak RSS: maximum);" \
    "CPU = user + sys. v2 = the previous format and its binaries, v3 = this checkout's."
} >"$TABLE"

# ---------------------------------------------------------------------------------------------
# (a) gen_series' day.
part_a() {
  local data v
  if [[ -n $DATA_DIR ]]; then
    mkdir -p "$DATA_DIR"
    data=$(cd "$DATA_DIR" && pwd)
  else
    data="$WORK/data"
    mkdir -p "$data"
  fi
  declare -A files_b samples_n pack_b
  for v in old new; do
    local dir="$data/gen-$v" stamp
    stamp="$SNAPSHOTS $SOCKETS $INTERVAL $(stat -c %Y "${GEN[$v]}")"
    if [[ -f $dir/.done && $(cat "$dir/.done") == "$stamp" ]]; then
      log "(a) reusing $dir"
    else
      rm -rf "$dir"
      log "(a) $v gen_series: $SNAPSHOTS snapshots x $SOCKETS sockets into $dir"
      timed "a_gen_$v" "${GEN[$v]}" --out "$dir" --snapshots "$SNAPSHOTS" --sockets "$SOCKETS" \
        --interval "$INTERVAL"
      echo "$stamp" >"$dir/.done"
    fi
    mapfile -t gfiles < <(find "$dir" -name '*.sqlite' | sort)
    ((${#gfiles[@]} > 0)) || die "gen_series wrote no file into $dir"
    files_b[$v]=$(bytes_of "${gfiles[@]}")
    samples_n[$v]=$(samples "${gfiles[@]}")
    echo "${#gfiles[@]}" >"$WORK/a_nfiles_$v"
    log "(a) $v: ${#gfiles[@]} files, ${files_b[$v]} bytes, ${samples_n[$v]} socket-samples"
    log "(a) $v pack ($RUNS runs)"
    pack_timed "$v" "a_pack_$v" "$WORK/a_pack_$v.sqlite" "${gfiles[@]}"
    pack_b[$v]=$(bytes_of "$WORK/a_pack_$v.sqlite")
    log "(a) $v pack: ${pack_b[$v]} bytes, $(median "$WORK/a_pack_$v.dat" 1) s"
  done
  [[ ${samples_n[old]} == "${samples_n[new]}" ]] \
    || log "warning: socket-samples differ: v2 ${samples_n[old]}, v3 ${samples_n[new]}"
  local pk_samples
  pk_samples=$(samples "$WORK/a_pack_new.sqlite")
  local view_rows
  view_rows=$(sqlite3 "$WORK/a_pack_new.sqlite" 'SELECT count(*) FROM sockets')
  local runs idents
  read -r runs idents < <(runs_of "$WORK/a_pack_new.sqlite")
  local hist
  hist=$(run_hist "$WORK/a_pack_new.sqlite")
  local gen_runs
  gen_runs=$(runs_of "$(find "$data/gen-new" -name '*.sqlite' | sort | head -1)")
  local tb_old tb_new
  tb_old=$(table_bytes "$WORK/a_pack_old.sqlite")
  tb_new=$(table_bytes "$WORK/a_pack_new.sqlite")

  log "(a) zstd $ZSTD_ARGS of the v3 pack"
  zstd_timed a_zstd_new "$WORK/a_pack_new.sqlite"
  local z_new z_old=""
  z_new=$(bytes_of "$WORK/a_pack_new.sqlite.zst")
  if [[ $ZSTD_OLD == 1 ]]; then
    log "(a) zstd $ZSTD_ARGS of the v2 pack"
    zstd_timed a_zstd_old "$WORK/a_pack_old.sqlite"
    z_old=$(bytes_of "$WORK/a_pack_old.sqlite.zst")
  fi

  # report: v2 on its pack, v3 on its pack, and v3 on the v2 pack (format vs code).
  local -a rlabels=(old new cross)
  local lbl
  for lbl in "${rlabels[@]}"; do
    local an=${ANALYZE[new]} f="$WORK/a_pack_new.sqlite"
    [[ $lbl == old ]] && an=${ANALYZE[old]} f="$WORK/a_pack_old.sqlite"
    [[ $lbl == cross ]] && f="$WORK/a_pack_old.sqlite"
    log "(a) report $lbl: warm-up + $RUNS runs"
    timed warm "$an" report "$f" --format json
    cp "$WORK/out" "$WORK/a_report_$lbl.json"
  done
  local r
  for ((r = 1; r <= RUNS; r++)); do
    for lbl in "${rlabels[@]}"; do
      local an=${ANALYZE[new]} f="$WORK/a_pack_new.sqlite"
      [[ $lbl == old ]] && an=${ANALYZE[old]} f="$WORK/a_pack_old.sqlite"
      [[ $lbl == cross ]] && f="$WORK/a_pack_old.sqlite"
      timed "a_report_$lbl" "$an" report "$f" --format json
    done
    log "  run $r/$RUNS: v2 $(tail -1 "$WORK/a_report_old.dat" | cut -d' ' -f1) s," \
      "v3 $(tail -1 "$WORK/a_report_new.dat" | cut -d' ' -f1) s"
  done

  local s_old=${samples_n[old]} s_new=${samples_n[new]}
  local pw_o pw_n rw_o rw_n
  pw_o=$(median "$WORK/a_pack_old.dat" 1)
  pw_n=$(median "$WORK/a_pack_new.dat" 1)
  rw_o=$(median "$WORK/a_report_old.dat" 1)
  rw_n=$(median "$WORK/a_report_new.dat" 1)
  local bps_new
  bps_new=$(div "${pack_b[new]}" "$s_new")
  local zbps
  zbps=$(div "$z_new" "$s_new")
  {
    echo
    echo "### (a) gen_series' day: $SNAPSHOTS snapshots × $SOCKETS sockets, ${INTERVAL} s apart," \
      "$(cat "$WORK/a_nfiles_new") files"
    echo
    echo "| figure | v2 | v3 | v3 / v2 |"
    echo "|---|---:|---:|---:|"
    echo "| socket-samples | $(thousands "$s_old") | $(thousands "$s_new") | – |"
    echo "| files as written by gen_series, MiB | $(mib "$((files_b[old] / 1024))") |" \
      "$(mib "$((files_b[new] / 1024))") | $(div "${files_b[new]}" "${files_b[old]}") |"
    echo "| … bytes per socket-sample | $(div "${files_b[old]}" "$s_old") |" \
      "$(div "${files_b[new]}" "$s_new") | – |"
    echo "| \`pack\` of all files into one, MiB | $(mib "$((pack_b[old] / 1024))") |" \
      "$(mib "$((pack_b[new] / 1024))") | $(div "${pack_b[new]}" "${pack_b[old]}") |"
    echo "| … bytes per socket-sample | $(div "${pack_b[old]}" "$s_old") | **$bps_new** | – |"
    if [[ -n $z_old ]]; then
      echo "| \`zstd $ZSTD_ARGS\` of the pack, MiB | $(mib "$((z_old / 1024))") |" \
        "$(mib "$((z_new / 1024))") | $(div "$z_new" "$z_old") |"
      echo "| … bytes per socket-sample | $(div "$z_old" "$s_old") | **$zbps** | – |"
      echo "| … zstd wall s (CPU s) | $(median "$WORK/a_zstd_old.dat" 1)" \
        "($(median "$WORK/a_zstd_old.dat" 5)) | $(median "$WORK/a_zstd_new.dat" 1)" \
        "($(median "$WORK/a_zstd_new.dat" 5)) | – |"
    else
      echo "| \`zstd $ZSTD_ARGS\` of the pack, MiB | – | $(mib "$((z_new / 1024))") | – |"
      echo "| … bytes per socket-sample | – | **$zbps** | – |"
      echo "| … zstd wall s (CPU s) | – | $(median "$WORK/a_zstd_new.dat" 1)" \
        "($(median "$WORK/a_zstd_new.dat" 5)) | – |"
    fi
    echo "| pack: sock_runs / sock_ident rows | – | $(thousands "$runs") / $(thousands "$idents") | – |"
    echo "| pack: socket-samples per run | – | $(div "$s_new" "$runs" %.1f) | – |"
    echo "| pack: runs by length (snapshots) | – | $hist | – |"
    echo "| pack: largest tables and indexes | $tb_old | $tb_new | – |"
    echo "| first gen_series file: sock_runs / sock_ident rows | – | ${gen_runs/ / \/ } | – |"
    echo "| pack: rows of the \`sockets\` view = socket-samples | – |" \
      "$(thousands "$view_rows") $([[ $view_rows == "$pk_samples" ]] && echo "(yes)" || echo "(**no**: $pk_samples)") | – |"
    echo "| \`pack\` wall s | $pw_o | $pw_n | $(div "$pw_n" "$pw_o") |"
    echo "| \`pack\` CPU s | $(median "$WORK/a_pack_old.dat" 5) | $(median "$WORK/a_pack_new.dat" 5) |" \
      "$(div "$(median "$WORK/a_pack_new.dat" 5)" "$(median "$WORK/a_pack_old.dat" 5)") |"
    echo "| \`pack\` peak RSS MiB | $(mib "$(max_col "$WORK/a_pack_old.dat" 2)") |" \
      "$(mib "$(max_col "$WORK/a_pack_new.dat" 2)") | – |"
    echo "| \`report PACK --format json\` wall s | $rw_o | $rw_n | $(div "$rw_n" "$rw_o") |"
    echo "| \`report\` CPU s | $(median "$WORK/a_report_old.dat" 5) |" \
      "$(median "$WORK/a_report_new.dat" 5) |" \
      "$(div "$(median "$WORK/a_report_new.dat" 5)" "$(median "$WORK/a_report_old.dat" 5)") |"
    echo "| \`report\` peak RSS MiB | $(mib "$(max_col "$WORK/a_report_old.dat" 2)") |" \
      "$(mib "$(max_col "$WORK/a_report_new.dat" 2)") |" \
      "$(div "$(max_col "$WORK/a_report_new.dat" 2)" "$(max_col "$WORK/a_report_old.dat" 2)") |"
    echo "| v3 \`report\` on the v2 pack: wall s / peak RSS MiB | – |" \
      "$(median "$WORK/a_report_cross.dat" 1) / $(mib "$(max_col "$WORK/a_report_cross.dat" 2)") | – |"
    echo "| findings | $(findings "$WORK/a_report_old.json") | $(findings "$WORK/a_report_new.json") | – |"
    echo "| findings, v3 \`report\` on the v2 pack | – | $(findings "$WORK/a_report_cross.json") | – |"
    echo
    echo "| goal (issue 13) | value | goal | met |"
    echo "|---|---:|---:|:-:|"
    echo "| (a) v3 pack, bytes per socket-sample | $bps_new | ≤ $GOAL_BPS | $(ok "$bps_new" "$GOAL_BPS") |"
    echo "| (a) v3 pack + zstd, bytes per socket-sample | $zbps | ≤ $GOAL_BPS | $(ok "$zbps" "$GOAL_BPS") |"
  } >>"$TABLE"
  rm -f "$WORK"/a_pack_*.sqlite*
}

# ---------------------------------------------------------------------------------------------
# (b) a live mixed capture.
in_ns() { nsenter --net="/run/netns/$NS" "$@"; }

tcp_states() {
  in_ns ss -Htan 2>/dev/null | awk '{n[$1]++} END {for (s in n) printf "%s %d, ", s, n[s]}' \
    | sed 's/, $//'
}

# capture V: COUNT snapshots by version V's collector, then its pack; figures to $WORK/b_V.*
capture() {
  local v=$1
  local dir="$WORK/b_out_$v"
  mkdir -p "$dir"
  log "(b) $v collector: $COUNT snapshots, ${CINTERVAL} s apart ($(tcp_states))"
  timed "b_cap_$v" nsenter --net="/run/netns/$NS" "${COLLECT[$v]}" --netns self --out "$dir" \
    --count "$COUNT" --interval "$CINTERVAL" --quiet
  local f
  f=$(tail -1 "$WORK/out")
  [[ -f $f ]] || die "the $v collector printed '$f', which is not a file"
  echo "$(bytes_of "$f") $(samples "$f")" >"$WORK/b_file_$v"
  sqlite3 -separator ' ' "$f" "SELECT (cpu_user_us + cpu_sys_us) / 1000.0,
    (realtime_end_ns - realtime_ns) / 1e6, sockets FROM snapshots" >"$WORK/b_snaps_$v"
  runs_of "$f" >"$WORK/b_fileruns_$v"
  log "(b) $v pack"
  pack_timed "$v" "b_pack_$v" "$WORK/b_pack_$v.sqlite" "$f"
  echo "$(bytes_of "$WORK/b_pack_$v.sqlite") $(samples "$WORK/b_pack_$v.sqlite")" \
    >"$WORK/b_packsz_$v"
  runs_of "$WORK/b_pack_$v.sqlite" >"$WORK/b_packruns_$v"
  run_hist "$WORK/b_pack_$v.sqlite" >"$WORK/b_hist_$v"
  table_bytes "$WORK/b_pack_$v.sqlite" >"$WORK/b_tables_$v"
  table_bytes "$f" >"$WORK/b_ftables_$v"
  if [[ $v == new ]]; then
    zstd_timed b_zstd_new "$WORK/b_pack_new.sqlite"
    bytes_of "$WORK/b_pack_new.sqlite.zst" >"$WORK/b_zstd_new"
    sqlite3 "$WORK/b_pack_new.sqlite" 'SELECT count(*) FROM sockets' >"$WORK/b_viewrows"
  fi
  rm -rf "$dir"
}

part_b() {
  if [[ $(id -u) -ne 0 ]]; then
    log "(b) skipped: needs root (network namespaces)"
    printf '\n### (b) live mixed capture\n\nSkipped: not root.\n' >>"$TABLE"
    return 0
  fi
  for tool in ip ss nsenter; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
  done
  NS="srbench-archive-$$"
  ip netns add "$NS" || die "ip netns add $NS"
  ip -n "$NS" link set lo up
  ip netns exec "$NS" sysctl -qw net.core.somaxconn=65535 || true
  # Ephemeral ports above the listeners (BASE_PORT..BASE_PORT+200), so no client takes one.
  ip netns exec "$NS" sysctl -qw net.ipv4.ip_local_port_range="10000 65000" || true
  local i per=$((IDLE_CONNS / IDLE_LOADERS)) extra=$((IDLE_CONNS % IDLE_LOADERS))
  log "(b) $IDLE_CONNS idle connections in $IDLE_LOADERS processes, $ACTIVE_CONNS active," \
    "$CHURN_RATE short connections a second, in $NS"
  for ((i = 0; i < IDLE_LOADERS; i++)); do
    start_sockload "idle$i" $((BASE_PORT + i)) $((per + (i < extra ? 1 : 0)))
  done
  start_sockload active --send "$ACTIVE_BYTES" $((BASE_PORT + 100)) "$ACTIVE_CONNS"
  start_sockload churn --churn "$CHURN_RATE" $((BASE_PORT + 200)) 1
  log "(b) warm-up ${WARMUP} s (TIME-WAIT fills up)"
  sleep "$WARMUP"
  local states_before
  states_before=$(tcp_states)

  capture old
  capture new

  # The minute run: single snapshots, interleaved with ss -tanpie.
  log "(b) minute run: warm-up, then $RUNS interleaved runs of ss, v2 and v3 collect"
  mkdir -p "$WORK/b_one"
  timed warm nsenter --net="/run/netns/$NS" ss -tanpie
  local r v
  for ((r = 0; r <= RUNS; r++)); do
    local sfx=""
    ((r == 0)) && sfx="_warm" # the first round only warms up
    timed "b_ss$sfx" nsenter --net="/run/netns/$NS" ss -tanpie
    for v in old new; do
      timed "b_one_$v$sfx" nsenter --net="/run/netns/$NS" "${COLLECT[$v]}" --netns self \
        --out "$WORK/b_one" --quiet
      local f
      f=$(tail -1 "$WORK/out")
      if ((r > 0)); then
        echo "$(bytes_of "$f") $(samples "$f")" >>"$WORK/b_onefile_$v"
      fi
      rm -f "$f"
    done
  done
  local states_after
  states_after=$(tcp_states)
  stop_loads
  delete_netns

  # Figures.
  declare -A fb fs pb ps fr pr snap_cpu snap_wall proc_cpu one_w one_bps
  for v in old new; do
    read -r fb[$v] fs[$v] <"$WORK/b_file_$v"
    read -r pb[$v] ps[$v] <"$WORK/b_packsz_$v"
    fr[$v]=$(cat "$WORK/b_fileruns_$v")
    pr[$v]=$(cat "$WORK/b_packruns_$v")
    snap_cpu[$v]=$(printf '%.1f' "$(median "$WORK/b_snaps_$v" 1)")
    snap_wall[$v]=$(printf '%.1f' "$(median "$WORK/b_snaps_$v" 2)")
    proc_cpu[$v]=$(div "$(median "$WORK/b_cap_$v.dat" 5)" "$COUNT" %.3f)
    one_w[$v]=$(median "$WORK/b_one_$v.dat" 1)
    one_bps[$v]=$(div "$(median "$WORK/b_onefile_$v" 1)" "$(median "$WORK/b_onefile_$v" 2)")
  done
  local ss_w ss_best
  ss_w=$(median "$WORK/b_ss.dat" 1)
  ss_best=$(min_col "$WORK/b_ss.dat" 1)
  local zb
  zb=$(cat "$WORK/b_zstd_new")
  local pbps_new zbps_new
  pbps_new=$(div "${pb[new]}" "${ps[new]}")
  zbps_new=$(div "$zb" "${ps[new]}")
  local nruns
  nruns=${pr[new]%% *}
  {
    echo
    echo "### (b) live mixed capture: $IDLE_CONNS idle + $ACTIVE_CONNS active connections" \
      "(${ACTIVE_BYTES} B/s each) + $CHURN_RATE connections/s churn; $COUNT snapshots," \
      "${CINTERVAL} s apart"
    echo
    echo "TCP sockets in the namespace before the captures: $states_before; after: $states_after." \
      "The v2 collector ran first, then the v3 one, on the same load."
    echo
    echo "| figure | v2 | v3 | v3 / v2 |"
    echo "|---|---:|---:|---:|"
    echo "| socket-samples in the collector file | $(thousands "${fs[old]}") |" \
      "$(thousands "${fs[new]}") | – |"
    echo "| collector file, MiB | $(mib "$((fb[old] / 1024))") | $(mib "$((fb[new] / 1024))") |" \
      "$(div "${fb[new]}" "${fb[old]}") |"
    echo "| … bytes per socket-sample | $(div "${fb[old]}" "${fs[old]}") |" \
      "$(div "${fb[new]}" "${fs[new]}") | – |"
    echo "| collector file: largest tables and indexes | $(cat "$WORK/b_ftables_old") |" \
      "$(cat "$WORK/b_ftables_new") | – |"
    echo "| collector file: sock_runs / sock_ident rows | – | ${fr[new]/ / \/ } | – |"
    echo "| \`pack\` of the file, MiB | $(mib "$((pb[old] / 1024))") | $(mib "$((pb[new] / 1024))") |" \
      "$(div "${pb[new]}" "${pb[old]}") |"
    echo "| … bytes per socket-sample | $(div "${pb[old]}" "${ps[old]}") | **$pbps_new** | – |"
    echo "| \`zstd $ZSTD_ARGS\` of the pack: bytes per socket-sample (wall s) | – |" \
      "**$zbps_new** ($(median "$WORK/b_zstd_new.dat" 1)) | – |"
    echo "| pack: largest tables and indexes | $(cat "$WORK/b_tables_old") |" \
      "$(cat "$WORK/b_tables_new") | – |"
    echo "| pack: sock_runs / sock_ident rows | – | ${pr[new]/ / \/ } | – |"
    echo "| pack: socket-samples per run | – | $(div "${ps[new]}" "$nruns" %.1f) | – |"
    echo "| pack: runs by length (snapshots) | – | $(cat "$WORK/b_hist_new") | – |"
    echo "| pack: rows of the \`sockets\` view = socket-samples | – |" \
      "$(thousands "$(cat "$WORK/b_viewrows")") $([[ $(cat "$WORK/b_viewrows") == "${ps[new]}" ]] && echo "(yes)" || echo "(**no**)") | – |"
    echo "| \`pack\` wall s / peak RSS MiB | $(median "$WORK/b_pack_old.dat" 1) /" \
      "$(mib "$(max_col "$WORK/b_pack_old.dat" 2)") | $(median "$WORK/b_pack_new.dat" 1) /" \
      "$(mib "$(max_col "$WORK/b_pack_new.dat" 2)") | – |"
    echo "| capture phase per snapshot, CPU ms (median, from the file) | ${snap_cpu[old]} |" \
      "${snap_cpu[new]} | $(div "${snap_cpu[new]}" "${snap_cpu[old]}") |"
    echo "| capture phase per snapshot, wall ms (median, from the file) | ${snap_wall[old]} |" \
      "${snap_wall[new]} | $(div "${snap_wall[new]}" "${snap_wall[old]}") |"
    echo "| collector process CPU / snapshot, s ($COUNT snapshots, incl. the SQLite write) |" \
      "${proc_cpu[old]} | ${proc_cpu[new]} | $(div "${proc_cpu[new]}" "${proc_cpu[old]}") |"
    echo "| collector peak RSS MiB ($COUNT snapshots) | $(mib "$(max_col "$WORK/b_cap_old.dat" 2)") |" \
      "$(mib "$(max_col "$WORK/b_cap_new.dat" 2)") | – |"
    echo "| minute run (1 snapshot): wall s | ${one_w[old]} | ${one_w[new]} |" \
      "$(div "${one_w[new]}" "${one_w[old]}") |"
    echo "| minute run: CPU s | $(median "$WORK/b_one_old.dat" 5) | $(median "$WORK/b_one_new.dat" 5) |" \
      "$(div "$(median "$WORK/b_one_new.dat" 5)" "$(median "$WORK/b_one_old.dat" 5)") |"
    echo "| minute run: file bytes per socket | ${one_bps[old]} | ${one_bps[new]} | – |"
    echo "| \`ss -tanpie\` wall s (best) | $ss_w ($ss_best) | – | – |"
    echo "| minute run / ss (medians; best runs) | $(div "${one_w[old]}" "$ss_w")" \
      "($(div "$(min_col "$WORK/b_one_old.dat" 1)" "$ss_best")) | $(div "${one_w[new]}" "$ss_w")" \
      "($(div "$(min_col "$WORK/b_one_new.dat" 1)" "$ss_best")) | – |"
    echo
    echo "| goal (issue 13) | value | goal | met |"
    echo "|---|---:|---:|:-:|"
    echo "| (b) v3 pack, bytes per socket-sample | $pbps_new | ≤ $GOAL_BPS | $(ok "$pbps_new" "$GOAL_BPS") |"
    echo "| (b) v3 pack + zstd, bytes per socket-sample | $zbps_new | ≤ $GOAL_BPS |" \
      "$(ok "$zbps_new" "$GOAL_BPS") |"
    echo "| (b) v3 minute run / ss -tanpie (medians) | $(div "${one_w[new]}" "$ss_w") | ≤ 0.25 |" \
      "$(ok "$(div "${one_w[new]}" "$ss_w")" 0.25) |"
  } >>"$TABLE"
  rm -f "$WORK"/b_pack_*.sqlite*
}

for part in $PARTS; do
  case $part in
  a) part_a ;;
  b) part_b ;;
  *) die "unknown part '$part' (PARTS: a b)" ;;
  esac
done
echo "| load average (1 min) at the end | $(cut -d' ' -f1 /proc/loadavg) | – | – |" >>"$TABLE"

echo
cat "$TABLE"
cp "$TABLE" "$RESULTS"
log "written to $RESULTS"
