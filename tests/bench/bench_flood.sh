#!/usr/bin/env bash
# bench_flood.sh: issue 12 item 2, "one cause, thousands of findings". Holds PAIRS idle loopback
# TCP pairs in LOADERS sockload processes, every accepted socket with UNREAD unread bytes, captures
# one series of them with sockrewind-collect, then runs `sockrewind-analyze report` of the previous
# release (OLD_BIN) and of this checkout on the SAME file, side by side: findings, JSON and text
# bytes, wall time and peak RSS. A benchmark, not a test: it prints a Markdown table and writes it
# to tests/bench/last-flood-results.md. See tests/bench/README.md. Run as root, from anywhere; the
# machine is shared, so run it as `nice -n 10 tests/bench/bench_flood.sh`.
#
# The capture must make both rules fire with their default thresholds:
#   old rx_queue_growth (121ec08): an unchanged non-empty Recv-Q for stall_samples = 5 snapshots;
#   new rx_queue_growth:           for stall_seconds = 30 s (and >= 2 snapshots).
# So the default is --count 5 --interval 8: 5 snapshots spanning 32 s satisfy both.
#
# Environment knobs (defaults in brackets):
#   SIZES ["20000:3 40000:6"]  scenarios, PAIRS:LOADERS each (<= 9000 pairs per loader: open
#                               files are capped at 20,000 per process)
#   UNREAD [64]                 bytes each client writes once and nobody reads
#   COUNT [5] INTERVAL [8]      the capture: snapshots and seconds between their starts
#   RUNS [3]                    timed runs per binary and format; figures are medians (RSS: max)
#   OLD_BIN [/work/wt-old/build-old/analyzer/sockrewind-analyze]  the previous release's analyzer
#   NO_BUILD [0]                1: do not (re)build; use the binaries already in build-flood
#   RUN_TIMEOUT [600]           seconds allowed to one timed command
#   TOTAL_TIMEOUT [3600]        seconds allowed to the whole script
#   RESULTS [tests/bench/last-flood-results.md]
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$SCRIPT_DIR/../.." && pwd)
BUILD="$REPO/build-flood"
COLLECT="$BUILD/collector/sockrewind-collect"
NEW_BIN="$BUILD/analyzer/sockrewind-analyze"
SOCKLOAD="$BUILD/tests/bench/sockload"

SIZES=${SIZES:-"20000:3 40000:6"}
UNREAD=${UNREAD:-64}
COUNT=${COUNT:-5}
INTERVAL=${INTERVAL:-8}
RUNS=${RUNS:-3}
OLD_BIN=${OLD_BIN:-/work/wt-old/build-old/analyzer/sockrewind-analyze}
NO_BUILD=${NO_BUILD:-0}
RUN_TIMEOUT=${RUN_TIMEOUT:-600}
TOTAL_TIMEOUT=${TOTAL_TIMEOUT:-3600}
RESULTS=${RESULTS:-$SCRIPT_DIR/last-flood-results.md}
BASE_PORT=7100
READY_TIMEOUT=180

BENCH_NAME=bench_flood.sh
# shellcheck source=tests/bench/lib.sh
source "$SCRIPT_DIR/lib.sh"

[[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces)"
((RUNS >= 1)) || die "RUNS must be >= 1"
((UNREAD >= 1 && UNREAD <= 4096)) || die "UNREAD must be 1..4096"
((COUNT >= 2)) || die "COUNT must be >= 2"
for size in $SIZES; do
  [[ $size =~ ^([0-9]+):([0-9]+)$ ]] || die "SIZES: '$size' is not PAIRS:LOADERS"
  p=${BASH_REMATCH[1]} l=${BASH_REMATCH[2]}
  ((p > 0 && l > 0)) || die "SIZES: '$size': PAIRS and LOADERS must be > 0"
  (((p + l - 1) / l <= 9000)) || die "SIZES: '$size': more than 9000 pairs per loader"
done
[[ -x $OLD_BIN ]] || die "OLD_BIN=$OLD_BIN is not an executable (build the previous release first)"
for tool in ip ss nsenter timeout sqlite3 cmake awk stat python3; do
  command -v "$tool" >/dev/null || die "missing tool: $tool"
done

# ---------------------------------------------------------------------------------------------
# State and cleanup. Everything the script starts is recorded here and ended by pid on any exit.
WORK=$(mktemp -d /tmp/srflood.XXXXXX)
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
# Build (Release), as bench_collect.sh does (WARNINGS_AS_ERRORS=OFF: g++ 12 gives false
# -Wrestrict positives at -O2/-O3 in std::string code, which must not stop a benchmark).
if [[ $NO_BUILD != 1 ]]; then
  log "building Release into $BUILD"
  if [[ ! -f $BUILD/CMakeCache.txt ]]; then
    cmake -S "$REPO" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DWARNINGS_AS_ERRORS=OFF \
      >"$WORK/configure.log" 2>&1 || {
      cat "$WORK/configure.log" >&2
      die "cmake configure failed"
    }
  fi
  timeout 2400 cmake --build "$BUILD" -j2 --target sockrewind-collect sockrewind-analyze sockload \
    >"$WORK/build.log" 2>&1 || {
    tail -40 "$WORK/build.log" >&2
    die "build failed"
  }
fi
for b in "$COLLECT" "$NEW_BIN" "$SOCKLOAD"; do
  [[ -x $b ]] || die "$b not built"
done
build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)
[[ $build_type == Release ]] || log "warning: $BUILD is CMAKE_BUILD_TYPE='$build_type', not Release"
old_cache="$(dirname "$(dirname "$OLD_BIN")")/CMakeCache.txt"
old_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$old_cache" 2>/dev/null || true)
[[ $old_type == Release ]] || log "warning: OLD_BIN's build is CMAKE_BUILD_TYPE='$old_type'"

