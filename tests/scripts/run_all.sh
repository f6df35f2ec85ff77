#!/usr/bin/env bash
# Every test: format check, a -Werror build with all tests, clang-tidy, and the whole suite
# again under ASan+UBSan. Live tests need root (they skip without it). Run from anywhere.
#
# On 2 cores most of the time is builds, and the live tests mostly wait on sockets and timers.
# So a build that the next step does not need runs in the background at nice 19 on what the
# tests leave idle: the ASan+UBSan build beside the first suite and clang-tidy, the fuzz and
# README builds beside the ASan+UBSan suite. `ctest -j2` runs the live tests one at a time
# (they share a lock), and the unit tests beside them (tests/CMakeLists.txt). Each step prints
# the seconds since the start.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/scripts/install-deps.sh
jobs=$(nproc)
t0=$SECONDS
step() { echo "== $* (at $((SECONDS - t0)) s)"; }

# A background build, in a process group of its own: its output goes to a log, shown when it
# fails. Killed with its compilers if this script ends first.
bg_pids=()
trap 'for p in "${bg_pids[@]}"; do kill -- "-$p" 2>/dev/null || true; done' EXIT
background() { # LOG COMMAND...
  local log=$1
  shift
  setsid nice -n 19 "$@" >"$log" 2>&1 &
  bg_pids+=("$!")
}
wait_background() { # WHAT LOG: waits for the newest background job
  local pid=${bg_pids[-1]}
  if ! wait "$pid"; then
    echo "run_all.sh: $1 failed:" >&2
    grep -v '^\[' "$2" | tail -80 >&2
    exit 1
  fi
  unset 'bg_pids[-1]'
}

step "clang-format"
git ls-files '*.cpp' '*.hpp' | xargs clang-format-14 --dry-run --Werror

step "build (RelWithDebInfo, -Werror)"
cmake -S . -B build-ci -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWARNINGS_AS_ERRORS=ON >/dev/null
cmake --build build-ci -j"$jobs"

step "ASan+UBSan build starts in the background (build-san/build.log)"
cmake -S . -B build-san -DCMAKE_BUILD_TYPE=Debug -DENABLE_ASAN=ON -DENABLE_UBSAN=ON \
  -DWARNINGS_AS_ERRORS=ON >/dev/null
background build-san/build.log cmake --build build-san -j"$jobs"

step "tests (RelWithDebInfo)"
(cd build-ci && ctest --output-on-failure -j2)

step "clang-tidy"
if ! git ls-files 'schema/*.cpp' 'collector/*.cpp' 'analyzer/*.cpp' \
    | xargs -P"$jobs" -n4 clang-tidy-14 -p build-ci --quiet --extra-arg=-Wno-unknown-warning-option >build-ci/tidy.log 2>&1; then
  grep -v "warnings generated" build-ci/tidy.log
  exit 1
fi

step "waiting for the ASan+UBSan build"
wait_background "the ASan+UBSan build" build-san/build.log

# Last, as it finds the least: README "Install and scheduling" exactly as a user runs it (a
# Release build of the programs without the test suite, warnings not errors), in its own
# directory, installed into a staging directory instead of with sudo. The commands must be the
# README's: a changed README fails here until this copy follows it. It builds in the
# background, after the fuzz targets, with as many jobs as cores.
readme_configure='cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DCMAKE_INSTALL_PREFIX=/usr/local'
readme_build='cmake --build build -j && sudo cmake --install build'
for line in "$readme_configure" "$readme_build"; do
  grep -qxF "$line" README.md || { echo "run_all.sh: README no longer has: $line" >&2; exit 1; }
done
rm -rf build-readme
mkdir -p build-readme
step "fuzz and README builds start in the background (build-readme/bg.log)"
background build-readme/bg.log bash -c 'set -e
  tests/scripts/fuzz.sh --build-only
  cmake -S . -B build-readme -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    -DCMAKE_INSTALL_PREFIX=/usr/local >/dev/null
  cmake --build build-readme -j"$1" >build-readme/build.log 2>&1 || { cat build-readme/build.log; exit 1; }' \
  bash "$jobs"

# The fold's SIGKILL test kills 50 folds in the first suite (issue 13's count); here 10 are
# enough to run the same paths under the sanitizers (50 took 330 s, a sixth of the suite).
step "tests (ASan+UBSan)"
(cd build-san && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  SOCKREWIND_HARDENING_FOLD_KILLS=10 ctest --output-on-failure -j2)

step "waiting for the fuzz and README builds"
wait_background "the fuzz or README build" build-readme/bg.log

step "fuzz (short)"
tests/scripts/fuzz.sh --short

step "the README's install build (Release, without the test suite)"
DESTDIR="$PWD/build-readme/staging" cmake --install build-readme >/dev/null
echo "README build: $(grep -c 'warning:' build-readme/build.log || true) compiler warning(s)"
step "done"
