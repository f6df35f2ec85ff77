#!/usr/bin/env bash
# bench_collect.sh: measures sockrewind-collect beside `ss -tanpie` (and `netstat -tanpe`) on the
# same sockets, in private network namespaces filled by tests/bench/sockload. A benchmark, not a
# test: it prints a Markdown table of figures and writes it to tests/bench/last-results.md.
# See tests/bench/README.md. Run as root, from anywhere.
#
# Environment knobs (defaults in brackets):
#   RUNS [7]            timed runs per command (>= 5); runs are interleaved ss, netstat, collect, ...
#   PAIRS_A [20000]     scenario A: TCP pairs (2 sockets each) over LOADERS_A sockload processes
#   LOADERS_A [3]       scenario A: number of sockload processes (each <= 9000 pairs)
#   PAIRS_B [500]       scenario B: TCP pairs in one sockload process
#   RUN_TIMEOUT [120]   seconds allowed to one timed command
#   TOTAL_TIMEOUT [1800] seconds allowed to the whole script
#   NO_BUILD [0]        1: do not (re)build; use the binaries already in build-bench
#   QUIET_WAIT [60]     seconds to wait, before each scenario, for other processes to leave the
#                       CPUs idle (< 0.2 core busy); the figures note how busy the host was
#   RESULTS [tests/bench/last-results.md]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
BUILD="$REPO/build-bench"
COLLECT="$BUILD/collector/sockrewind-collect"
SOCKLOAD="$BUILD/tests/bench/sockload"

RUNS=${RUNS:-7}
PAIRS_A=${PAIRS_A:-20000}
LOADERS_A=${LOADERS_A:-3}
PAIRS_B=${PAIRS_B:-500}
RUN_TIMEOUT=${RUN_TIMEOUT:-120}
TOTAL_TIMEOUT=${TOTAL_TIMEOUT:-1800}
NO_BUILD=${NO_BUILD:-0}
QUIET_WAIT=${QUIET_WAIT:-60}
RESULTS=${RESULTS:-$SCRIPT_DIR/last-results.md}
BASE_PORT=7000
READY_TIMEOUT=180

BENCH_NAME=bench_collect.sh
# shellcheck source=tests/bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

