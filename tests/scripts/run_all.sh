#!/usr/bin/env bash
# Every test: format check, a -Werror build with all tests, clang-tidy, and the whole suite
# again under ASan+UBSan. Live tests need root (they skip without it). Run from anywhere.
set -euo pipefail
cd "$(dirname "$0")/../.."
tests/scripts/install-deps.sh
jobs=$(nproc)

echo "== clang-format"
git ls-files '*.cpp' '*.hpp' | xargs clang-format-14 --dry-run --Werror

echo "== build (RelWithDebInfo, -Werror) and tests"
cmake -S . -B build-ci -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWARNINGS_AS_ERRORS=ON >/dev/null
cmake --build build-ci -j"$jobs"
(cd build-ci && ctest --output-on-failure -j1)

echo "== clang-tidy"
if ! git ls-files 'schema/*.cpp' 'collector/*.cpp' 'analyzer/*.cpp' \
    | xargs -P"$jobs" -n4 clang-tidy-14 -p build-ci --quiet --extra-arg=-Wno-unknown-warning-option >build-ci/tidy.log 2>&1; then
  grep -v "warnings generated" build-ci/tidy.log
  exit 1
fi

echo "== ASan+UBSan build and tests"
cmake -S . -B build-san -DCMAKE_BUILD_TYPE=Debug -DENABLE_ASAN=ON -DENABLE_UBSAN=ON \
  -DWARNINGS_AS_ERRORS=ON >/dev/null
cmake --build build-san -j"$jobs"
(cd build-san && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure -j1)

echo "== fuzz (short)"
tests/scripts/fuzz.sh --short

# Last, as it finds the least: README "Install and scheduling" exactly as a user runs it (a
# Release build of the programs without the test suite, warnings not errors), in its own
# directory, installed into a staging directory instead of with sudo. The commands must be the
# README's: a changed README fails here until this copy follows it.
echo "== the README's install build (Release, without the test suite)"
readme_configure='cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF -DCMAKE_INSTALL_PREFIX=/usr/local'
readme_build='cmake --build build -j && sudo cmake --install build'
for line in "$readme_configure" "$readme_build"; do
  grep -qxF "$line" README.md || { echo "run_all.sh: README no longer has: $line" >&2; exit 1; }
done
rm -rf build-readme
cmake -S . -B build-readme -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
  -DCMAKE_INSTALL_PREFIX=/usr/local >/dev/null
if ! cmake --build build-readme -j >build-readme/build.log 2>&1; then
  grep -v '^\[' build-readme/build.log | tail -80
  exit 1
fi
DESTDIR="$PWD/build-readme/staging" cmake --install build-readme >/dev/null
echo "README build: $(grep -c 'warning:' build-readme/build.log || true) compiler warning(s)"
