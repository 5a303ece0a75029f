#!/usr/bin/env bash
# ci/bench/issue3.sh - every figure of issue 3 (journal, flow control, large
# messages) in one table, each measured on a fresh Release broker (loopback,
# fresh data directory under $TMPDIR, journal-sync on: real fdatasync).
#
#   0. flowbench disk: what the disk allows without a broker (1 KiB
#      pwrite+fdatasync per second, 10 MiB write+fsync MB/s), for context
#   1. keelctl perf --persistent --receipt-every 100   1 KiB, 1 producer/1 consumer
#   2. keelctl perf --persistent --receipt-every 1     1 KiB, pipelined
#   3. flowbench sync: SEND persistent 1 KiB, wait for its RECEIPT, repeat
#      (one C producer): msg/s and receipt p50/p99
#   4. flowbench bulk: 200 persistent 10 MiB messages, each receipted, while a
#      consumer receives and verifies them: MB/s, broker VmHWM
#   5. flowbench large: one 1 GiB message through the broker: broker VmHWM
#   6. flowbench flood: 1 KiB flood at a 1 MiB BLOCK address with a slow
#      consumer: broker VmHWM above its idle RSS
# Figures are printed with their targets (a benchmark, not a test: the exit
# status is 0 unless a run fails outright; the Result column says MISS when
# a target is not met).  Knobs: KEEL_BUILD_DIR (build-bench), KEEL_BENCH_COUNT
# (200000, runs 1-2), KEEL_BENCH_SYNC_COUNT (5000), KEEL_BENCH_BULK (200),
# KEEL_BENCH_BULK_RUNS (3: run 4 is repeated on a fresh broker each time and
# reported as min / median / max, the target checked on the median),
# KEEL_BENCH_LARGE (1073741824), KEEL_BENCH_FLOOD (200000), KEEL_BENCH_NO_BUILD,
# KEEL_BENCH_ONLY (a space-separated subset of: disk small bulk large flood;
# e.g. KEEL_BENCH_ONLY=bulk for the 10 MiB figures alone).
set -euo pipefail
cd "$(dirname "$0")/../.."
. ci/bench/lib.sh

BUILD=${KEEL_BUILD_DIR:-build-bench}
COUNT=${KEEL_BENCH_COUNT:-200000}
SYNC_COUNT=${KEEL_BENCH_SYNC_COUNT:-5000}
BULK=${KEEL_BENCH_BULK:-200}
LARGE=${KEEL_BENCH_LARGE:-1073741824}
FLOOD=${KEEL_BENCH_FLOOD:-200000}
BULK_RUNS=${KEEL_BENCH_BULK_RUNS:-3}
ONLY=${KEEL_BENCH_ONLY:-disk small bulk large flood}
# want PART: is PART of the benchmark to run?
want() { [[ " $ONLY " == *" $1 "* ]]; }
if [ -z "${KEEL_BENCH_NO_BUILD:-}" ]; then
  # -O2 may warn where a debug build does not; a benchmark measures, it does not lint.
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DKEEL_WERROR=OFF >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target keel-broker keelctl >/dev/null
fi
BROKER=$BUILD/broker/keel-broker
KEELCTL=$BUILD/broker/keelctl
BENCH=$BUILD/flowbench
build_flowbench "$BENCH"

bench_init
# field KEY from the `result:` line of flowbench output $1
field() { sed -n "s/^result:.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
# field KEY from keelctl perf --json output $1
jfield() { python3 -c 'import json,sys; print("%.3f" % json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

ROWS=()
# row FIGURE VALUE TARGET OK(1/0)
row() { ROWS+=("$1|$2|$3|$([ "$4" = 1 ] && echo ok || echo MISS)"); }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }' && echo 1 || echo 0; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }' && echo 1 || echo 0; }

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
disk=$(df -P "$tmp" | awk 'NR == 2 { print $1 }')

# ---- 0: the disk alone (context for 3 and 4: no broker can beat it) ----------
if want disk; then
echo "== flowbench disk (no broker) =="
out=$("$BENCH" disk "$tmp")
echo "$out"
row "disk alone: 1 KiB pwrite+fdatasync (/s)" "$(field "$out" syncps)" "-" 1
row "  fdatasync p50 / p99 (ms)" "$(field "$out" sync_p50_ms) / $(field "$out" sync_p99_ms)" "-" 1
row "disk alone: 10 MiB write+fsync (MB/s)" "$(field "$out" file_mbps)" "-" 1
fi

