# lib.sh: what the benchmark scripts share, sourced by them (not run). Before sourcing, a script
# sets BENCH_NAME (its name, for messages), WORK (its scratch directory) and TOTAL_TIMEOUT.
#   log MSG...                 a timestamped line on stderr
#   die MSG...                 "BENCH_NAME: error: MSG" on stderr, exit 1
#   install_traps              on EXIT: cleanup_extra (when the script defines one), the watchdog
#                              ended, $WORK removed, the exit code kept; INT/TERM exit 130/124
#   start_watchdog             SIGTERM to the script after TOTAL_TIMEOUT s (then the EXIT trap
#                              cleans up)
#   spawn_sockload NAME ARGS...  starts $SOCKLOAD ARGS in network namespace $NS (output in
#                              $WORK/NAME.out and .err), its pid added to LOAD_PIDS
#   wait_sockloads NAME...     waits until each of them printed "ready" (READY_TIMEOUT s, default
#                              180, for all); dies when one exits first
#   start_sockload NAME ARGS...  spawn_sockload, then wait_sockloads for it
#   stop_loads                 TERM, then KILL, to every pid in the LOAD_PIDS array
#   build_release SRC DIR TARGET...   configures DIR as a Release build of SRC (once) and builds
#                              each target; WARNINGS_AS_ERRORS=OFF: g++ 12 gives false -Wrestrict
#                              positives at -O2/-O3, which must not stop a benchmark
#   timed LABEL CMD...         one run of CMD under GNU time and RUN_TIMEOUT (stdout to
#                              $WORK/out, stderr to $WORK/err); appends "wall_s maxrss_kib user_s
#                              sys_s cpu_s" to $WORK/LABEL.dat
#   median FILE COLUMN         the median of a column of such a file ("nan" when empty)
#   mib KIB                    KiB as MiB with one decimal
#   max_col/min_col FILE COL   a column's maximum/minimum; div A B [FORMAT] A/B (0 when B is 0);
#   ok VALUE GOAL              "yes" when VALUE <= GOAL; thousands N; bytes_of FILE... (sum)

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

die() {
  printf '%s: error: %s\n' "${BENCH_NAME:-bench}" "$*" >&2
  exit 1
}

WATCHDOG_PID=""

start_watchdog() {
  (
    trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
    sleep "$TOTAL_TIMEOUT" &
    sleeper=$!
    wait "$sleeper" && kill -TERM $$ 2>/dev/null
  ) &
  WATCHDOG_PID=$!
}

stop_watchdog() {
  if [[ -n $WATCHDOG_PID ]]; then
    kill "$WATCHDOG_PID" 2>/dev/null
    wait "$WATCHDOG_PID" 2>/dev/null
  fi
  WATCHDOG_PID=""
}

bench_cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if declare -F cleanup_extra >/dev/null; then
    cleanup_extra
  fi
  stop_watchdog
  rm -rf "$WORK"
  exit "$rc"
}

install_traps() {
  trap bench_cleanup EXIT
  trap 'log "interrupted"; exit 130' INT
  trap 'log "terminated (TOTAL_TIMEOUT=${TOTAL_TIMEOUT}s?)"; exit 124' TERM
}

declare -a LOAD_PIDS=()
declare -A SOCKLOAD_PID=()
spawn_sockload() {
  local name=$1
  shift
  ip netns exec "$NS" "$SOCKLOAD" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  LOAD_PIDS+=($!)
  SOCKLOAD_PID[$name]=$!
}

wait_sockloads() {
  local name deadline=$((SECONDS + ${READY_TIMEOUT:-180}))
  for name; do
    until grep -qx ready "$WORK/$name.out" 2>/dev/null; do
      if ! kill -0 "${SOCKLOAD_PID[$name]}" 2>/dev/null; then
        cat "$WORK/$name.err" >&2
        die "sockload $name exited before ready"
      fi
      ((SECONDS < deadline)) || die "sockload $name not ready after ${READY_TIMEOUT:-180}s"
      sleep 0.1
    done
  done
}

start_sockload() {
  spawn_sockload "$@"
  wait_sockloads "$1"
}

