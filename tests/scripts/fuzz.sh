#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang++-14 (ASan+UBSan) in build-fuzz, makes
# their seed corpora, replays the saved regressions and runs each target, one at a time.
#
#   tests/scripts/fuzz.sh --short              # CI: each target for FUZZ_SHORT_TIME s (20)
#   tests/scripts/fuzz.sh --runs 10000000      # each target for that many executions
#   tests/scripts/fuzz.sh --time 600           # each target for that many seconds
#   tests/scripts/fuzz.sh --runs N --time S    # whichever comes first
#   tests/scripts/fuzz.sh --targets "fuzz_load fuzz_counters" --time 60
#   tests/scripts/fuzz.sh --targets fuzz_load --runs 10000000 --jobs 2   # on 2 cores
#   tests/scripts/fuzz.sh --build-only         # only build them (run_all.sh, in the background)
#
# --jobs J runs J libFuzzer processes per target on one shared corpus (-jobs=J -workers=J),
# each doing its share of --runs (their logs: build-fuzz/artifacts/TARGET/fuzz-N.log).
# Environment: FUZZ_RUNS, FUZZ_TIME, FUZZ_TARGETS, FUZZ_JOBS, FUZZ_SHORT_TIME, FUZZ_NICE (19),
# FUZZ_MAX_LEN (libFuzzer -max_len; default 1-2 KiB for text, 16 KiB for netlink, the largest
# sample for fuzz_load), FUZZ_RESULTS (the markdown table; default build-fuzz/fuzz-results.md).
# Seeds come from ../shared/fixtures/proc-net (skipped with a message when absent) and
# samples/*.sqlite. New inputs found are kept in build-fuzz/corpus/TARGET between runs; crash
# inputs go to build-fuzz/artifacts/TARGET. Exit 1 when any target crashed.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
build=$root/build-fuzz
shared=$root/../shared/fixtures/proc-net
all_targets="fuzz_proc_net_inet fuzz_proc_net_unix fuzz_counters fuzz_proc_stat fuzz_sock_diag fuzz_load"

runs=${FUZZ_RUNS:-}
max_time=${FUZZ_TIME:-}
targets=${FUZZ_TARGETS:-$all_targets}
jobs=${FUZZ_JOBS:-1}
nice_level=${FUZZ_NICE:-19}
results=${FUZZ_RESULTS:-$build/fuzz-results.md}
build_only=0
while (($#)); do
  case $1 in
  --short) max_time=${FUZZ_SHORT_TIME:-20} ;;
  --build-only) build_only=1 ;;
  --runs) runs=$2; shift ;;
  --time) max_time=$2; shift ;;
  --targets) targets=$2; shift ;;
  --jobs) jobs=$2; shift ;;
  -h | --help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "fuzz.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [[ -z $runs && -z $max_time ]]; then
  max_time=${FUZZ_SHORT_TIME:-20}
fi

# clang 14 and its runtime (libFuzzer, sanitizers) come with the project's packages.
"$root/tests/scripts/install-deps.sh"

echo "== fuzz: build ($build, clang++-14, -fsanitize=fuzzer,address,undefined)"
nice -n "$nice_level" cmake -S . -B "$build" -DCMAKE_CXX_COMPILER=clang++-14 \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSOCKREWIND_FUZZ=ON -DBUILD_TESTING=OFF \
  -DWARNINGS_AS_ERRORS=ON >/dev/null
nice -n "$nice_level" cmake --build "$build" --target fuzz_all -j"$(nproc)" >/dev/null
if ((build_only)); then
  exit 0
fi

# --- seed corpora -------------------------------------------------------------------------
seeds=$build/seeds
rm -rf "$seeds"
for t in $all_targets; do
  mkdir -p "$seeds/$t" "$build/corpus/$t" "$build/artifacts/$t"
done

# seed TARGET SELECTOR_BYTE|- FILE: a seed named after FILE, with the selector byte first.
seed() {
  local name
  name=$(basename "$(dirname "$3")")_$(basename "$3")
  if [[ $2 == - ]]; then
    cp "$3" "$seeds/$1/$name"
  else
    { printf "\\x$(printf %02x "$2")"; cat "$3"; } >"$seeds/$1/$name.sel$2"
  fi
}

