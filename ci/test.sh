#!/usr/bin/env bash
# ci/test.sh - run every test: the README's test command and what CI runs.
#
# Installs missing packages (ci/setup.sh), then two passes:
#  1. configure and build in build/ (RelWithDebInfo unless KEEL_BUILD_TYPE
#     says otherwise) and run every CTest test, JUnit in build/junit.xml;
#  2. the same sources built with ASan + UBSan in build-asan/ (ci/sanitize.sh)
#     and the tests labelled unit and integration run there, JUnit in
#     build-asan/junit.xml.  The three HA explorer walks are left out of this
#     pass (ci/sanitize.sh runs them): they exercise only the pure state
#     machine that test_ha runs under the sanitizers, and take 4 minutes
#     there.
# Both passes always run.  The exit status is 0 only when both passed; the
# last lines printed are both passes' CTest summaries.  KEEL_TEST_SANITIZE=0
# skips pass 2 (for a quick local run; CI never sets it).
set -uo pipefail
cd "$(dirname "$0")/.."

bash ci/setup.sh || exit $?
BUILD=${KEEL_BUILD_DIR:-build}
ASAN_BUILD=${KEEL_ASAN_BUILD_DIR:-build-asan}
LOGDIR=$(mktemp -d)
trap 'rm -rf "$LOGDIR"' EXIT

plain() {
	cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE="${KEEL_BUILD_TYPE:-RelWithDebInfo}" &&
	cmake --build "$BUILD" -j"$(nproc)" &&
	ctest --test-dir "$BUILD" --output-on-failure -j2 --output-junit junit.xml
}

sanitized() {
	KEEL_BUILD_DIR="$ASAN_BUILD" bash ci/sanitize.sh -LE explore
}

echo "== ci/test.sh pass 1: every test, $BUILD/"
plain 2>&1 | tee "$LOGDIR/plain.log"
rc1=${PIPESTATUS[0]}
rc2=0
if [ "${KEEL_TEST_SANITIZE:-1}" != 0 ]; then
	echo "== ci/test.sh pass 2: unit and integration tests under ASan + UBSan, $ASAN_BUILD/"
	sanitized 2>&1 | tee "$LOGDIR/asan.log"
	rc2=${PIPESTATUS[0]}
fi

summary() { # the CTest summary of a pass's log, or a note that it has none
	grep -E '^(100% tests passed|[0-9]+% tests passed|Total Test time)' "$1" ||
		echo "   (no CTest summary: the build or configure step failed, see above)"
}
echo
echo "== ci/test.sh: pass 1 (plain, $BUILD/junit.xml): exit $rc1"
summary "$LOGDIR/plain.log"
if [ "${KEEL_TEST_SANITIZE:-1}" != 0 ]; then
	echo "== ci/test.sh: pass 2 (ASan + UBSan, $ASAN_BUILD/junit.xml): exit $rc2"
	summary "$LOGDIR/asan.log"
else
	echo "== ci/test.sh: pass 2 (ASan + UBSan) skipped: KEEL_TEST_SANITIZE=0"
fi
[ "$rc1" = 0 ] && [ "$rc2" = 0 ]
