#!/usr/bin/env bash
# it_chaos.sh HARNESS BROKER - produce's rate and duration, the chaos
# step (a seeded nemesis), its recorded schedule, replay and shrink
# (fixtures/chaos/).
set -euo pipefail
HARNESS=$1
BROKER=$2
FIX=$(cd "$(dirname "$0")/fixtures/chaos" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/tmp"
export TMPDIR=$work/tmp
fail() { echo "it_chaos: FAIL: $*" >&2; exit 1; }
q() { sqlite3 "$1" "$2"; }

# ---- rate and duration: 80 messages spread over about 2 s; a cap of 30
"$HARNESS" run --broker "$BROKER" --db "$work/rate.db" "$FIX/rate.yaml" >"$work/out" 2>&1 \
  || { cat "$work/out"; fail "rate.yaml did not pass"; }
got=$(q "$work/rate.db" "SELECT count(*) || ' ' || ((max(at_ns) - min(at_ns)) / 100000000)
        FROM messages WHERE kind = 'produced' AND destination = '/queue/rate'")
case "$got" in "80 19"|"80 20"|"80 21") ;; *) fail "rate: '$got' (80 messages over ~2.0 s expected)" ;; esac
got=$(q "$work/rate.db" "SELECT count(*) FROM messages WHERE kind = 'receipted'
        AND destination = '/queue/cap'")
[ "$got" = 30 ] || fail "cap: $got receipted, 30 expected"
echo "it_chaos: rate OK"

# ---- the same --seed gives the same schedule (times excepted)
sched() { q "$1" "SELECT step, seq, kind, target, anchor_kind, anchor_event, offset_ms,
                  duration_ms, params, result FROM faults ORDER BY step, seq"; }
for i in 1 2; do
  "$HARNESS" run --seed 7 --broker "$BROKER" --db "$work/sa$i.db" "$FIX/standalone.yaml" \
    >"$work/out" 2>&1 || { cat "$work/out"; fail "standalone.yaml run $i did not pass"; }
done
[ "$(q "$work/sa1.db" "SELECT count(*) FROM faults WHERE result = 'ok'")" = 8 ] \
  || fail "standalone: 8 faults expected: $(sched "$work/sa1.db")"
[ "$(sched "$work/sa1.db")" = "$(sched "$work/sa2.db")" ] \
  || fail "same seed, different schedules:
$(sched "$work/sa1.db")
---
$(sched "$work/sa2.db")"
[ "$(q "$work/sa1.db" "SELECT count(DISTINCT kind) FROM faults")" = 3 ] \
  || fail "standalone: kill, pause and restart expected"
"$HARNESS" run --seed 8 --broker "$BROKER" --db "$work/sa3.db" "$FIX/standalone.yaml" \
  >"$work/out" 2>&1 || { cat "$work/out"; fail "standalone.yaml (seed 8) did not pass"; }
[ "$(sched "$work/sa1.db")" != "$(sched "$work/sa3.db")" ] || fail "seeds 7 and 8 gave one schedule"
echo "it_chaos: same seed, same schedule OK"

# ---- replay drives the recorded schedule: the same rows
"$HARNESS" replay "$work/sa1.db" --broker "$BROKER" --db "$work/sa1-replay.db" >"$work/out" 2>&1 \
  || { cat "$work/out"; fail "replay of standalone differs"; }
rows() { q "$1" "SELECT step, seq, kind, target, anchor_kind, offset_ms, duration_ms, result
                 FROM faults ORDER BY step, seq"; }
[ "$(rows "$work/sa1.db")" = "$(rows "$work/sa1-replay.db")" ] || fail "replay drove other faults"
echo "it_chaos: replay OK"

# ---- shrink: a failure that needs kill n2 and pause n3 among 20 faults
rc=0
"$HARNESS" run --allow-test-steps --seed 1 --broker "$BROKER" --db "$work/sh.db" \
  "$FIX/shrink.yaml" >"$work/out" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$work/out"; fail "shrink.yaml: exit $rc, expected 1 (its failure)"; }
[ "$(q "$work/sh.db" "SELECT count(*) FROM faults WHERE result = 'ok'")" = 20 ] \
  || fail "shrink.yaml: 20 faults expected"
"$HARNESS" shrink "$work/sh.db" --scenario shrink --allow-test-steps --broker "$BROKER" \
  --db "$work/shrink-runs.db" -o "$work/shrunk.yaml" >"$work/out" 2>&1 \
  || { cat "$work/out"; fail "shrink failed"; }
cat "$work/out"
grep -Eq "^shrink: 2 of 20 fault\(s\) kept after [0-9]+ run\(s\)" "$work/out" || fail "not shrunk to 2"
n=$(grep -c -- "- {kind: " "$work/shrunk.yaml")
[ "$n" = 2 ] || fail "shrunk.yaml has $n faults, 2 expected"
grep -q -- "- {kind: kill, target: n2, at: " "$work/shrunk.yaml" || fail "shrunk.yaml: no kill of n2"
grep -q -- "- {kind: pause, target: n3, at: " "$work/shrunk.yaml" || fail "shrunk.yaml: no pause of n3"
"$HARNESS" lint --allow-test-steps "$work/shrunk.yaml" || fail "shrunk.yaml does not lint"
rc=0
"$HARNESS" run --allow-test-steps --broker "$BROKER" --db "$work/shrunk.db" "$work/shrunk.yaml" \
  >"$work/out" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$work/out"; fail "the shrunk scenario: exit $rc, expected 1"; }
grep -q "test-fail-when: kill n2 (fault [0-9]*), pause n3 (fault [0-9]*) all happened" "$work/out" \
  || { cat "$work/out"; fail "the shrunk scenario fails otherwise"; }
echo "it_chaos: shrink OK"
ls "$work/tmp" | grep -q . && fail "directories left in TMPDIR"
echo "it_chaos: OK"
