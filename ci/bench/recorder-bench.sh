#!/usr/bin/env bash
# ci/bench/recorder-bench.sh - can the harness's recording keep up with
# 100,000 events/s?
#
# Builds bench_recorder (harness/reading/bench_recorder.c) in a Release
# build in build-bench and writes KEEL_BENCH_EVENTS (default 1,000,000)
# synthetic broker events into a fresh WAL database with the real schema
# (harness/src/schema.sql), KEEL_BENCH_BATCH (default 1000) per
# transaction / loop turn: raw prepared INSERTs, the JSON parse alone, and
# the real recorder (harness/src/recorder.c) on a libuv loop.  Prints
# events/s and CPU seconds; figures depend on the machine (and on what else
# runs on it) and are never asserted.
#
# Last measured (2 cores, load average 1.1-1.4, 1 M events, 1000 per turn):
# recorder 191,000-201,000 events/s (cpu 4.3-4.4 s), raw INSERTs 218,000/s.
# Before the head scan (each line parsed with jansson, SQLITE_TRANSIENT
# binds) the same run gave 107,000/s (cpu 8.7 s); 87,000/s under load.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash ci/setup.sh
BUILD=${KEEL_BUILD_DIR:-build-bench}
N=${KEEL_BENCH_EVENTS:-1000000}
BATCH=${KEEL_BENCH_BATCH:-1000}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DKEEL_WERROR=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target bench_recorder >/dev/null

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "recorder-bench: $N events, $BATCH per transaction, WAL, synchronous=NORMAL ($tmp)"
"$BUILD"/harness/reading/bench_recorder "$tmp/bench.db" "$N" "$BATCH"
echo "recorder-bench: target 100000 events/s"