[[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces)"
((RUNS >= 5)) || die "RUNS must be >= 5"
((PAIRS_A > 0 && LOADERS_A > 0 && PAIRS_B > 0)) || die "PAIRS_A, LOADERS_A, PAIRS_B must be > 0"
(((PAIRS_A + LOADERS_A - 1) / LOADERS_A <= 9000)) \
  || die "PAIRS_A/LOADERS_A must be <= 9000 (20,000 open files per process)"
for tool in ip ss nsenter timeout sqlite3 cmake awk stat; do
  command -v "$tool" >/dev/null || die "missing tool: $tool"
done

# ---------------------------------------------------------------------------------------------
# State and cleanup. Everything the script starts is recorded here and ended by pid on any exit.
WORK=$(mktemp -d /tmp/srbench.XXXXXX)
declare -a NETNS_LIST=()
NS=""

delete_netns() {
  local ns=$1 pid
  # Only our own processes can be in our private namespace; end any straggler by pid.
  for pid in $(ip netns pids "$ns" 2>/dev/null); do
    kill -KILL "$pid" 2>/dev/null || true
  done
  ip netns del "$ns" 2>/dev/null || true
}

cleanup_extra() {
  stop_loads
  local ns
  for ns in "${NETNS_LIST[@]}"; do
    delete_netns "$ns"
  done
}
install_traps

# The whole run is bounded: the watchdog sends us SIGTERM, and the EXIT trap cleans up.
start_watchdog

# ---------------------------------------------------------------------------------------------
# Build (Release). WARNINGS_AS_ERRORS=OFF: g++ 12 -O2/-O3 gives false -Wrestrict positives in
# std::string code, which must not stop a benchmark; sockload itself builds warning-free.
if [[ $NO_BUILD != 1 ]]; then
  log "building Release into $BUILD"
  if [[ ! -f $BUILD/CMakeCache.txt ]]; then
    cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DWARNINGS_AS_ERRORS=OFF \
      >"$WORK/configure.log" 2>&1 || {
      cat "$WORK/configure.log" >&2
      die "cmake configure failed"
    }
  fi
  timeout 1200 cmake --build "$BUILD" -j2 --target sockrewind-collect sockload \
    >"$WORK/build.log" 2>&1 || {
    tail -40 "$WORK/build.log" >&2
    die "build failed"
  }
fi
[[ -x $COLLECT ]] || die "$COLLECT not built"
[[ -x $SOCKLOAD ]] || die "$SOCKLOAD not built"
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
[[ $build_type == Release ]] || log "warning: $BUILD is CMAKE_BUILD_TYPE='$build_type', not Release"

if [[ ! -x /usr/bin/time ]]; then
  log "installing GNU time (/usr/bin/time) for peak RSS"
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq time >/dev/null \
    || die "cannot install the 'time' package"
fi
HAVE_NETSTAT=0
command -v netstat >/dev/null && HAVE_NETSTAT=1
((HAVE_NETSTAT)) || log "netstat not installed (apt-get install net-tools): skipping it"

# ---------------------------------------------------------------------------------------------
# Namespaces and load.

# new_netns NAME: a private netns with lo up; loopback-only by construction (no other links).
new_netns() {
  local ns=$1
  ip netns add "$ns" || die "ip netns add $ns"
  NETNS_LIST+=("$ns")
  ip -n "$ns" link set lo up
  # Per-netns sysctls, so they do not touch the host's settings.
  ip netns exec "$ns" sysctl -qw net.core.somaxconn=65535 || true
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="1024 65000" || true
  NS=$ns
}

# start_load PAIRS LOADERS: LOADERS sockload processes in $NS, ports BASE_PORT.., PAIRS in all;
# waits until each prints "ready".
start_load() {
  local total=$1 loaders=$2 i names=()
  local per=$((total / loaders)) extra=$((total % loaders))
  for ((i = 0; i < loaders; i++)); do
    spawn_sockload "load$i" $((BASE_PORT + i)) $((per + (i < extra ? 1 : 0)))
    names+=("load$i")
  done
  wait_sockloads "${names[@]}"
}

# in_ns CMD...: runs CMD in $NS's network namespace only. `ip netns exec` would also remount
# /sys, which hides the cgroup2 mount from `ss -e`: ss then prints "Failed to find cgroup2 mount"
# once per socket and runs twice as slowly, which would flatter the collector.
in_ns() { nsenter --net="/run/netns/$NS" "$@"; }

count_tcp() { in_ns ss -Htan 2>/dev/null | wc -l; }

# Host CPU accounting, to tell how much other processes interfered: host_busy_s prints the
# seconds of CPU (all cores, user+nice+sys+irq+softirq+steal) used since boot.
host_busy_s() {
  awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" {print ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit}' \
    /proc/stat
}

# wait_quiet: waits up to QUIET_WAIT s until the host is nearly idle (other work < 0.2 core).
wait_quiet() {
  local deadline=$((SECONDS + QUIET_WAIT)) b0 b1 busy
  while :; do
    b0=$(host_busy_s)
    sleep 1
    b1=$(host_busy_s)
    busy=$(awk -v a="$b0" -v b="$b1" 'BEGIN {printf "%.2f", b - a}')
    if awk -v x="$busy" 'BEGIN {exit !(x < 0.2)}'; then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      log "host still busy ($busy cores used by others); measuring anyway"
      return 0
    fi
    log "host busy ($busy cores used by others); waiting (QUIET_WAIT=${QUIET_WAIT}s)"
  done
}

# loop_begin / loop_end LABEL...: cores used by other processes during a loop of timed runs:
# (host CPU during the loop - CPU of the runs LABEL... measured in it) / (the loop's wall time).
# Over a whole loop the 10 ms resolution of /proc/stat does not matter; the script's own
# helpers (sqlite3, awk) count as "other" and add a few hundredths.
loop_begin() {
  LOOP_T0=$(date +%s%N)
  LOOP_B0=$(host_busy_s)
}
loop_end() {
  local t1 b1 own
  t1=$(date +%s%N)
  b1=$(host_busy_s)
  own=$(cat "${@/#/$WORK/}" | awk '{own += $2 + $3} END {print own + 0}')
  awk -v b="$(awk -v a="$LOOP_B0" -v c="$b1" 'BEGIN {print c - a}')" -v own="$own" \
    -v w="$(((t1 - LOOP_T0) / 1000000))" 'BEGIN {x = (b - own) / (w / 1000); if (x < 0) x = 0
    printf "%.2f", x}'
}

