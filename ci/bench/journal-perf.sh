#!/usr/bin/env bash
# ci/bench/journal-perf.sh - persistent-message figures: the journal's
# group commit (one fdatasync per batch) as a client sees it.
#
# Builds a Release keel-broker and keelctl in build-bench, starts the broker
# on an ephemeral loopback port with a fresh data directory (journal-sync
# on, the default), and runs:
#   1. keelctl perf --persistent --receipt-every 100   (1 KiB, pipelined)
#   2. keelctl perf --persistent --receipt-every 1     (1 KiB, pipelined)
#   3. one synchronous producer: SEND persistent 1 KiB, wait for its RECEIPT,
#      repeat (`flowbench sync`, ci/bench/flowbench.c, raw sockets in C):
#      receipt p50/p99 and msg/s.
# Figures are printed, never asserted: they depend on the machine's disk
# (targets: >= 30,000 msg/s for 1.; p50 <= 0.35 ms and >= 3,500 msg/s for 3.).
# ci/bench/issue3.sh prints these with the other issue-3 figures in one table.
set -euo pipefail
cd "$(dirname "$0")/../.."
. ci/bench/lib.sh

BUILD=${KEEL_BUILD_DIR:-build-bench}
COUNT=${KEEL_BENCH_COUNT:-200000}
SYNC_COUNT=${KEEL_BENCH_SYNC_COUNT:-5000}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DKEEL_WERROR=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target keel-broker keelctl >/dev/null
BROKER=$BUILD/broker/keel-broker
KEELCTL=$BUILD/broker/keelctl
BENCH=$BUILD/flowbench
build_flowbench "$BENCH"

bench_init
broker_start jbench
echo "bench: keel-broker (Release) on 127.0.0.1:$PORT, journal in $BROKER_DATA/journal"

for every in 100 1; do
  echo
  echo "== keelctl perf --persistent --receipt-every $every (1 producer, 1 consumer, $COUNT x 1 KiB) =="
  "$KEELCTL" --port "$PORT" perf --persistent --receipt-every "$every" --size 1024 \
             --count "$COUNT" --destination "/queue/bench.j$every"
done

echo
echo "== synchronous producer: SEND persistent 1 KiB + wait for RECEIPT, $SYNC_COUNT times =="
"$BENCH" sync "$PORT" "$SYNC_COUNT"

broker_stop
