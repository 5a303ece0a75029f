#!/usr/bin/env bash
# ci/bench/stomp-perf.sh - STOMP throughput figures from keelctl perf.
#
# Builds a Release keel-broker and keelctl in build-bench, starts the broker
# on an ephemeral loopback port (ci/bench/lib.sh), runs `keelctl perf` with 1 producer/1 consumer and then
# 4/4 (1 KiB bodies, KEEL_BENCH_COUNT messages, default 1,000,000), prints
# the figures and stops the broker.  Figures are printed, never asserted:
# they depend on the machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
. ci/bench/lib.sh

bash ci/setup.sh
BUILD=${KEEL_BUILD_DIR:-build-bench}
COUNT=${KEEL_BENCH_COUNT:-1000000}
# -O3 may warn where -O2 does not; a benchmark measures, it does not lint.
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DKEEL_WERROR=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target keel-broker keelctl
BROKER=$BUILD/broker/keel-broker
KEELCTL=$BUILD/broker/keelctl

bench_init
broker_start bench
echo "bench: keel-broker (Release) on 127.0.0.1:$PORT, $(nproc) cores, $COUNT x 1 KiB"

for pc in "1 1" "4 4"; do
  set -- $pc
  echo
  echo "== $1 producer(s), $2 consumer(s) =="
  "$KEELCTL" --port "$PORT" perf --producers "$1" --consumers "$2" --size 1024 \
             --count "$COUNT" --destination "/queue/bench.$1x$2"
done

broker_stop
grep -q '"state":"STOPPED"' "$BROKER_EVENTS" || echo "bench: broker did not report STOPPED" >&2
