#!/usr/bin/env bash
# ci/bench/auth-bench.sh - password brute force against the other clients
# (issue 19 defect 5): an authenticated producer's send -> RECEIPT latency
# alone, then while KEEL_BENCH_ATTACKERS (default 8) clients loop on wrong
# passwords from 127.0.0.1 (attack), then from a new address and as a new
# user each time (spread: no failure delay applies), each phase for
# KEEL_BENCH_SECONDS (default 5); and how many wrong logins per second the
# broker answered meanwhile.  The runs are in
# ci/bench/auth_bench.py (raw sockets); this builds (Release, build-bench/,
# KEEL_BUILD_DIR to move it, KEEL_BENCH_NO_BUILD=1 to reuse one).  The
# figures depend on the machine and are never asserted.
#
# Measured on the 2-core CI machine (yescrypt ~15-20 ms a check there),
# producer send -> RECEIPT median (p99), two runs each:
#   before (checks on the loop thread, no limit):
#     baseline 0.02-0.06 ms; attack 81-90 ms (137-176 ms), 53-58 wrong
#     logins/s; spread 84-121 ms (225-294 ms), 43-53/s
#   after (threadpool, 3 in flight, delays per address and user):
#     baseline 0.06 ms; attack 0.019 ms (0.07-0.10 ms), 1.0 wrong login/s;
#     spread 0.019 ms (0.07-0.08 ms), 40-55/s
set -euo pipefail
cd "$(dirname "$0")/../.."

BUILD=${KEEL_BUILD_DIR:-build-bench}
if [ -z "${KEEL_BENCH_NO_BUILD:-}" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DKEEL_WERROR=OFF >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target keel-broker >/dev/null
fi
exec /usr/bin/python3 ci/bench/auth_bench.py "$BUILD/broker/keel-broker" \
  --attackers "${KEEL_BENCH_ATTACKERS:-8}" --seconds "${KEEL_BENCH_SECONDS:-5}"