# ---------------------------------------------------------------------------------------------
# Measurement. measure LABEL CMD...: one run of CMD inside $NS, stdout kept in $WORK/out,
# stderr in $WORK/err; appends "wall_s user_s sys_s maxrss_kib host_busy_s" to $WORK/LABEL.dat,
# where host_busy_s is the CPU the whole host used meanwhile (10 ms resolution).
# Wall and CPU come from bash's `time` (ms resolution; includes the tiny /usr/bin/time wrapper),
# the peak RSS from GNU time's %M.
measure() {
  local label=$1
  shift
  rm -f "$WORK/rss" "$WORK/rss.times"
  local b0 b1
  b0=$(host_busy_s)
  # shellcheck disable=SC2016 # expanded by the inner bash
  if ! timeout -k 5 "$RUN_TIMEOUT" nsenter --net="/run/netns/$NS" bash -c '
      TIMEFORMAT="%3R %3U %3S"
      { time /usr/bin/time -f %M -o "$1" "${@:4}" >"$2" 2>"$3"; } 2>"$1.times"' \
    _ "$WORK/rss" "$WORK/out" "$WORK/err" "$@"; then
    tail -5 "$WORK/err" >&2
    die "$label failed or timed out (${RUN_TIMEOUT}s): $*"
  fi
  b1=$(host_busy_s)
  printf '%s %s %s\n' "$(cat "$WORK/rss.times")" "$(tail -1 "$WORK/rss")" \
    "$(awk -v a="$b0" -v b="$b1" 'BEGIN {printf "%.3f", b - a}')" >>"$WORK/$label.dat"
}

# median FILE COL: median of column COL (1-based) of FILE.
median() {
  awk -v c="$2" '{print $c}' "$1" | sort -g | awk '{v[NR]=$1} END {
    if (NR == 0) { print "nan"; exit }
    if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2] + v[NR/2+1]) / 2 }'
}

max_col() { awk -v c="$2" 'NR==1 || $c>m {m=$c} END {print m+0}' "$1"; }
min_col() { awk -v c="$2" 'NR==1 || $c<m {m=$c} END {print m+0}' "$1"; }

# cpu_col FILE: appends a 6th column user+sys to each row.
cpu_col() { awk '{printf "%s %.3f\n", $0, $2 + $3}' "$1" >"$1.cpu" && mv "$1.cpu" "$1"; }

# file_stats LABEL: reads the file the collector just wrote (path on its stdout); appends
# "bytes sockets snapshots snap_cpu_ms_median snap_wall_ms_median" to $WORK/LABEL.files,
# then deletes the file so the output directory stays small.
file_stats() {
  local label=$1 f
  f=$(tail -1 "$WORK/out")
  [[ -f $f ]] || die "collector printed '$f', which is not a file"
  local bytes
  bytes=$(stat -c %s "$f")
  # One sqlite3 run: "n SOCKETS SNAPSHOTS", then "s CPU_MS WALL_MS" per snapshot.
  sqlite3 -separator ' ' "$f" \
    "select 'n', (select count(*) from sockets), (select count(*) from snapshots);
     select 's', (cpu_user_us + cpu_sys_us) / 1000.0, (realtime_end_ns - realtime_ns) / 1e6
       from snapshots;" >"$WORK/q" || die "sqlite3 $f failed"
  local sockets snaps snap_cpu snap_wall
  read -r _ sockets snaps < <(grep '^n ' "$WORK/q")
  grep '^s ' "$WORK/q" >"$WORK/q.s"
  snap_cpu=$(median "$WORK/q.s" 2)
  snap_wall=$(median "$WORK/q.s" 3)
  echo "$bytes $sockets $snaps $snap_cpu $snap_wall" >>"$WORK/$label.files"
  rm -f "$f"
}

OUT="$WORK/out.d"
mkdir -p "$OUT"

collect() { measure "$1" "$COLLECT" --netns self --out "$OUT" --quiet "${@:2}" && file_stats "$1"; }

