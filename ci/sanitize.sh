#!/usr/bin/env bash
# ci/sanitize.sh - every unit and integration test with ASan + UBSan.
#
# Builds in build-asan with -DKEEL_SANITIZE=ON (-fsanitize=address,undefined,
# no recovery: the first report fails the process) and runs the tests
# labelled unit and integration; the integration tests run the sanitized
# keel-broker, so a report in the broker fails them too (non-zero exit on
# stop).  Extra arguments go to ctest (e.g. -R it_).  Exit status: CTest's.
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/setup.sh
BUILD=${KEEL_BUILD_DIR:-build-asan}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKEEL_SANITIZE=ON
cmake --build "$BUILD" -j"$(nproc)"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
exec ctest --test-dir "$BUILD" --output-on-failure -j2 -L 'unit|integration' \
     --output-junit junit.xml "$@"
