#!/usr/bin/env bash
# ci/bench/stomp-perf.sh - STOMP throughput figures from keelctl perf.
#
# Builds a Release keel-broker and keelctl in build-bench, starts the broker
# on an ephemeral loopback port (events through a FIFO: waits are reads
# with deadlines), runs `keelctl perf` with 1 producer/1 consumer and then
# 4/4 (1 KiB bodies, KEEL_BENCH_COUNT messages, default 1,000,000), prints
# the figures and stops the broker.  Figures are printed, never asserted:
# they depend on the machine.
set -euo pipefail
cd "$(dirname "$0")/../.."

bash ci/setup.sh
BUILD=${KEEL_BUILD_DIR:-build-bench}
COUNT=${KEEL_BENCH_COUNT:-1000000}
# -O3 may warn where -O2 does not; a benchmark measures, it does not lint.
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DKEEL_WERROR=OFF >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target keel-broker keelctl
BROKER=$BUILD/broker/keel-broker
KEELCTL=$BUILD/broker/keelctl

tmp=$(mktemp -d)
BROKER_PID=
cleanup() {
  if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill -KILL "$BROKER_PID" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
mkfifo "$tmp/events"
exec {EVFD}<>"$tmp/events"

PORT=
wait_event() {
  local deadline=$((SECONDS + $2)) line
  while (( SECONDS < deadline )); do
    if IFS= read -r -t 1 -u "$EVFD" line; then
      if [[ $line =~ \"type\":\"acceptor.listening\".*\"port\":([0-9]+) ]]; then
        PORT=${BASH_REMATCH[1]}
      fi
      [[ $line =~ $1 ]] && return 0
    elif ! kill -0 "$BROKER_PID" 2>/dev/null; then
      return 1
    fi
  done
  return 1
}

"$BROKER" --listen 127.0.0.1:0 --data-dir "$tmp/data" --events "$tmp/events" \
          --name bench --log-level warn &
BROKER_PID=$!
wait_event '"state":"LIVE"' 30 || { echo "bench: broker did not become LIVE" >&2; exit 1; }
echo "bench: keel-broker (Release) on 127.0.0.1:$PORT, $(nproc) cores, $COUNT x 1 KiB"

for pc in "1 1" "4 4"; do
  set -- $pc
  echo
  echo "== $1 producer(s), $2 consumer(s) =="
  "$KEELCTL" --port "$PORT" perf --producers "$1" --consumers "$2" --size 1024 \
             --count "$COUNT" --destination "/queue/bench.$1x$2"
done

kill -TERM "$BROKER_PID"
wait_event '"state":"STOPPED"' 60 || echo "bench: broker did not report STOPPED" >&2
wait "$BROKER_PID" || true
BROKER_PID=
