#!/usr/bin/env bash
# The long versions of the collector's hardening tests (tests/hardening), as root: 50 SIGKILLs
# at random points and 100 snapshots under churn, plus the rest of the suite once. Prints the
# figures README "### Hardening" quotes. Usage: tests/scripts/hardening_long.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=${1:-build-ci}
if [[ ! -x "$build/tests/test_hardening" ]]; then
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DWARNINGS_AS_ERRORS=ON >/dev/null
  cmake --build "$build" -j2 --target test_hardening sockrewind-collect >/dev/null
fi
export SOCKREWIND_HARDENING_KILLS=${SOCKREWIND_HARDENING_KILLS:-50}
export SOCKREWIND_HARDENING_CHURN_SNAPSHOTS=${SOCKREWIND_HARDENING_CHURN_SNAPSHOTS:-100}
export SOCKREWIND_HARDENING_CHURN_RUNS=${SOCKREWIND_HARDENING_CHURN_RUNS:-10}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s)
status=0
"$build/tests/test_hardening" --durations yes >"$log" 2>&1 || status=$?
grep -E '^figure:|^[0-9.]+ s: |^(All tests passed|test cases:)' "$log" || true
echo "hardening_long: $(($(date +%s) - start)) s, exit $status"
if [[ $status -ne 0 ]]; then
  cat "$log"
fi
exit "$status"
