#!/usr/bin/env bash
# ci/test.sh - run every test: the README's test command and what CI runs.
#
# Installs missing packages (ci/setup.sh), configures and builds in build/
# (RelWithDebInfo unless KEEL_BUILD_TYPE says otherwise), then runs CTest
# with a JUnit report in build/junit.xml.  The exit status is CTest's, and
# CTest's summary is the last thing printed.
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/setup.sh
BUILD=${KEEL_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE="${KEEL_BUILD_TYPE:-RelWithDebInfo}"
cmake --build "$BUILD" -j"$(nproc)"
exec ctest --test-dir "$BUILD" --output-on-failure -j2 --output-junit junit.xml
