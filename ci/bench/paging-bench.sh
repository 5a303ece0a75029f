#!/usr/bin/env bash
# ci/bench/paging-bench.sh - paging figures (broker/README.md "Paging"),
# printed, never asserted: they depend on the machine.
#
#  1. backlog: KEEL_BENCH_COUNT (default 10,000,000) durable 1 KiB messages
#     sent to one queue with no consumer (a receipt every 100, 8 receipts
#     outstanding at most), then consumed (auto ack), on a broker with the
#     default configuration (PAGE, global-max-size from RAM): produce and
#     consume msg/s, lost, duplicated, out of order (sequence numbers in the
#     bodies), the broker's peak RSS (VmHWM) after each phase, the page
#     files' size at the end of the produce.
#  2. flood: KEEL_BENCH_FLOOD (default 200,000) non-persistent 1 KiB
#     messages flooded at a queue while a slower consumer drains it
#     (flowbench flood: every message once, in order), default
#     configuration: peak RSS.
# The issue's targets (issue 17): peak RSS <= 64 MiB in both, produce >=
# 50,000 msg/s, consume >= 100,000 msg/s, nothing lost or duplicated.
# Data under $TMPDIR (/var/tmp when /tmp is a tmpfs: fdatasync must be
# real).  Knobs: KEEL_BUILD_DIR (build-bench), KEEL_BENCH_NO_BUILD.
set -euo pipefail
cd "$(dirname "$0")/../.."
. ci/bench/lib.sh

BUILD=${KEEL_BUILD_DIR:-build-bench}
COUNT=${KEEL_BENCH_COUNT:-10000000}
FLOOD=${KEEL_BENCH_FLOOD:-200000}
if [ -z "${KEEL_BENCH_NO_BUILD:-}" ]; then
  # -O3 may warn where -O2 does not; a benchmark measures, it does not lint.
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DKEEL_WERROR=OFF >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target keel-broker >/dev/null
fi
BROKER=$BUILD/broker/keel-broker
build_flowbench "$BUILD/flowbench"
BENCH=$BUILD/flowbench
if [ "$(stat -f -c %T "${TMPDIR:-/tmp}")" = tmpfs ]; then
  export TMPDIR=/var/tmp
fi

bench_init
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
rc=0

# ---- 1. a backlog past the limit, then consumed -------------------------------------
broker_start backlog ''
echo "bench: keel-broker ($BUILD) on 127.0.0.1:$PORT, $(nproc) cores, data in $BROKER_DATA"
echo "bench: free space $(df -h --output=avail "$BROKER_DATA" | tail -1 | tr -d ' ')," \
     "idle RSS $(mib "$(kib "$BROKER_PID" VmRSS)") MiB"
echo
echo "== 1. $COUNT durable 1 KiB messages, no consumer, then consumed (default config) =="
"$BENCH" fill "$PORT" "$COUNT" | tee "$tmp/fill.out" | grep -v '^result:'
hwm_fill=$(kib "$BROKER_PID" VmHWM)
pages=$(du -sm "$BROKER_DATA/paging" 2>/dev/null | cut -f1)
journal=$(du -sm "$BROKER_DATA/journal" 2>/dev/null | cut -f1)
echo "after produce: peak RSS $(mib "$hwm_fill") MiB; page files ${pages:-0} MiB," \
     "journal ${journal:-0} MiB"
"$BENCH" drain "$PORT" "$COUNT" | tee "$tmp/drain.out" | grep -v '^result:' || rc=1
hwm=$(kib "$BROKER_PID" VmHWM)
echo "after consume: peak RSS $(mib "$hwm") MiB, RSS now $(mib "$(kib "$BROKER_PID" VmRSS)") MiB"
grep -o '"type":"address\.\(paging\|depaged\)"' "$BROKER_EVENTS" | sort | uniq -c |
  sed 's/^/events: /'
broker_stop

# ---- 2. the non-persistent flood ----------------------------------------------------
echo
echo "== 2. flood: $FLOOD non-persistent 1 KiB messages, a slower consumer (default config) =="
broker_start flood ''
"$BENCH" flood "$PORT" "$FLOOD" | grep -v '^result:' || rc=1
echo "flood: peak RSS $(mib "$(kib "$BROKER_PID" VmHWM)") MiB," \
     "RSS after $(mib "$(kib "$BROKER_PID" VmRSS)") MiB"
broker_stop

echo
fill_r=$(sed -n 's/^result: mode=fill .*msgps=\([0-9]*\).*/\1/p' "$tmp/fill.out")
drain_r=$(sed -n 's/^result: mode=drain .*msgps=\([0-9]*\).*/\1/p' "$tmp/drain.out")
echo "summary: N=$COUNT produce ${fill_r:-?} msg/s (target >= 50000), consume ${drain_r:-?}" \
     "msg/s (target >= 100000), peak RSS $(mib "$hwm") MiB (target <= 64)"
exit $rc