if [[ -d $shared ]]; then
  for f in "$shared"/*/*; do
    b=$(basename "$f")
    b=${b#net_}
    b=${b#pid26231_net_}
    case $b in
    tcp | tcp6 | udp | udp6 | udp_broken | udplite | udplite6 | raw | raw6)
      fam=0; [[ $b == *6 ]] && fam=1
      case $b in tcp*) proto=0 ;; udplite*) proto=2 ;; udp*) proto=1 ;; raw*) proto=3 ;; esac
      for order in 0 2; do # little- and big-endian producer
        seed fuzz_proc_net_inet $((fam | order | proto << 2)) "$f"
      done
      ;;
    unix | unix_without_inode) seed fuzz_proc_net_unix - "$f" ;;
    netstat) seed fuzz_counters 0 "$f" ;;
    snmp) seed fuzz_counters 1 "$f" ;;
    snmp6) seed fuzz_counters 2 "$f" ;;
    sockstat | sockstat_rhe4) seed fuzz_counters 3 "$f" ;;
    sockstat6) seed fuzz_counters 4 "$f" ;;
    pid_stat*) seed fuzz_proc_stat - "$f" ;;
    sockdiag_*tcp*.bin) seed fuzz_sock_diag 0 "$f" ;;
    sockdiag_*udp*.bin) seed fuzz_sock_diag 1 "$f" ;;
    sockdiag_*raw*.bin) seed fuzz_sock_diag 3 "$f" ;;
    sockdiag_unix*.bin) seed fuzz_sock_diag 5 "$f" ;;
    esac
  done
else
  echo "fuzz: $shared not found: no /proc/net seeds (the targets start from their saved corpus)"
fi
# /proc/[pid]/stat and parse_u64 have few fixtures; add the collector's own view.
cat /proc/self/stat >"$seeds/fuzz_proc_stat/self_stat"
printf '4096\n' >"$seeds/fuzz_proc_stat/u64"

# fuzz_load: each sample with only the counters and limits the analyzer reads, a fifth of the
# sockets of a sample with over 1,000 socket rows (chosen by ports and inodes, so a socket is
# kept in every snapshot or in none), and 512-byte pages (every snapshot kept, so the detectors
# still fire): 37-93 KiB instead of 190-460 KiB, and small inputs run faster. Every seed, and so
# -max_len, stays under 128 KiB: libFuzzer copies each input into a new buffer, and ASan serves
# a buffer over 128 KiB from its mmap-backed large allocator (mmap, page faults, madvise and a
# TLB shootdown per execution); with a third of the sockets (138 KiB) both processes together
# ran 840-1,100 exec/s instead of about 1,450.
# The sample as it is when sqlite3 is missing. The input's last byte chooses the command
# (fuzz_load.cpp): one seed per command.
names=$(grep -ho '"\(Tcp\|TcpExt\|Udp\|TCP\)\.[A-Za-z]*"' analyzer/src/*.cpp analyzer/src/detectors/*.[ch]pp \
  | sort -u | tr '"' "'" | paste -sd,)
sysctls=$(grep -ho '"\(net\|fs\)\.[a-z0-9_.-]*"' analyzer/src/*.cpp analyzer/src/detectors/*.[ch]pp \
  | sort -u | tr '"' "'" | paste -sd,)
for f in samples/*.sqlite; do
  [[ -e $f ]] || continue
  b=$seeds/fuzz_load/$(basename "$f")
  cp "$f" "$b"
  if command -v sqlite3 >/dev/null; then
    sqlite3 "$b" "DELETE FROM counters WHERE name NOT IN ($names);
      DELETE FROM limits WHERE name NOT IN ($sysctls);
      DELETE FROM sockets WHERE (SELECT count(*) FROM sockets) > 1000 AND (coalesce(local_port, 0)
        + coalesce(remote_port, 0) + coalesce(inode, 0) + coalesce(peer_inode, 0)) % 5 <> 0;
      DELETE FROM extra_owners WHERE sock_id NOT IN (SELECT sock_id FROM sockets);
      DELETE FROM tcp_info WHERE sock_id NOT IN (SELECT sock_id FROM sockets);
      PRAGMA page_size = 512; VACUUM;"
  fi
  # The same sample as schema 3 (runs read through views), migrated by the schema's own SQL.
  if command -v sqlite3 >/dev/null; then
    cp "$b" "$b.v3"
    {
      echo "BEGIN;"
      cat schema/sql/0002_process_state.sql schema/sql/0003_compact.sql
      echo "PRAGMA user_version = 3; COMMIT; VACUUM;"
    } | sqlite3 "$b.v3"
  fi
  for cmd in 0 1 2 3 4; do
    { cat "$b"; printf "\\x$(printf %02x "$cmd")"; } >"$b.cmd$cmd"
    if [[ -e $b.v3 ]]; then
      { cat "$b.v3"; printf "\\x$(printf %02x "$cmd")"; } >"$b.v3.cmd$cmd"
    fi
  done
  rm -f "$b" "$b.v3"
done
# libFuzzer's -max_len: the largest seed, so that no sample is cut short.
load_max_len=$(find "$seeds/fuzz_load" -type f -printf '%s\n' | sort -n | tail -1)
load_max_len=${load_max_len:-65536}
if ((load_max_len > 126976)); then # 128 KiB less ASan's header and largest redzone
  echo "fuzz: warning: the largest fuzz_load seed has $load_max_len bytes; over 124 KiB every" \
    "execution goes through ASan's mmap-backed allocator and runs about a third slower" >&2
fi

# --- replay saved regressions ---------------------------------------------------------------
failed=0
for t in $targets; do
  dir=tests/fuzz/regressions/$t
  if compgen -G "$dir/*" >/dev/null; then
    echo "== fuzz: $t: replaying $(find "$dir" -type f | wc -l) saved regression inputs"
    if ! "$build/tests/fuzz/$t" -runs=1 "$dir"/* >"$build/artifacts/$t/regressions.log" 2>&1; then
      echo "fuzz: $t FAILED on a saved regression input:" >&2
      tail -n 30 "$build/artifacts/$t/regressions.log" >&2
      failed=1
    fi
  fi
done

# --- run ----------------------------------------------------------------------------------
limits=""
[[ -n $runs ]] && limits+=" -runs=$runs"
[[ -n $max_time ]] && limits+=" -max_total_time=$max_time"
if ((jobs > 1)); then
  # Each process stops at its share of the executions (libFuzzer's -runs is per process).
  [[ -n $runs ]] && limits=${limits/ -runs=$runs/ -runs=$(((runs + jobs - 1) / jobs))}
  limits+=" -jobs=$jobs -workers=$jobs"
fi
echo "== fuzz: running each target (${limits# }), one at a time, nice $nice_level"
rows=()
for t in $targets; do
  bin=$build/tests/fuzz/$t
  art=$build/artifacts/$t
  log=$art/last.log
  rm -f "$art"/crash-* "$art"/leak-* "$art"/timeout-* "$art"/oom-*
  # Inputs no longer than needed: a few /proc rows (~150 bytes each) exercise every path of the
  # text parsers, and short inputs run several times faster. FUZZ_MAX_LEN overrides.
  case $t in
  fuzz_load) max_len=$load_max_len ;;
  fuzz_sock_diag) max_len=16384 ;;
  fuzz_proc_net_inet) max_len=1024 ;; # parses each input twice (both byte orders)
  *) max_len=2048 ;;
  esac
  extra=(-max_len="${FUZZ_MAX_LEN:-$max_len}")
  start=$(date +%s.%N)
  # shellcheck disable=SC2086 # $limits is a list of options
  set +e
  rm -f "$art"/fuzz-*.log
  # (-jobs writes each process's log as fuzz-N.log in the current directory: $art.)
  (cd "$art" && nice -n "$nice_level" "$bin" $limits -timeout=60 -rss_limit_mb=2560 \
    -print_final_stats=1 -artifact_prefix="$art/" "${extra[@]}" "$build/corpus/$t" "$seeds/$t" \
    >"$log" 2>&1)
  rc=$?
  set -e
  end=$(date +%s.%N)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
  if ((jobs > 1)); then
    # One final-stats block per process: the executions add up, so does the rate.
    # (No fuzz-N.log at all when the binary died before starting its jobs: 0 executions.)
    execs=$(cat "$art"/fuzz-*.log 2>/dev/null | sed -n 's/^stat::number_of_executed_units: *//p' \
      | awk '{ n += $1 } END { print n + 0 }')
    rate=$(awk -v n="$execs" -v s="$secs" 'BEGIN { if (s > 0) printf "%.0f", n / s }')
    cat "$art"/fuzz-*.log >>"$log" 2>/dev/null || true
  else
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  fi
  crashes=$(find "$art" -maxdepth 1 -name 'crash-*' -o -maxdepth 1 -name 'leak-*' \
    -o -maxdepth 1 -name 'timeout-*' -o -maxdepth 1 -name 'oom-*' | wc -l)
  if ((rc != 0 && crashes == 0)); then
    crashes=1 # died without an artifact (e.g. out of memory in the driver)
  fi
  corpus=$(find "$build/corpus/$t" -type f | wc -l)
  rows+=("$t|${execs:-?}|${rate:-?}|$secs|$crashes|$corpus")
  if ((crashes > 0)); then
    failed=1
    echo "fuzz: $t: CRASH (exit $rc); inputs in $art/, log $log:" >&2
    grep -A 25 -m1 -E "ERROR: (AddressSanitizer|libFuzzer|LeakSanitizer)|runtime error|invariant failed" "$log" >&2 || tail -n 30 "$log" >&2
  fi
done

# --- table --------------------------------------------------------------------------------
{
  echo "| target | executions | exec/s | seconds | crashes | corpus |"
  echo "|---|---:|---:|---:|---:|---:|"
  for r in "${rows[@]}"; do
    IFS='|' read -r t e x s c n <<<"$r"
    printf '| %s | %s | %s | %s | %s | %s |\n' "$t" \
      "$(printf "%'d" "$e" 2>/dev/null || echo "$e")" "$x" "$s" "$c" "$n"
  done
} >"$results"
echo
printf '%-20s %14s %8s %8s %8s\n' target executions exec/s seconds crashes
for r in "${rows[@]}"; do
  IFS='|' read -r t e x s c _ <<<"$r"
  printf '%-20s %14s %8s %8s %8s\n' "$t" "$e" "$x" "$s" "$c"
done
echo "(markdown table in $results)"
exit "$failed"
