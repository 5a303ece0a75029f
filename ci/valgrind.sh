#!/usr/bin/env bash
# ci/valgrind.sh - the integration tests with keel-broker under Valgrind.
#
# Builds in build-vg (RelWithDebInfo, no sanitizers) and runs the tests
# labelled integration with KEEL_BROKER_WRAPPER set, so every broker they
# start runs under memcheck (--leak-check=full, definite leaks are
# errors, --error-exitcode=99).  Test deadlines are scaled
# (KEEL_IT_TIMEOUT_SCALE).  Fails when a test fails or when any Valgrind
# log reports an error, even one a test did not notice.  Extra arguments
# go to ctest (e.g. -R it_pystomp).
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/setup.sh
BUILD=${KEEL_BUILD_DIR:-build-vg}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKEEL_SANITIZE=OFF
# Only what the integration tests run (other parts may not build yet).
cmake --build "$BUILD" -j"$(nproc)" --target keel-broker keelctl it_broker

LOGS=$(realpath "$BUILD")/valgrind
rm -rf "$LOGS"
mkdir -p "$LOGS"
export KEEL_BROKER_WRAPPER="valgrind --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --track-fds=no --log-file=$LOGS/broker.%p.log"
export KEEL_IT_TIMEOUT_SCALE=${KEEL_IT_TIMEOUT_SCALE:-10}

rc=0
ctest --test-dir "$BUILD" --output-on-failure -j1 -L integration \
      --output-junit junit-valgrind.xml "$@" || rc=$?

bad=$(grep -L 'ERROR SUMMARY: 0 errors' "$LOGS"/*.log 2>/dev/null || true)
n=$(ls "$LOGS"/*.log 2>/dev/null | wc -l)
if [ -n "$bad" ]; then
  echo "valgrind: errors in:"
  for f in $bad; do
    echo "== $f"
    cat "$f"
  done
  rc=1
fi
echo "valgrind: $n broker runs checked; $( [ -z "$bad" ] && echo clean || echo 'NOT clean' )"
exit "$rc"