if [[ ! -x /usr/bin/time ]]; then
  log "installing GNU time (/usr/bin/time) for peak RSS"
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq time >/dev/null \
    || die "cannot install the 'time' package"
fi

# ---------------------------------------------------------------------------------------------
# Namespaces, load and capture.

# new_netns NAME: a private netns with lo up; loopback-only by construction (no other links).
new_netns() {
  local ns=$1
  ip netns add "$ns" || die "ip netns add $ns"
  NETNS_LIST+=("$ns")
  ip -n "$ns" link set lo up
  ip netns exec "$ns" sysctl -qw net.core.somaxconn=65535 || true
  ip netns exec "$ns" sysctl -qw net.ipv4.ip_local_port_range="1024 65000" || true
  NS=$ns
}

# start_load PAIRS LOADERS: LOADERS sockload processes with --unread UNREAD in $NS; waits until
# each prints "ready" (it does so once every accepted socket holds UNREAD bytes).
start_load() {
  local total=$1 loaders=$2 i names=()
  local per=$((total / loaders)) extra=$((total % loaders))
  for ((i = 0; i < loaders; i++)); do
    spawn_sockload "load$i" --unread "$UNREAD" $((BASE_PORT + i)) $((per + (i < extra ? 1 : 0)))
    names+=("load$i")
  done
  wait_sockloads "${names[@]}"
}

# in_ns CMD...: runs CMD in $NS's network namespace only (see bench_collect.sh on ip netns exec).
in_ns() { nsenter --net="/run/netns/$NS" "$@"; }

# Host CPU seconds (all cores, user+nice+sys+irq+softirq+steal) since boot, for the busy figure.
host_busy_s() {
  awk -v hz="$(getconf CLK_TCK)" '$1 == "cpu" {print ($2 + $3 + $4 + $7 + $8 + $9) / hz; exit}' \
    /proc/stat
}

# measure LABEL OUTFILE CMD...: runs CMD once with stdout to OUTFILE; appends
# "wall_s user_s sys_s maxrss_kib" (GNU time, the same fields as `time -v`) to $WORK/LABEL.dat.
measure() {
  local label=$1 outfile=$2
  shift 2
  if ! timeout "$RUN_TIMEOUT" /usr/bin/time -o "$WORK/time.out" -f '%e %U %S %M' \
    "$@" >"$outfile" 2>"$WORK/cmd.err"; then
    tail -5 "$WORK/cmd.err" >&2
    die "$label: '$*' failed or timed out (RUN_TIMEOUT=${RUN_TIMEOUT}s)"
  fi
  tail -1 "$WORK/time.out" >>"$WORK/$label.dat"
}

median() {
  sort -g -k"$2,$2" "$1" | awk -v c="$2" '{v[NR] = $c} END {
    if (NR == 0) { print "nan"; exit }
    if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2] + v[NR/2+1]) / 2 }'
}
max_col() { awk -v c="$2" 'NR==1 || $c>m {m=$c} END {print m+0}' "$1"; }

# json_stats FILE: "findings rx_findings rx_sockets largest_finding_bytes" of a report JSON, where
# rx_sockets counts the sockets the rx_queue_growth findings stand for (a grouped finding's
# evidence.group.count, else 1) and largest_finding_bytes is the longest finding, compact.
json_stats() {
  python3 - "$1" <<'EOF'
import json, sys
with open(sys.argv[1], encoding="utf-8") as f:
    doc = json.load(f)
fs = doc.get("findings", [])
rx = [x for x in fs if x.get("detector") == "rx_queue_growth"]
def members(x):
    g = x.get("evidence", {}).get("group") if isinstance(x.get("evidence"), dict) else None
    return int(g.get("count", 1)) if isinstance(g, dict) else 1
largest = max((len(json.dumps(x, separators=(",", ":"))) for x in fs), default=0)
print(len(fs), len(rx), sum(members(x) for x in rx), largest)
EOF
}

