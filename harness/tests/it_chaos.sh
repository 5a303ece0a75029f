#!/usr/bin/env bash
# it_chaos.sh HARNESS BROKER [kinds] - produce's rate and duration, the
# chaos step (a seeded nemesis), its recorded schedule, replay and shrink
# (fixtures/chaos/).  `kinds` (CTest it_kh_chaos_kinds) instead runs the
# chaos step's clock and disk faults (kinds.yaml, shrink-kinds.yaml): the
# same seed gives the same rows, replay drives them, shrink writes them
# back readable; SKIP (77) against an ASan broker (libfaketime and
# fiu-run cannot preload before ASan) or without libfaketime or fiu-run.
set -euo pipefail
HARNESS=$1
BROKER=$2
MODE=${3:-}
FIX=$(cd "$(dirname "$0")/fixtures/chaos" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/tmp"
export TMPDIR=$work/tmp
fail() { echo "it_chaos: FAIL: $*" >&2; exit 1; }
q() { sqlite3 "$1" "$2"; }

if [ "$MODE" = kinds ]; then
  if ldd "$BROKER" 2>/dev/null | grep -q libasan; then
    echo "SKIP: ASan build: clock and disk faults preload libfaketime and libfiu, which cannot come before ASan"
    exit 77
  fi
  found=${KH_FAKETIME_LIB:-}
  for f in /usr/lib/*/faketime/libfaketimeMT.so.1 /usr/lib/faketime/libfaketimeMT.so.1; do
    [ -e "$f" ] && found=$f
  done
  [ -n "$found" ] || { echo "SKIP: libfaketime is not installed (ci/setup.sh)"; exit 77; }
  command -v fiu-run >/dev/null || { echo "SKIP: fiu-run is not installed (ci/setup.sh)"; exit 77; }
  # ---- the same seed, the same rows (clock: jump or rate; disk: points)
  rows() { q "$1" "SELECT step, seq, kind, target, anchor_kind, offset_ms, duration_ms,
                   json_remove(params, '$.target'), result FROM faults ORDER BY step, seq"; }
  for i in 1 2; do
    "$HARNESS" run --seed 7 --broker "$BROKER" --db "$work/k$i.db" "$FIX/kinds.yaml" \
      >"$work/out" 2>&1 || { cat "$work/out"; fail "kinds.yaml run $i did not pass"; }
  done
  [ "$(rows "$work/k1.db")" = "$(rows "$work/k2.db")" ] || fail "same seed, different rows:
$(rows "$work/k1.db")
---
$(rows "$work/k2.db")"
  [ "$(q "$work/k1.db" "SELECT count(*) FROM faults WHERE result = 'ok'")" = 11 ] \
    || fail "kinds: 8 + 3 faults expected: $(rows "$work/k1.db")"
  # every kind drawn; a clock row has a jump or a rate within the step's bounds
  [ "$(q "$work/k1.db" "SELECT group_concat(DISTINCT kind) FROM (SELECT kind FROM faults
        WHERE step = 6 ORDER BY kind)")" = "clock,disk,pause" ] || fail "kinds: $(rows "$work/k1.db")"
  bad=$(q "$work/k1.db" "SELECT count(*) FROM faults WHERE kind = 'clock' AND step = 6 AND NOT (
          (json_extract(params, '$.rate') BETWEEN 0.5 AND 2.0 AND json_extract(params, '$.jump') IS NULL)
          OR (json_extract(params, '$.jump') BETWEEN 0 AND 30 AND json_extract(params, '$.rate') IS NULL))")
  [ "$bad" = 0 ] || fail "clock rows out of their bounds: $(rows "$work/k1.db")"
  bad=$(q "$work/k1.db" "SELECT count(*) FROM faults WHERE kind = 'disk' AND step = 6 AND NOT (
          json_array_length(params, '$.points') = 2 AND json_extract(params, '$.probability') = 0.5)")
  [ "$bad" = 0 ] || fail "disk rows not as drawn: $(rows "$work/k1.db")"
  # the nodes serve: a jump goes back, a rate above 1 is inverted (clock.set)
  got=$(q "$work/k1.db" "SELECT count(*) FROM events WHERE node = 'keel-harness' AND type = 'clock.set'
         AND (json_extract(json, '$.jump-s') > 0 OR json_extract(json, '$.rate') > 1)")
  [ "$got" = 0 ] || fail "a serving node's clock went forward or fast"
  # the written entries (step 7): n2 jumps 3 s back, n3 runs at 1/1.5; each
  # ends at rate 1 where its clock is
  got=$(q "$work/k1.db" "SELECT json_extract(json, '$.broker') || ' ' ||
         round(json_extract(json, '$.rate'), 4) || ' ' || coalesce(json_extract(json, '$.jump-s'), '-')
         FROM events WHERE node = 'keel-harness' AND type = 'clock.set' AND id > (SELECT max(id)
         FROM events WHERE type = 'chaos.heal' AND json_extract(json, '$.step') = 6) ORDER BY id")
  [ "$got" = "n2 1.0 -3.0
n3 0.6667 -
n2 1.0 -
n3 1.0 -" ] || fail "the written entries (n2 jump 3, n3 rate 1.5): '$got'"
  # every disk fault reached its node: fiu-ctrl failed nowhere
  n=$(q "$work/k1.db" "SELECT count(*) FROM logs WHERE line LIKE '%fiu-ctrl%failed%'")
  [ "$n" = 0 ] || fail "fiu-ctrl failed: $(q "$work/k1.db" "SELECT line FROM logs WHERE line LIKE '%fiu-ctrl%'")"
  [ "$(q "$work/k1.db" "SELECT count(*) FROM events WHERE type = 'disk.on'")" = \
    "$(q "$work/k1.db" "SELECT count(*) FROM faults WHERE kind = 'disk'")" ] || fail "disk.on events"
  echo "it_chaos: clock and disk, same seed same rows OK"
  "$HARNESS" replay "$work/k1.db" --broker "$BROKER" --db "$work/k1-replay.db" >"$work/out" 2>&1 \
    || { cat "$work/out"; fail "replay of kinds differs"; }
  [ "$(rows "$work/k1.db")" = "$(rows "$work/k1-replay.db")" ] || fail "replay drove other faults:
$(rows "$work/k1.db")
---
$(rows "$work/k1-replay.db")"
  echo "it_chaos: clock and disk replay OK"
  # ---- shrink: a clock fault of n2 and a disk fault of n3 among 12
  rc=0
  "$HARNESS" run --allow-test-steps --seed 1 --broker "$BROKER" --db "$work/sk.db" \
    "$FIX/shrink-kinds.yaml" >"$work/out" 2>&1 || rc=$?
  [ "$rc" = 1 ] || { cat "$work/out"; fail "shrink-kinds.yaml: exit $rc, expected 1"; }
  "$HARNESS" shrink "$work/sk.db" --scenario shrink-kinds --allow-test-steps --broker "$BROKER" \
    --db "$work/shrink-runs.db" -o "$work/shrunk.yaml" >"$work/out" 2>&1 \
    || { cat "$work/out"; fail "shrink failed"; }
  grep -Eq "^shrink: 2 of 12 fault\(s\) kept after [0-9]+ run\(s\)" "$work/out" \
    || { cat "$work/out"; fail "not shrunk to 2"; }
  grep -Eq -- "- \{kind: clock, target: n2, at: [0-9.]+, for: [0-9.]+, (jump|rate): [0-9.]+\}" \
    "$work/shrunk.yaml" || { cat "$work/shrunk.yaml"; fail "shrunk.yaml: no readable clock fault of n2"; }
  grep -Eq -- "- \{kind: disk, target: n3, at: [0-9.]+, for: [0-9.]+, points: \[\"[a-z/-]+\"\], probability: 0.2\}" \
    "$work/shrunk.yaml" || { cat "$work/shrunk.yaml"; fail "shrunk.yaml: no readable disk fault of n3"; }
  "$HARNESS" lint --allow-test-steps "$work/shrunk.yaml" || fail "shrunk.yaml does not lint"
  rc=0
  "$HARNESS" run --allow-test-steps --broker "$BROKER" --db "$work/shrunk.db" "$work/shrunk.yaml" \
    >"$work/out" 2>&1 || rc=$?
  [ "$rc" = 1 ] || { cat "$work/out"; fail "the shrunk scenario: exit $rc, expected 1"; }
  grep -q "test-fail-when: clock n2 (fault [0-9]*), disk n3 (fault [0-9]*) all happened" "$work/out" \
    || { cat "$work/out"; fail "the shrunk scenario fails otherwise"; }
  # its two rows are the recorded ones (params but the spec)
  pr() { q "$1" "SELECT kind, target, json_remove(params, '$.target') FROM faults WHERE result = 'ok'
                 AND ((kind = 'clock' AND target = 'n2') OR (kind = 'disk' AND target = 'n3'))
                 ORDER BY kind"; }
  [ "$(pr "$work/shrunk.db" | wc -l)" = 2 ] || fail "shrunk run: $(pr "$work/shrunk.db")"
  echo "it_chaos: clock and disk shrink OK"
  # ---- a disk fault under a pair producer: storage errors, resent, none lost
  "$HARNESS" run --broker "$BROKER" --db "$work/pd.db" "$FIX/pair-disk.yaml" >"$work/out" 2>&1 \
    || { cat "$work/out"; fail "pair-disk.yaml did not pass"; }
  n=$(q "$work/pd.db" "SELECT count(*) FROM events WHERE type = 'client.disconnected'
        AND json_extract(json, '$.error') LIKE 'ERROR frame: Storage error%'")
  [ "$n" -ge 1 ] || fail "pair-disk: no storage error reached the producer"
  # each waits KH_STORAGE_ERROR_PAUSE_MS before the resend: no busy loop
  [ "$n" -le 40 ] || fail "pair-disk: $n reconnects after storage errors in 2 s"
  echo "it_chaos: pair-disk OK ($n storage error(s), resent)"
  # ---- a disk fault that stops its node: its end starts it again
  "$HARNESS" run --broker "$BROKER" --db "$work/pp.db" "$FIX/pair-persist.yaml" >"$work/out" 2>&1 \
    || { cat "$work/out"; fail "pair-persist.yaml did not pass"; }
  got=$(q "$work/pp.db" "SELECT group_concat(type || ' ' || coalesce(json_extract(json, '$.broker'),
         json_extract(json, '$.kind')), ', ') FROM (SELECT type, json FROM events WHERE
         node = 'keel-harness' AND type IN ('node.down', 'chaos.heal', 'disk.off') AND id < (SELECT
         id FROM events WHERE type = 'chaos.healed') ORDER BY id)")
  [ "$got" = "node.down live1, node.down backup1, chaos.heal kill, chaos.heal disk" ] \
    || fail "pair-persist: '$got'"
  [ "$(q "$work/pp.db" "SELECT count(*) FROM logs WHERE node = 'backup1' AND line LIKE
        '%cannot write the identity file%stopping%'")" = 1 ] || fail "pair-persist: backup1 did not stop"
  echo "it_chaos: pair-persist OK"
  ls "$work/tmp" | grep -q . && fail "directories left in TMPDIR"
  echo "it_chaos: kinds OK"
  exit 0
fi

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