# ---- 1-3: 1 KiB persistent ---------------------------------------------------
if want small; then
broker_start bench3 ''
for every in 100 1; do
  echo "== keelctl perf --persistent --receipt-every $every ($COUNT x 1 KiB) =="
  out=$("$KEELCTL" --port "$PORT" perf --persistent --receipt-every "$every" --size 1024 \
                   --count "$COUNT" --destination "/queue/bench.j$every" --json)
  echo "$out"
  mps=$(jfield "$out" msgs_per_s)
  if [ "$every" = 100 ]; then
    row "1 KiB persistent, receipt every 100 (msg/s)" "${mps%.*}" ">= 30000" "$(ge "$mps" 30000)"
  else
    row "1 KiB persistent, receipt every message, pipelined (msg/s)" "${mps%.*}" "-" 1
  fi
done
echo "== flowbench sync $SYNC_COUNT (one producer, each RECEIPT waited for) =="
out=$("$BENCH" sync "$PORT" "$SYNC_COUNT")
echo "$out"
mps=$(field "$out" msgps)
p50=$(field "$out" p50_ms)
p99=$(field "$out" p99_ms)
row "1 KiB persistent, receipt waited for each (msg/s)" "$mps" ">= 3500" "$(ge "$mps" 3500)"
row "  receipt latency p50 (ms)" "$p50" "<= 0.35" "$(le "$p50" 0.35)"
row "  receipt latency p99 (ms)" "$p99" "-" 1
broker_stop
fi

# ---- 4: persistent 10 MiB messages --------------------------------------------
# median VALUES...: the middle one (the lower middle of an even count)
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# mmm VALUES...: "min / median / max"
mmm() { printf '%s / %s / %s' "$(printf '%s\n' "$@" | sort -g | head -1)" "$(median "$@")" \
               "$(printf '%s\n' "$@" | sort -g | tail -1)"; }
if want bulk; then
rs=() cs=() hs=()
for ((run = 1; run <= BULK_RUNS; run++)); do
  broker_start bench3 ''
  echo "== flowbench bulk $BULK x 10 MiB persistent, receipted, consumed (run $run of $BULK_RUNS) =="
  out=$("$BENCH" bulk "$PORT" "$BULK" 10485760)
  echo "$out"
  hs+=("$(kib "$BROKER_PID" VmHWM)")
  broker_stop
  rs+=("$(field "$out" receipted_mbps)")
  cs+=("$(field "$out" received_mbps)")
done
r=$(median "${rs[@]}")
c=$(median "${cs[@]}")
hwm=$(printf '%s\n' "${hs[@]}" | sort -g | tail -1)
row "10 MiB persistent, receipted (MB/s, min / median / max)" "$(mmm "${rs[@]}")" ">= 800" \
    "$(ge "$r" 800)"
row "10 MiB persistent, received + verified (MB/s, min / med / max)" "$(mmm "${cs[@]}")" \
    ">= 800" "$(ge "$c" 800)"
row "  broker VmHWM (MiB, highest run)" "$((hwm / 1024))" "<= 64" "$(le "$hwm" $((64 * 1024)))"
fi

# ---- 5: one 1 GiB message -------------------------------------------------------
if want large; then
broker_start bench3 ''
echo "== flowbench large $LARGE =="
"$BENCH" large "$PORT" "$LARGE"
hwm=$(kib "$BROKER_PID" VmHWM)
broker_stop
row "$((LARGE / 1048576)) MiB message: broker VmHWM (MiB)" "$((hwm / 1024))" "< 64" \
    "$( ((hwm < 64 * 1024)) && echo 1 || echo 0)"
fi

# ---- 6: BLOCK flood ---------------------------------------------------------------
if want flood; then
broker_start bench3 'address-settings:
  - match: "bench.#"
    max-size-bytes: 1MiB
    address-full-policy: BLOCK'
idle=$(kib "$BROKER_PID" VmRSS)
echo "== flowbench flood $FLOOD (BLOCK at 1 MiB, slow consumer) =="
"$BENCH" flood "$PORT" "$FLOOD"
hwm=$(kib "$BROKER_PID" VmHWM)
broker_stop
row "BLOCK flood: broker VmHWM (MiB, idle $((idle / 1024)))" "$((hwm / 1024))" \
    "< idle + 32" "$( ((hwm - idle < 32 * 1024)) && echo 1 || echo 0)"
fi

load_after=$(cut -d' ' -f1-3 /proc/loadavg)
echo
echo "issue 3 figures: $(nproc) cores, data on $disk, load average $load_before (before)," \
     "$load_after (after)"
printf '%-62s %18s %12s  %s\n' "figure" "value" "target" "result"
for r in "${ROWS[@]}"; do
  IFS='|' read -r f v t k <<<"$r"
  printf '%-62s %18s %12s  %s\n' "$f" "$v" "$t" "$k"
done
