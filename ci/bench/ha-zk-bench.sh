#!/usr/bin/env bash
# ci/bench/ha-zk-bench.sh - the figures of a pair with a ZooKeeper manager
# (broker/README.md "With a manager"): prints, not asserts.
#
#   1. failover: kill -9 of the live -> the backup's `state LIVE`, and the
#      backup's `lock.acquired`, with the manager (a real ZooKeeper,
#      session timeout 1500 ms and 6000 ms)
#   2. session-loss fencing: ZooKeeper stopped (SIGSTOP) -> the live's
#      `lock.lost` (it stops taking clients and sending receipts)
#   3. beside them, the pair alone: ci/bench/ha-bench.sh's failover part
#
# The runs are broker/tests/it_ha_zk.c's (every wait on a broker event with
# a deadline; it prints a `# failover ...` and a `# session-loss ...` line
# per run), KEEL_HA_ZK_RUNS times each (default 5).  Knobs: KEEL_BUILD_DIR
# (build-bench), KEEL_BENCH_NO_BUILD, KEEL_HA_ZK_RUNS, KEEL_HA_ZK_SESSIONS
# ("1500 6000"), KEEL_HA_ZK_NO_ALONE (skip part 3).  Exit 1 if a run
# failed, 0 otherwise; 0 with a note when ZooKeeper is not installed.
set -euo pipefail
cd "$(dirname "$0")/../.."

BUILD=${KEEL_BUILD_DIR:-build-bench}
if [ -z "${KEEL_BENCH_NO_BUILD:-}" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DKEEL_WERROR=OFF >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target keel-broker it_ha_zk >/dev/null
fi
RUNS=${KEEL_HA_ZK_RUNS:-5}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# stats FILE: "median M ms (min-max), N runs" of the numbers in FILE.
stats() {
  sort -n "$1" | awk '{ v[NR] = $1 } END {
    if (NR == 0) { print "no figure"; exit }
    m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
    printf "median %d ms (%d-%d), %d runs\n", m, v[1], v[NR], NR }'
}

failed=0
for s in ${KEEL_HA_ZK_SESSIONS:-1500 6000}; do
  : >"$tmp/fo" ; : >"$tmp/lock" ; : >"$tmp/fence"
  for ((i = 0; i < RUNS; i++)); do
    rc=0
    KEEL_IT_ZK_SESSION_MS=$s "$BUILD/broker/tests/it_ha_zk" "$BUILD/broker/keel-broker" \
      >"$tmp/out" 2>&1 || rc=$?
    if [ "$rc" = 77 ]; then
      echo "ha-zk-bench: $(grep SKIP "$tmp/out")"
      exit 0
    fi
    if [ "$rc" != 0 ]; then
      echo "ha-zk-bench: run $i (session $s ms) failed:"; grep -v ZOO_ "$tmp/out" | tail -20
      failed=1
      continue
    fi
    sed -n 's/^# failover.* LIVE in \([0-9]*\) ms (lock after \([0-9]*\) ms)/\1 \2/p' "$tmp/out" |
      while read -r a b; do echo "$a" >>"$tmp/fo"; echo "$b" >>"$tmp/lock"; done
    sed -n 's/^# session-loss.* serving in \([0-9]*\) ms.*/\1/p' "$tmp/out" >>"$tmp/fence"
  done
  echo "session timeout $s ms:"
  echo "  failover, kill -9 of the live -> backup LIVE:     $(stats "$tmp/fo")"
  echo "  ... of which kill -> lock.acquired:                $(stats "$tmp/lock")"
  echo "  session-loss fencing, ZooKeeper stopped -> lock.lost: $(stats "$tmp/fence")"
done

if [ -z "${KEEL_HA_ZK_NO_ALONE:-}" ]; then
  echo "the pair alone (ci/bench/ha-bench.sh failover):"
  KEEL_BENCH_NO_BUILD=1 KEEL_BUILD_DIR=$BUILD KEEL_BENCH_ONLY=failover \
    KEEL_HA_FAILOVER_RUNS=${KEEL_HA_FAILOVER_RUNS:-$RUNS} bash ci/bench/ha-bench.sh || failed=1
fi
exit "$failed"
