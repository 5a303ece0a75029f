#!/usr/bin/env bash
# ci/bench/bridge-bench.sh - memory figure for a core bridge carrying large
# messages to a slow target (broker/README.md, "Bridges").
#
# KEEL_BENCH_BRIDGE_COUNT (default 10) messages of KEEL_BENCH_BRIDGE_SIZE
# bytes (default 100 MiB: 1 GiB in all) are sent with receipts to a source
# broker whose bridge forwards them to a target broker.  The target is
# paused (SIGSTOP) for KEEL_BENCH_PAUSE_S seconds while the bridge streams,
# then a slow consumer takes one message at a time.  Checks: the source's
# peak RSS (VmHWM) stays under 64 MiB; every message arrives once (the
# bridge's duplicate-detection ids are distinct, nothing more comes); the
# source queue ends empty.  Exit 1 when a check fails.
set -euo pipefail
cd "$(dirname "$0")/../.."
. ci/bench/lib.sh

BUILD=${KEEL_BUILD_DIR:-build-bench}
COUNT=${KEEL_BENCH_BRIDGE_COUNT:-10}
SIZE=${KEEL_BENCH_BRIDGE_SIZE:-104857600}
PAUSE_S=${KEEL_BENCH_PAUSE_S:-3}
if [ -z "${KEEL_BENCH_NO_BUILD:-}" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target keel-broker keelctl >/dev/null
fi
BROKER=$BUILD/broker/keel-broker
KEELCTL=$BUILD/broker/keelctl

bench_init

broker_start tgt ''
TPID=$BROKER_PID TPORT=$PORT
broker_start src "bridges:
  - name: bench
    queue: big
    connectors: [\"127.0.0.1:$TPORT\"]
    retry-interval: 200"
SPID=$BROKER_PID SPORT=$PORT
idle=$(kib "$SPID" VmRSS)

t0=$(date +%s.%N)
"$KEELCTL" --port "$SPORT" --timeout 120000 produce --destination /queue/big \
  --count "$COUNT" --size "$SIZE" --receipts --persistent >"$tmp/produce.out" &
prod=$!
# Pause the target while the bridge streams to it.
until grep -q '"bridge.connected"' "$tmp/src.events"; do sleep 0.05; done
kill -STOP "$TPID"
paused_peak=0
end=$((SECONDS + PAUSE_S))
while (( SECONDS < end )); do
  r=$(kib "$SPID" VmRSS); (( r > paused_peak )) && paused_peak=$r
  sleep 0.05
done
kill -CONT "$TPID"
wait "$prod"
cat "$tmp/produce.out"

# A slow consumer: one message at a time (prefetch 1), ids collected.
fail=0
for i in $(seq 1 "$COUNT"); do
  out=$("$KEELCTL" --port "$TPORT" --timeout 120000 consume --destination /queue/big \
          --count 1 --prefetch 1 --ack client-individual)
  echo "$out" | grep -q "received 1 message" || { echo "FAIL: message $i: $out"; fail=1; break; }
  r=$(kib "$SPID" VmRSS); (( r > paused_peak )) && paused_peak=$r
done
t1=$(date +%s.%N)
extra=$("$KEELCTL" --port "$TPORT" consume --destination /queue/big --until-empty --idle 500)
echo "$extra" | grep -q "received 0 messages" || { echo "FAIL: more than $COUNT: $extra"; fail=1; }
left=$("$KEELCTL" --port "$SPORT" queue stat --queue-name big --json |
       /usr/bin/python3 -c 'import json,sys; print(sum(q["message-count"] for q in json.load(sys.stdin)["queues"]))')
(( left == 0 )) || { echo "FAIL: $left messages left at the source"; fail=1; }
hwm=$(kib "$SPID" VmHWM)
unw=$(grep -c '"bridge.unwritable"' "$tmp/src.events" || true)
dups=$(grep -c '"message.duplicate"' "$tmp/tgt.events" || true)
secs=$(echo "$t1 - $t0" | bc)
echo "bridge: $COUNT x $((SIZE / 1048576)) MiB through a bridge to a target paused ${PAUSE_S}s" \
     "then drained by a slow consumer in ${secs}s; source RSS idle $((idle / 1024)) MiB," \
     "peak sampled $((paused_peak / 1024)) MiB, VmHWM $((hwm / 1024)) MiB;" \
     "bridge.unwritable episodes: $unw; duplicates dropped at the target: $dups"
if (( hwm >= 64 * 1024 )); then
  echo "FAIL: the source's peak RSS is 64 MiB or more"; fail=1
fi
broker_stop "$SPID" "$TPID"
exit $fail
