#!/usr/bin/env bash
# ci/bench/flow-bench.sh - memory figures for producer flow control and
# large messages, measured from /proc/<broker>/status.
#
#  1. flood: a producer floods KEEL_BENCH_FLOOD (default 200,000) 1 KiB
#     messages at an address with max-size-bytes 1MiB and BLOCK while a
#     slow consumer drains it; every message must arrive exactly once, in
#     order, and the broker's RSS must stay under idle + 32 MiB (sampled
#     every 50 ms, and VmHWM at the end).
#  2. large: one KEEL_BENCH_LARGE-byte message (default 1 GiB) sent and
#     received (verified byte by byte) through a fresh broker; its peak RSS
#     (VmHWM) must stay under 64 MiB.
# The producer/consumer is ci/bench/flowbench.c (raw sockets, bodies
# generated and checked 64 KiB at a time).  Exit 1 when a limit is broken.
set -euo pipefail
cd "$(dirname "$0")/../.."
. ci/bench/lib.sh

BUILD=${KEEL_BUILD_DIR:-build-bench}
FLOOD=${KEEL_BENCH_FLOOD:-200000}
LARGE=${KEEL_BENCH_LARGE:-1073741824}
if [ -z "${KEEL_BENCH_NO_BUILD:-}" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target keel-broker >/dev/null
fi
BROKER=$BUILD/broker/keel-broker
build_flowbench "$BUILD/flowbench"
BENCH=$BUILD/flowbench

bench_init

fail=0

# ---- 1. flood with BLOCK ------------------------------------------------------
broker_start bench 'address-settings:
  - match: "bench.#"
    max-size-bytes: 1MiB
    address-full-policy: BLOCK'
idle=$(kib "$BROKER_PID" VmRSS)
peak=$idle
"$BENCH" flood "$PORT" "$FLOOD" &
bench_pid=$!
while kill -0 "$bench_pid" 2>/dev/null; do
  r=$(kib "$BROKER_PID" VmRSS)
  (( r > peak )) && peak=$r
  sleep 0.05
done
wait "$bench_pid" || { echo "FAIL: flood: messages lost, duplicated or out of order"; fail=1; }
hwm=$(kib "$BROKER_PID" VmHWM)
blocked=$(grep -c '"producer.blocked"' "$BROKER_EVENTS" || true)
broker_stop
growth=$(( (peak - idle) / 1024 ))
echo "flood: broker RSS idle $((idle / 1024)) MiB, peak sampled $((peak / 1024)) MiB" \
     "(+${growth} MiB), VmHWM $((hwm / 1024)) MiB (+$(( (hwm - idle) / 1024 )) MiB);" \
     "producer.blocked events: $blocked"
if (( hwm - idle >= 32 * 1024 )); then
  echo "FAIL: flood: broker grew by 32 MiB or more"; fail=1
fi

# ---- 2. one large message -----------------------------------------------------
broker_start bench ''
"$BENCH" large "$PORT" "$LARGE" || { echo "FAIL: large: message not received intact"; fail=1; }
hwm=$(kib "$BROKER_PID" VmHWM)
left=$(find "$BROKER_DATA/large-messages" -type f | wc -l)
broker_stop
echo "large: $((LARGE / 1048576)) MiB message, broker VmHWM $((hwm / 1024)) MiB;" \
     "files left in large-messages: $left"
if (( hwm >= 64 * 1024 )); then
  echo "FAIL: large: broker peak RSS is 64 MiB or more"; fail=1
fi
if (( left != 0 )); then
  echo "FAIL: large: the message's file was not removed"; fail=1
fi
exit $fail