stop_loads() {
  local pid
  for pid in "${LOAD_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 50); do
    local alive=0
    for pid in "${LOAD_PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null && alive=1
    done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${LOAD_PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  LOAD_PIDS=()
  SOCKLOAD_PID=()
}

# capture_live_mix DIR: a live mixed capture (root). In a new private namespace (its name in
# NS, which the caller's cleanup deletes): IDLE_CONNS idle pooled connections over enough
# sockload processes to stay under one process's open-file cap, ACTIVE_CONNS connections that
# send ACTIVE_BYTES a second and CHURN_RATE short connections a second (TIME-WAIT), all on
# 127.0.0.1 from BASE_PORT; after WARMUP s, COUNT snapshots CINTERVAL s apart by COLLECT into
# DIR. The loads and the namespace are gone when it returns; CAP is the file written. (Not to
# be run in a subshell: the caller's cleanup needs NS and the loads' pids.)
capture_live_mix() {
  local dir=$1 loaders per i
  NS="srbench-$BENCH_NAME-$$"
  NS=${NS//./-}
  ip netns add "$NS" || die "ip netns add $NS"
  ip -n "$NS" link set lo up
  ip netns exec "$NS" sysctl -qw net.core.somaxconn=65535 || true
  ip netns exec "$NS" sysctl -qw net.ipv4.ip_local_port_range="10000 65000" || true
  loaders=$(((IDLE_CONNS + 8999) / 9000))
  ((loaders >= 3)) || loaders=3
  per=$((IDLE_CONNS / loaders))
  local -a names=()
  for ((i = 0; i < loaders; i++)); do
    spawn_sockload "idle$i" $((BASE_PORT + i)) $((i == loaders - 1 ? IDLE_CONNS - i * per : per))
    names+=("idle$i")
  done
  wait_sockloads "${names[@]}"
  start_sockload active --send "$ACTIVE_BYTES" $((BASE_PORT + 100)) "$ACTIVE_CONNS"
  start_sockload churn --churn "$CHURN_RATE" $((BASE_PORT + 200)) 1
  log "live capture: warm-up ${WARMUP} s (TIME-WAIT fills up)"
  sleep "$WARMUP"
  log "live capture: $COUNT snapshots, ${CINTERVAL} s apart"
  mkdir -p "$dir"
  nsenter --net="/run/netns/$NS" "$COLLECT" --netns self --out "$dir" --count "$COUNT" \
    --interval "$CINTERVAL" --quiet >"$WORK/cap.out" 2>"$WORK/cap.err" \
    || { cat "$WORK/cap.err" >&2; die "collect failed"; }
  stop_loads
  ip netns del "$NS"
  NS=""
  CAP=$(tail -1 "$WORK/cap.out")
  [[ -f $CAP ]] || die "the collector printed '$CAP', which is not a file"
}

# What a script that calls capture_live_mix does on exit (its cleanup_extra): the loads stop and
# the namespace, if still there, goes.
cleanup_live_mix() {
  stop_loads
  [[ -z ${NS:-} ]] || ip netns del "$NS" 2>/dev/null
  return 0
}

build_release() {
  local src=$1 dir=$2 target
  shift 2
  log "building Release into $dir"
  if [[ ! -f $dir/CMakeCache.txt ]]; then
    cmake -S "$src" -B "$dir" -DCMAKE_BUILD_TYPE=Release -DWARNINGS_AS_ERRORS=OFF \
      >"$WORK/configure.log" 2>&1 || {
      cat "$WORK/configure.log" >&2
      die "cmake configure of $src failed"
    }
  fi
  # One target per call: the first one re-runs CMake when a CMakeLists.txt changed, and only
  # a later make invocation knows a target added by that change.
  for target in "$@"; do
    timeout 1800 cmake --build "$dir" -j2 --target "$target" >>"$WORK/build.log" 2>&1 || {
      tail -40 "$WORK/build.log" >&2
      die "build of $target in $dir failed"
    }
  done
}

timed() {
  local label=$1
  shift
  if ! timeout -k 5 "$RUN_TIMEOUT" /usr/bin/time -f '%e %M %U %S' -o "$WORK/time" "$@" \
    >"$WORK/out" 2>"$WORK/err"; then
    tail -5 "$WORK/err" >&2
    die "$label failed or timed out (${RUN_TIMEOUT}s): $*"
  fi
  tail -1 "$WORK/time" | awk '{printf "%s %s %s %s %.2f\n", $1, $2, $3, $4, $3 + $4}' \
    >>"$WORK/$label.dat"
}

median() {
  awk -v c="$2" '{print $c}' "$1" | sort -g | awk '{v[NR]=$1} END {
    if (NR == 0) { print "nan"; exit }
    if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2] + v[NR/2+1]) / 2 }'
}

mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

max_col() { awk -v c="$2" 'NR==1 || $c>m {m=$c} END {print m+0}' "$1"; }
min_col() { awk -v c="$2" 'NR==1 || $c<m {m=$c} END {print m+0}' "$1"; }
div() { awk -v a="$1" -v b="$2" -v f="${3:-%.2f}" 'BEGIN {printf f, (b > 0 ? a / b : 0)}'; }
ok() { awk -v v="$1" -v g="$2" 'BEGIN {print (v <= g) ? "yes" : "**no**"}'; }
thousands() { printf "%'d" "$1" 2>/dev/null || printf '%d' "$1"; }
bytes_of() { stat -c %s "$@" | awk '{s += $1} END {print s + 0}'; }
