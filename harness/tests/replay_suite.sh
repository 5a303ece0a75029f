#!/usr/bin/env bash
# replay_suite.sh HARNESS BROKER SCENARIOS N - every scenario of the suite
# run N times (`run --repeat N`, each run with its own seed), then every
# one of those runs replayed: each replay must say "same".  CTest runs it
# with N = 2 (it_kh_replay_suite); the issue's measure is N = 10:
#   bash harness/tests/replay_suite.sh build/harness/keel-harness \
#        build/broker/keel-broker scenarios 10
# Scenarios with fault steps (or a chaos step's clock and disk faults:
# uses_faults.sh) need fiu-run or libfaketime, which cannot wrap an ASan
# broker: against one they are left out, and said so.  KH_REPLAY_JOBS
# (default 2) is -j of both the run and the replay.
set -euo pipefail
# shellcheck source=uses_faults.sh
. "$(dirname "$0")/uses_faults.sh"
HARNESS=$(realpath "$1")
BROKER=$(realpath "$2")
SCEN=$(realpath "$3")
N=${4:-2}
JOBS=${KH_REPLAY_JOBS:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "replay_suite: FAIL: $*" >&2; exit 1; }
mkdir "$work/scenarios"
asan=0
# (into a file: `ldd | grep -q` under pipefail fails when grep exits first)
ldd "$BROKER" > "$work/ldd.out" 2>/dev/null || true
grep -q libasan "$work/ldd.out" && asan=1
for f in "$SCEN"/*.yaml; do
  if [ "$asan" = 1 ] && kh_uses_faults "$f"; then
    echo "replay_suite: $(basename "$f") left out: fault steps need fiu-run or libfaketime (ASan broker)"
    continue
  fi
  if grep -Eq '^ *- *chaos:' "$f"; then
    # its replay drives the recorded schedule (it_kh_chaos checks that),
    # but what a random mix of faults does depends on thread timing: the
    # nodes' events are not held to "same" here
    echo "replay_suite: $(basename "$f") left out: a chaos step (its schedule's replay: it_kh_chaos)"
    continue
  fi
  if [ "$(id -u)" != 0 ] && grep -q '^ *disk-size:' "$f"; then
    echo "replay_suite: $(basename "$f") left out: disk-size needs root (a tmpfs)"
    continue
  fi
  cp "$f" "$work/scenarios/"
done
n=$(ls "$work/scenarios"/*.yaml | wc -l)
cd "$work"
start=$(date +%s)
"$HARNESS" run -j "$JOBS" --repeat "$N" --broker "$BROKER" --db suite.db scenarios > run.out 2>&1 \
  || { cat run.out; fail "the suite did not pass"; }
total=$((n * N))
grep -q "^$total passed, 0 failed$" run.out || { cat run.out; fail "expected $total passes"; }
rc=0
"$HARNESS" replay -j "$JOBS" --broker "$BROKER" --db replay.db suite.db > replay.out 2>&1 || rc=$?
same=$(grep -c '^  same: ' replay.out || true)
differ=$(grep -c '^  DIFFERS: ' replay.out || true)
echo "replay_suite: $n scenario(s) x $N run(s): $same same, $differ differ ($(( $(date +%s) - start )) s)"
if [ "$rc" != 0 ] || [ "$same" != "$total" ]; then
  grep -B2 -A40 '^   1\. ' replay.out || cat replay.out
  fail "replay exit $rc; $same of $total same"
fi
grep -q "^replay: $total scenario(s), 0 differ;" replay.out || fail "closing line"
echo "replay_suite: OK"