# ---------------------------------------------------------------------------------------------
# Scenario A: PAIRS_A idle loopback TCP pairs (2*PAIRS_A sockets) in one netns.
new_netns "srbench-$$-a"
log "scenario A: starting $PAIRS_A pairs in $LOADERS_A sockload processes in $NS"
start_load "$PAIRS_A" "$LOADERS_A"
A_TCP=$(count_tcp)
log "scenario A: $A_TCP TCP sockets in $NS"
((A_TCP >= 2 * PAIRS_A)) || die "expected >= $((2 * PAIRS_A)) TCP sockets, saw $A_TCP"

wait_quiet
log "scenario A: warm-up"
measure warm ss -tanpie
if ((HAVE_NETSTAT)); then
  measure warm netstat -tanpe
fi
collect warm
log "scenario A: $RUNS interleaved runs"
loop_begin
for ((r = 1; r <= RUNS; r++)); do
  measure a_ss ss -tanpie
  if ((HAVE_NETSTAT)); then
    measure a_netstat netstat -tanpe
  fi
  collect a_collect
  log "  run $r/$RUNS: ss $(tail -1 "$WORK/a_ss.dat" | cut -d' ' -f1)s," \
    "collect $(tail -1 "$WORK/a_collect.dat" | cut -d' ' -f1)s"
done
a_labels=(a_ss.dat a_collect.dat)
if ((HAVE_NETSTAT)); then
  a_labels+=(a_netstat.dat)
fi
a_busy=$(loop_end "${a_labels[@]}")
log "scenario A: --tcp-info full (3 runs)"
for ((r = 1; r <= 3; r++)); do
  collect a_full --tcp-info full
done
log "scenario A: --count 10 --interval 0 (3 runs)"
for ((r = 1; r <= 3; r++)); do
  collect a_c10 --count 10 --interval 0
done

stop_loads
delete_netns "$NS"

# ---------------------------------------------------------------------------------------------
# Scenario B: PAIRS_B pairs in a fresh netns: CPU per run and per snapshot.
new_netns "srbench-$$-b"
log "scenario B: starting $PAIRS_B pairs in $NS"
start_load "$PAIRS_B" 1
B_TCP=$(count_tcp)
((B_TCP >= 2 * PAIRS_B)) || die "expected >= $((2 * PAIRS_B)) TCP sockets, saw $B_TCP"
wait_quiet
measure warm ss -tanpie
collect warm
log "scenario B: $RUNS interleaved runs"
loop_begin
for ((r = 1; r <= RUNS; r++)); do
  measure b_ss ss -tanpie
  if ((HAVE_NETSTAT)); then
    measure b_netstat netstat -tanpe
  fi
  collect b_collect
  collect b_c10 --count 10 --interval 0
done
b_labels=(b_ss.dat b_collect.dat b_c10.dat)
if ((HAVE_NETSTAT)); then
  b_labels+=(b_netstat.dat)
fi
b_busy=$(loop_end "${b_labels[@]}")
stop_loads
delete_netns "$NS"

# ---------------------------------------------------------------------------------------------
# Figures.
for f in "$WORK"/{a,b}_*.dat; do
  cpu_col "$f"
done

ms() { awk -v s="$1" 'BEGIN {printf "%.0f", s * 1000}'; }
ms1() { awk -v s="$1" 'BEGIN {printf "%.1f", s * 1000}'; }
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN {printf f, (b > 0 ? a / b : 0)}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
ok() { awk -v v="$1" -v g="$2" 'BEGIN {print (v <= g) ? "yes" : "**no**"}'; }

