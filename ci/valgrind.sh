#!/usr/bin/env bash
# ci/valgrind.sh - the integration tests with keel-broker under Valgrind.
#
# Builds in build-vg (RelWithDebInfo, no sanitizers) and runs the tests
# labelled integration with KEEL_BROKER_WRAPPER set, so every broker they
# start runs under memcheck (--leak-check=full, definite leaks are
# errors, --error-exitcode=99).  Test deadlines are scaled
# (KEEL_IT_TIMEOUT_SCALE).  Suppressions: leakcheck/valgrind.supp.  Each
# broker run also writes Valgrind XML, summarised at the end by
# `keel-leaks valgrind` (findings deduplicated by stack).  Fails when a
# test fails or when any Valgrind log reports an error, even one a test
# did not notice.  Extra arguments go to ctest (e.g. -R it_pystomp).
# Then the scenario suite (scenarios/) under `keel-harness run --valgrind`
# (memcheck, timeouts x10): every Valgrind error or definite leak of a
# node fails its scenario (findings `valgrind` in the recording,
# $BUILD/valgrind/scenarios.db).
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/setup.sh
BUILD=${KEEL_BUILD_DIR:-build-vg}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKEEL_SANITIZE=OFF
# Everything: every integration test must have its binary (a target left
# out would show as "Not Run" and fail the script).
cmake --build "$BUILD" -j"$(nproc)"

LOGS=$(realpath "$BUILD")/valgrind
rm -rf "$LOGS"
mkdir -p "$LOGS"
SUPP=$(realpath leakcheck/valgrind.supp)
export KEEL_BROKER_WRAPPER="valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --track-fds=no --suppressions=$SUPP --log-file=$LOGS/broker.%p.log --xml=yes --xml-file=$LOGS/broker.%p.xml"
export KEEL_IT_TIMEOUT_SCALE=${KEEL_IT_TIMEOUT_SCALE:-10}

rc=0
ctest --test-dir "$BUILD" --output-on-failure -j1 -L integration \
      --output-junit junit-valgrind.xml "$@" || rc=$?

# With --xml the text logs stay (nearly) empty: the XML decides.  A run is
# bad when it has an error or a definite leak (as --errors-for-leak-kinds
# above).  A run without a FINISHED status is listed as INCOMPLETE but is
# no failure (--allow-incomplete): the journal, bridge and large-message
# tests kill brokers with SIGKILL on purpose; the errors such a run
# reported before the kill still count.
KL="$BUILD/leakcheck/keel-leaks"
bad=""
n=0
for f in "$LOGS"/*.xml; do
  [ -e "$f" ] || continue
  n=$((n + 1))
  "$KL" valgrind --leak-errors=definite --allow-incomplete "$f" >/dev/null 2>&1 || bad="$bad $f"
done
if [ -n "$bad" ]; then
  echo "valgrind: errors in:"
  for f in $bad; do
    echo "== $f"
    "$KL" valgrind --leak-errors=definite --allow-incomplete "$f" || true
    cat "${f%.xml}.log" 2>/dev/null || true
  done
  rc=1
fi
# Every run's findings, grouped by stack across runs.
if [ "$n" -gt 0 ]; then
  "$KL" valgrind --leak-errors=definite --allow-incomplete "$LOGS"/*.xml >"$LOGS/summary.txt" 2>&1 || true
  echo "valgrind: summary of $n runs ($LOGS/summary.txt):"
  head -n 1 "$LOGS/summary.txt"
fi
echo "valgrind: $n broker runs checked; $( [ -z "$bad" ] && echo clean || echo 'NOT clean' )"

# The scenario suite with every node under memcheck.
echo "== keel-harness run --valgrind scenarios/ =="
if ! "$BUILD/harness/keel-harness" run --valgrind -j"$(nproc)" --db "$LOGS/scenarios.db" \
     --junit "$LOGS/junit-valgrind-scenarios.xml" scenarios; then
  echo "valgrind: scenario suite NOT clean (findings: $BUILD/harness/keel-harness show $LOGS/scenarios.db)"
  rc=1
fi
exit "$rc"
