#!/usr/bin/env bash
# ci/bench/ha-bench.sh - replication (HA) figures of a Release keel-broker
# pair on loopback (broker/README.md "Replication (HA)"); the runs are in
# ci/bench/ha_bench.py, this builds, picks a data directory on disk and
# cleans up.  Fixed free ports outside the ephemeral range (checked), data in
# a mktemp directory under $TMPDIR (/var/tmp when /tmp is a tmpfs, so that
# fdatasync is real), journal-sync on.  Every wait is on a broker event
# with a deadline; every broker started is killed at exit.
#
#   1. failover: kill -9 of the primary -> the backup's `state LIVE`
#      (20 fresh pairs, 1000 x 1 KiB persistent in the journal each), with
#      the default journal-file-size (10 MiB) and with 1 GiB (failover-1g):
#      activation must cost in proportion to the data, not to the segments
#   2. failback with 10k x 1 KiB persistent in the journal: primary
#      respawned -> ex-backup failback.done, and -> backup.announced
#      (5 kill/rejoin cycles on one pair)
#   3. initial sync MB/s: 500 x 1 MiB (large-message files), and 100 MiB of
#      4 KiB messages (journal segments); sync.started bytes / (sync.done -
#      sync.started) on the backup, 3 fresh pairs each
#   4. 1 KiB persistent receipted msg/s, live with a synced backup vs
#      standalone, issue3.sh's client methods (keelctl perf receipt every
#      100 and every 1, 200000 messages; flowbench sync, 5000), median of 3
#      fresh brokers/pairs each, the two kinds interleaved
# Knobs: KEEL_BUILD_DIR (build-bench), KEEL_BENCH_NO_BUILD, KEEL_BENCH_ONLY
# (subset of: failover failover-1g failback sync throughput), KEEL_HA_FAILOVER_RUNS (20),
# KEEL_HA_FAILBACK_RUNS (5), KEEL_HA_SYNC_RUNS (3), KEEL_HA_TP_RUNS (3),
# KEEL_HA_TP_COUNT (200000),
# KEEL_BENCH_SYNC_COUNT (5000).  Exit status 1 if a part failed (the
# broker's events and stderr are printed), 0 otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."
. ci/bench/lib.sh

BUILD=${KEEL_BUILD_DIR:-build-bench}
if [ -z "${KEEL_BENCH_NO_BUILD:-}" ]; then
  # -O2 may warn where a debug build does not; a benchmark measures, it does not lint.
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DKEEL_WERROR=OFF >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target keel-broker keelctl >/dev/null
fi
BENCH=$BUILD/flowbench
build_flowbench "$BENCH"

# Data on a real disk: a tmpfs makes fdatasync free.
if [ "$(stat -f -c %T "${TMPDIR:-/tmp}")" = tmpfs ]; then
  export TMPDIR=/var/tmp
fi
bench_init
PIDS=$tmp/pids
: >"$PIDS"
PY=
# Stop ha_bench.py first (it kills its brokers on SIGTERM), then kill any
# broker it started and left; a pid is only killed while it is still a
# keel-broker.
ha_cleanup() {
  local p
  if [ -n "$PY" ] && kill -0 "$PY" 2>/dev/null; then
    kill -TERM "$PY" 2>/dev/null || true
    wait "$PY" 2>/dev/null || true
  fi
  while read -r p; do
    if tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -q keel-broker; then
      kill -KILL "$p" 2>/dev/null || true
    fi
  done <"$PIDS"
  bench_cleanup
}
trap ha_cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

echo "ha-bench: $(nproc) cores, data in $tmp on $(df -P "$tmp" | awk 'NR == 2 { print $1 }')" \
     "($(stat -f -c %T "$tmp"))"
echo "load at start: $(uptime)"
# For context, what the disk allows without a broker (as issue3.sh run 0).
echo "disk alone: $("$BENCH" disk "$tmp" | head -1)"
rc=0
# In the background and waited for, so that a signal reaches the traps at once.
python3 ci/bench/ha_bench.py --broker "$BUILD/broker/keel-broker" \
  --keelctl "$BUILD/broker/keelctl" --flowbench "$BENCH" --dir "$tmp" --pids-file "$PIDS" \
  --only "${KEEL_BENCH_ONLY:-failover failover-1g failback sync throughput}" \
  --failover-runs "${KEEL_HA_FAILOVER_RUNS:-20}" --failback-runs "${KEEL_HA_FAILBACK_RUNS:-5}" \
  --sync-runs "${KEEL_HA_SYNC_RUNS:-3}" --tp-runs "${KEEL_HA_TP_RUNS:-3}" \
  --tp-count "${KEEL_HA_TP_COUNT:-200000}" \
  --sync-count "${KEEL_BENCH_SYNC_COUNT:-5000}" &
PY=$!
wait "$PY" || rc=$?
PY=
echo "load at end: $(uptime)"
exit "$rc"