a_ss_wall=$(median "$WORK/a_ss.dat" 1)
a_ss_cpu=$(median "$WORK/a_ss.dat" 6)
a_ss_rss=$(max_col "$WORK/a_ss.dat" 4)
a_col_wall=$(median "$WORK/a_collect.dat" 1)
a_col_cpu=$(median "$WORK/a_collect.dat" 6)
a_col_rss=$(max_col "$WORK/a_collect.dat" 4)
a_ratio=$(div "$a_col_wall" "$a_ss_wall")
a_ss_best=$(min_col "$WORK/a_ss.dat" 1)
a_col_best=$(min_col "$WORK/a_collect.dat" 1)
a_ratio_best=$(div "$a_col_best" "$a_ss_best")
a_sockets=$(median "$WORK/a_collect.files" 2)
a_bytes=$(median "$WORK/a_collect.files" 1)
a_bps=$(div "$a_bytes" "$a_sockets" "%.1f")
a_snap_cpu=$(median "$WORK/a_collect.files" 4)
a_snap_wall=$(median "$WORK/a_collect.files" 5)
a_full_wall=$(median "$WORK/a_full.dat" 1)
a_full_rss=$(max_col "$WORK/a_full.dat" 4)
a_full_bps=$(div "$(median "$WORK/a_full.files" 1)" "$(median "$WORK/a_full.files" 2)" "%.1f")
a_c10_cpu=$(median "$WORK/a_c10.dat" 6)
a_c10_rss=$(max_col "$WORK/a_c10.dat" 4)
a_c10_snap_cpu=$(median "$WORK/a_c10.files" 4)
a_c10_bps=$(div "$(median "$WORK/a_c10.files" 1)" "$(median "$WORK/a_c10.files" 2)" "%.1f")
if ((HAVE_NETSTAT)); then
  a_ns_wall=$(median "$WORK/a_netstat.dat" 1)
  a_ns_best=$(min_col "$WORK/a_netstat.dat" 1)
  a_ns_cpu=$(median "$WORK/a_netstat.dat" 6)
  a_ns_rss=$(max_col "$WORK/a_netstat.dat" 4)
  b_ns_wall=$(median "$WORK/b_netstat.dat" 1)
  b_ns_cpu=$(median "$WORK/b_netstat.dat" 6)
fi

b_ss_wall=$(median "$WORK/b_ss.dat" 1)
b_ss_cpu=$(median "$WORK/b_ss.dat" 6)
b_col_wall=$(median "$WORK/b_collect.dat" 1)
b_col_cpu=$(median "$WORK/b_collect.dat" 6)
b_col_rss=$(max_col "$WORK/b_collect.dat" 4)
b_sockets=$(median "$WORK/b_collect.files" 2)
b_bps=$(div "$(median "$WORK/b_collect.files" 1)" "$b_sockets" "%.1f")
b_snap_cpu=$(median "$WORK/b_collect.files" 4)
b_c10_cpu=$(median "$WORK/b_c10.dat" 6)
b_c10_per=$(div "$b_c10_cpu" 10 "%.4f")
b_c10_snap_cpu=$(median "$WORK/b_c10.files" 4)
# Marginal cost of a socket on disk, and the fixed part of a file, from A and B together.
b_bytes=$(median "$WORK/b_collect.files" 1)
marg_bps=$(div "$((${a_bytes%.*} - ${b_bytes%.*}))" "$((${a_sockets%.*} - ${b_sockets%.*}))" "%.1f")
fixed_kib=$(awk -v b="$b_bytes" -v m="$marg_bps" -v n="$b_sockets" \
  'BEGIN {printf "%.0f", (b - m * n) / 1024}')

cpu_model=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -1)
ncpu=$(nproc)
commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=""
if [[ -n $(git -C "$REPO" --no-optional-locks status --porcelain 2>/dev/null | head -1) ]]; then
  dirty=" + local changes"
fi

