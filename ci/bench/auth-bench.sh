#!/usr/bin/env bash
# ci/bench/auth-bench.sh - password brute force against the other clients
# (issue 19 defect 5): an authenticated producer's send -> RECEIPT latency
# alone, then while KEEL_BENCH_ATTACKERS (default 8) clients loop on wrong
# passwords, each for KEEL_BENCH_SECONDS (default 5); and how many wrong
# logins per second the broker answered meanwhile.  The runs are in
# ci/bench/auth_bench.py (raw sockets); this builds (Release, build-bench/,
# KEEL_BUILD_DIR to move it, KEEL_BENCH_NO_BUILD=1 to reuse one).  The
# figures depend on the machine and are never asserted.
#
# Measured on the 2-core CI machine (yescrypt costs ~56 ms per check):
#   before (checks on the loop thread, no limit):
#     baseline median 0.15 ms; attack median 405 ms, p99 560 ms, 16 wrong logins/s
#   after (threadpool, per-address/user delays, 3 checks in flight):
#     see broker/README.md "Security posture" for the current figures
set -euo pipefail
cd "$(dirname "$0")/../.."

BUILD=${KEEL_BUILD_DIR:-build-bench}
if [ -z "${KEEL_BENCH_NO_BUILD:-}" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DKEEL_WERROR=OFF >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target keel-broker >/dev/null
fi
exec /usr/bin/python3 ci/bench/auth_bench.py "$BUILD/broker/keel-broker" \
  --attackers "${KEEL_BENCH_ATTACKERS:-8}" --seconds "${KEEL_BENCH_SECONDS:-5}"