fmt_ms() { awk -v s="$1" 'BEGIN {printf "%.0f", s * 1000}'; }
fmt_mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
# human BYTES: "51.3 MiB", "4.6 KiB", "812 B".
human() {
  awk -v b="$1" 'BEGIN {
    if (b >= 1048576) printf "%.1f MiB", b / 1048576
    else if (b >= 1024) printf "%.1f KiB", b / 1024
    else printf "%d B", b }'
}
# fmt_int N: thousands separated by commas, whatever the locale.
fmt_int() { sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|,\)/\1,\2\3/' -e 'ta' <<<"$1"; }
# quot A B: A / B with two decimals ("–" when B is 0).
quot() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "–"}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.0f×", a / b; else print "–"}'; }

commit=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=""
if [[ -n $(git -C "$REPO" --no-optional-locks status --porcelain 2>/dev/null | head -1) ]]; then
  dirty=" + local changes"
fi
old_commit=$(git -C "$(dirname "$OLD_BIN")" rev-parse --short HEAD 2>/dev/null || echo unknown)

OUT="$WORK/out.d"
mkdir -p "$OUT"
TABLES="$WORK/tables.md"
: >"$TABLES"
NOTES="$WORK/notes.md"
: >"$NOTES"

idx=0
for size in $SIZES; do
  pairs=${size%%:*}
  loaders=${size##*:}
  idx=$((idx + 1))
  tag="s$idx"

  new_netns "srflood-$$-$idx"
  log "[$pairs pairs] starting $loaders sockload processes (--unread $UNREAD) in $NS"
  start_load "$pairs" "$loaders"
  # Accepted sockets with exactly UNREAD bytes in Recv-Q (the clients' Recv-Q is 0).
  stuck=$(in_ns ss -Htan 2>/dev/null | awk -v n="$UNREAD" '$1 == "ESTAB" && $2 == n' | wc -l)
  log "[$pairs pairs] $stuck ESTAB sockets with Recv-Q $UNREAD"
  ((stuck >= pairs)) || die "expected >= $pairs sockets with Recv-Q $UNREAD, saw $stuck"

  log "[$pairs pairs] capturing: sockrewind-collect --count $COUNT --interval $INTERVAL"
  t0=$SECONDS
  in_ns "$COLLECT" --netns self --out "$OUT" --quiet --count "$COUNT" --interval "$INTERVAL" \
    >"$WORK/collect.out" 2>"$WORK/collect.err" || {
    cat "$WORK/collect.err" >&2
    die "sockrewind-collect failed"
  }
  capture_s=$((SECONDS - t0))
  file=$(tail -1 "$WORK/collect.out")
  [[ -f $file ]] || die "collector printed '$file', which is not a file"
  stop_loads
  delete_netns "$NS"
  file_bytes=$(stat -c %s "$file")
  read -r sockets snaps span < <(sqlite3 -separator ' ' "$file" \
    "select (select count(*) from sockets), (select count(*) from snapshots),
            (select (max(realtime_ns) - min(realtime_ns)) / 1e9 from snapshots);")
  log "[$pairs pairs] $file: $sockets socket rows, $snaps snapshots over ${span} s"

  b0=$(host_busy_s)
  w0=$(date +%s.%N)
  for ((r = 1; r <= RUNS; r++)); do
    for v in old new; do
      bin=$OLD_BIN
      [[ $v == new ]] && bin=$NEW_BIN
      measure "${tag}_${v}_json" "$WORK/${tag}_${v}.json" "$bin" report --format json "$file"
      measure "${tag}_${v}_text" "$WORK/${tag}_${v}.txt" "$bin" report "$file"
      log "[$pairs pairs] run $r/$RUNS $v: json $(tail -1 "$WORK/${tag}_${v}_json.dat" | cut -d' ' -f1) s," \
        "text $(tail -1 "$WORK/${tag}_${v}_text.dat" | cut -d' ' -f1) s"
    done
  done
  w1=$(date +%s.%N)
  b1=$(host_busy_s)
  own=$(cat "$WORK/${tag}"_*.dat | awk '{s += $2 + $3} END {print s + 0}')
  busy=$(awk -v a="$b0" -v b="$b1" -v o="$own" -v w0="$w0" -v w1="$w1" \
    'BEGIN {x = (b - a - o) / (w1 - w0); printf "%.2f", x < 0 ? 0 : x}')

  declare -A S=()
  for v in old new; do
    read -r S[${v}_n] S[${v}_rx] S[${v}_rxsock] S[${v}_big] < <(json_stats "$WORK/${tag}_${v}.json")
    S[${v}_jb]=$(stat -c %s "$WORK/${tag}_${v}.json")
    S[${v}_tb]=$(stat -c %s "$WORK/${tag}_${v}.txt")
    S[${v}_jw]=$(median "$WORK/${tag}_${v}_json.dat" 1)
    S[${v}_jr]=$(max_col "$WORK/${tag}_${v}_json.dat" 4)
    S[${v}_tw]=$(median "$WORK/${tag}_${v}_text.dat" 1)
    S[${v}_tr]=$(max_col "$WORK/${tag}_${v}_text.dat" 4)
  done
  rm -f "$file" "$WORK/${tag}_old.json" "$WORK/${tag}_new.json"

  {
    echo "### $(fmt_int "$pairs") pairs held by $loaders sockload processes, $UNREAD unread bytes in each accepted socket"
    echo
    echo "Capture: $snaps snapshots of $(fmt_int "$((sockets / snaps))") sockets over $(printf '%.1f' "$span") s" \
      "(\`--count $COUNT --interval $INTERVAL\`, ${capture_s} s wall), file $(human "$file_bytes")." \
      "Other processes' CPU during the analyze runs: ≈ $busy cores."
    echo
    echo "| figure | old ($old_commit) | new ($commit) | old / new |"
    echo "|---|---:|---:|---:|"
    echo "| findings (all detectors) | $(fmt_int "${S[old_n]}") | $(fmt_int "${S[new_n]}") |" \
      "$(ratio "${S[old_n]}" "${S[new_n]}") |"
    echo "| \`rx_queue_growth\` findings | $(fmt_int "${S[old_rx]}") | $(fmt_int "${S[new_rx]}") |" \
      "$(ratio "${S[old_rx]}" "${S[new_rx]}") |"
    echo "| sockets those findings cover | $(fmt_int "${S[old_rxsock]}") |" \
      "$(fmt_int "${S[new_rxsock]}") | – |"
    echo "| JSON report | $(human "${S[old_jb]}") | $(human "${S[new_jb]}") |" \
      "$(ratio "${S[old_jb]}" "${S[new_jb]}") |"
    echo "| largest finding in the JSON | $(human "${S[old_big]}") | $(human "${S[new_big]}") | – |"
    echo "| text report | $(human "${S[old_tb]}") | $(human "${S[new_tb]}") |" \
      "$(ratio "${S[old_tb]}" "${S[new_tb]}") |"
    echo "| \`report --format json\` wall ms (median of $RUNS) | $(fmt_ms "${S[old_jw]}") |" \
      "$(fmt_ms "${S[new_jw]}") | $(quot "${S[old_jw]}" "${S[new_jw]}") |"
    echo "| \`report --format json\` peak RSS MiB | $(fmt_mib "${S[old_jr]}") | $(fmt_mib "${S[new_jr]}") |" \
      "$(quot "${S[old_jr]}" "${S[new_jr]}") |"
    echo "| \`report\` (text) wall ms (median of $RUNS) | $(fmt_ms "${S[old_tw]}") |" \
      "$(fmt_ms "${S[new_tw]}") | $(quot "${S[old_tw]}" "${S[new_tw]}") |"
    echo "| \`report\` (text) peak RSS MiB | $(fmt_mib "${S[old_tr]}") | $(fmt_mib "${S[new_tr]}") |" \
      "$(quot "${S[old_tr]}" "${S[new_tr]}") |"
    echo
  } >>"$TABLES"
  for v in old new; do
    if ((S[${v}_rx] == 0)); then
      echo "- **The $v rx_queue_growth rule did not fire** at $pairs pairs" \
        "(--count $COUNT --interval $INTERVAL); the comparison is not the one intended." >>"$NOTES"
      log "warning: the $v rule did not fire"
    fi
  done
  unset S
done

cpu_model=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -1)

{
  echo "## Finding flood benchmark (issue 12 item 2)"
  echo
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'); kernel $(uname -r); ${cpu_model:-unknown CPU} ×$(nproc);" \
    "new = commit $commit$dirty (build $build_type), old = \`$OLD_BIN\` at $old_commit" \
    "(build ${old_type:-unknown}); \`tests/bench/bench_flood.sh\`."
  echo "Every accepted socket holds $UNREAD bytes its process never reads; both analyzers run" \
    "\`sockrewind-analyze report [--format json] FILE\` with default thresholds on the same file" \
    "(old rule: unchanged non-empty Recv-Q for 5 snapshots; new: for 30 s), interleaved old/new," \
    "$RUNS run(s) each. Wall, RSS: GNU time (\`/usr/bin/time\`), RSS = max of the runs."
  echo
  cat "$TABLES"
  if [[ -s $NOTES ]]; then
    cat "$NOTES"
    echo
  fi
} >"$WORK/table.md"

echo
cat "$WORK/table.md"
cp "$WORK/table.md" "$RESULTS"
log "written to $RESULTS"