{
  echo "## sockrewind-collect benchmark"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'); kernel $(uname -r); ${cpu_model:-unknown CPU} ×$ncpu;" \
    "$(ss -V 2>/dev/null | head -1); commit $commit$dirty; build $build_type."
  echo "Medians of $RUNS interleaved runs inside a private netns (\`tests/bench/bench_collect.sh\`)."
  echo "Collector: \`sockrewind-collect --netns self --out DIR --quiet\` (all sources, owners," \
    "tcp_info basic, SQLite write + fsync). CPU = user + sys of the whole process."
  echo
  echo "### A: $PAIRS_A idle loopback TCP pairs ($a_sockets sockets in the file)"
  echo
  echo "| command | wall ms (best) | CPU ms | peak RSS MiB |"
  echo "|---|---:|---:|---:|"
  echo "| \`ss -tanpie\` | $(ms "$a_ss_wall") ($(ms "$a_ss_best")) | $(ms "$a_ss_cpu") |" \
    "$(mib "$a_ss_rss") |"
  if ((HAVE_NETSTAT)); then
    echo "| \`netstat -tanpe\` | $(ms "$a_ns_wall") ($(ms "$a_ns_best")) | $(ms "$a_ns_cpu") |" \
      "$(mib "$a_ns_rss") |"
  fi
  echo "| \`sockrewind-collect\` | $(ms "$a_col_wall") ($(ms "$a_col_best")) | $(ms "$a_col_cpu") |" \
    "$(mib "$a_col_rss") |"
  echo "| \`sockrewind-collect --tcp-info full\` | $(ms "$a_full_wall") | – | $(mib "$a_full_rss") |"
  echo
  echo "| figure | value | goal | met |"
  echo "|---|---:|---:|:-:|"
  echo "| wall collect / ss (medians) | $a_ratio | ≤ 0.25 | $(ok "$a_ratio" 0.25) |"
  echo "| wall collect / ss (best runs) | $a_ratio_best | ≤ 0.25 | $(ok "$a_ratio_best" 0.25) |"
  echo "| peak RSS, collect (max of runs) | $(mib "$a_col_rss") MiB | ≤ 64 MiB |" \
    "$(ok "$(mib "$a_col_rss")" 64) |"
  echo "| bytes per socket on disk (file size / sockets) | $a_bps | ≤ 100 | $(ok "$a_bps" 100) |"
  echo "| marginal bytes per socket (A vs B files) | $marg_bps | ≤ 100 | $(ok "$marg_bps" 100) |"
  echo "| bytes per socket, \`--tcp-info full\` | $a_full_bps | – | – |"
  echo "| bytes per socket, \`--count 10\` | $a_c10_bps | – | – |"
  echo "| capture phase of one snapshot (wall / CPU, from the file) |" \
    "$(printf '%.0f / %.0f' "$a_snap_wall" "$a_snap_cpu") ms | – | – |"
  echo "| \`--count 10 --interval 0\`: CPU per snapshot (process / capture) |" \
    "$(ms "$(div "$a_c10_cpu" 10 %.4f)") / $(printf '%.0f' "$a_c10_snap_cpu") ms | – | – |"
  echo "| \`--count 10\` peak RSS | $(mib "$a_c10_rss") MiB | ≤ 64 MiB | $(ok "$(mib "$a_c10_rss")" 64) |"
  echo "| other processes' CPU during the runs (incl. this script's helpers) | ≈ $a_busy cores | 0 | – |"
  echo
  echo "### B: $PAIRS_B idle loopback TCP pairs ($b_sockets sockets in the file)"
  echo
  echo "| figure | value | goal | met |"
  echo "|---|---:|---:|:-:|"
  echo "| \`ss -tanpie\` wall / CPU | $(ms "$b_ss_wall") / $(ms "$b_ss_cpu") ms | – | – |"
  if ((HAVE_NETSTAT)); then
    echo "| \`netstat -tanpe\` wall / CPU | $(ms "$b_ns_wall") / $(ms "$b_ns_cpu") ms | – | – |"
  fi
  echo "| collect wall / CPU per run (1 snapshot) | $(ms "$b_col_wall") / $(ms "$b_col_cpu") ms |" \
    "– | – |"
  echo "| CPU per snapshot, capture phase (from the file) | $(printf '%.1f' "$b_snap_cpu") ms |" \
    "≤ 30 ms | $(ok "$b_snap_cpu" 30) |"
  echo "| \`--count 10 --interval 0\`: process CPU / 10 | $(ms1 "$b_c10_per") ms | ≤ 30 ms |" \
    "$(ok "$(ms1 "$b_c10_per")" 30) |"
  echo "| \`--count 10 --interval 0\`: capture CPU per snapshot (file) |" \
    "$(printf '%.1f' "$b_c10_snap_cpu") ms | ≤ 30 ms | $(ok "$b_c10_snap_cpu" 30) |"
  echo "| bytes per socket on disk (file size / sockets) | $b_bps |" \
    "– (≈ $fixed_kib KiB fixed per file) | – |"
  echo "| peak RSS, collect | $(mib "$b_col_rss") MiB | ≤ 64 MiB | $(ok "$(mib "$b_col_rss")" 64) |"
  echo "| other processes' CPU during the runs (incl. this script's helpers) | ≈ $b_busy cores | 0 | – |"
} >"$WORK/table.md"

echo
cat "$WORK/table.md"
cp "$WORK/table.md" "$RESULTS"
log "written to $RESULTS"
