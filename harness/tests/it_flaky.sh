#!/usr/bin/env bash
# it_flaky.sh HARNESS BROKER - a scenario flaky on purpose
# (fixtures/flaky/flaky-journal.yaml: a libfiu probability fault) found by
# `flaky` after 20 recorded runs on one commit, with its pass rate, its
# failing seeds and first findings; `run --deflake` labels each failure
# honestly: flaky when a retry passed, fail when none did (a copy that
# always fails), in the console, TAP, JUnit, the recording and the history.
# SKIP (77) against an ASan broker: fiu-run cannot preload before ASan.
set -euo pipefail
HARNESS=$1
BROKER=$2
HERE=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "it_flaky: FAIL: $*" >&2; exit 1; }
q() { sqlite3 "$@"; }
cd "$work"
ldd "$BROKER" > ldd.out 2>/dev/null || true
if grep -q libasan ldd.out; then
  echo "SKIP: ASan build: fault steps need fiu-run, which cannot preload before ASan"
  exit 77
fi
FIX=$HERE/fixtures/flaky
export KEEL_GIT_REV=it-flaky-rev-1

# 1. 20 recorded runs on one commit: some pass, some fail (P(all alike)
# ~ 0.6^20: never here).
rc=0
"$HARNESS" run "$FIX" --broker "$BROKER" --repeat 20 -j 2 --seed 11 --db r.db --history h.db \
  > run.out 2>&1 || rc=$?
[ "$rc" = 1 ] || { tail -5 run.out; fail "20 runs: exit $rc (expected 1: some failed)"; }
grep -q "keel-harness: history h.db: 20 scenario run(s) added" run.out || fail "history not added"
pass=$(q r.db "SELECT count(*) FROM scenarios WHERE outcome = 'pass'")
notp=$(q r.db "SELECT count(*) FROM scenarios WHERE outcome != 'pass'")
[ "$pass" -gt 0 ] && [ "$notp" -gt 0 ] || fail "not flaky: $pass pass, $notp not"
[ "$(q h.db "SELECT count(*) FROM results WHERE scenario = 'flaky-journal' AND git_rev = '$KEEL_GIT_REV'")" = 20 ] \
  || fail "history rows"

# 2. flaky finds it: counts, pass rate, failing seeds, first finding.
"$HARNESS" flaky --history h.db > flaky.out
cat flaky.out
rate=$(awk -v p="$pass" 'BEGIN { printf "%.0f", 100 * p / 20 }')
grep -q "^FLAKY flaky-journal  commit $KEEL_GIT_REV: 20 runs, $pass pass, $notp not (pass rate $rate%)" flaky.out \
  || fail "flaky: the scenario's line"
for seed in $(q r.db "SELECT seed FROM scenarios WHERE outcome != 'pass' ORDER BY id LIMIT 10"); do
  grep -q "failing seeds:.* $seed (fail" flaky.out || fail "flaky: seed $seed not listed"
done
grep -q "first findings: ${notp}x step 3 (produce n1, line [0-9]*): .*Storage error" flaky.out \
  || fail "flaky: first findings"
grep -q "^flaky: 1 scenario(s) with mixed outcomes on one commit in h.db" flaky.out || fail "flaky: count"
# nothing on another commit, nothing since tomorrow; a bad date is refused
"$HARNESS" flaky --history h.db --commit other-rev | grep -q "^flaky: 0 scenario(s)" || fail "--commit"
tomorrow=$(date -u -d tomorrow +%Y-%m-%d)
"$HARNESS" flaky --history h.db --since "$tomorrow" | grep -q "^flaky: 0 scenario(s)" || fail "--since"
"$HARNESS" flaky --history h.db --since 1h | grep -q "^flaky: 1 scenario(s)" || fail "--since 1h"
rc=0; "$HARNESS" flaky --history h.db --since yesterday 2> since.err || rc=$?
[ "$rc" = 2 ] && grep -q "not a date" since.err || fail "--since yesterday: exit $rc"
rc=0; "$HARNESS" flaky --history nowhere.db 2> none.err || rc=$?
[ "$rc" = 2 ] && grep -q "no history at nowhere.db" none.err || fail "no history: exit $rc"

# 3a. The seed reaches libfiu: a failure retried with its seed pinned
# fails again, every attempt (labelled fail, never flaky).
rc=0
"$HARNESS" run "$FIX" --broker "$BROKER" --repeat 6 --deflake 2 --seed 12 --db p.db --no-history \
  > p.out 2>&1 || rc=$?
pf=$(q p.db "SELECT count(DISTINCT iteration) FROM scenarios WHERE outcome != 'pass'")
[ "$pf" -gt 0 ] || fail "seed 12: no iteration failed (6 runs, 6 in 10 fail)"
[ "$(q p.db "SELECT count(*) FROM scenarios WHERE attempt > 0 AND outcome = 'pass'")" = 0 ] \
  || fail "a pinned seed passed on retry: the seed does not reach libfiu"
[ "$(grep -c 'failed every attempt (3)' p.out)" = "$pf" ] || fail "pinned seeds: not every failure failed 3 times"
[ "$rc" = 1 ] || fail "pinned seeds: exit $rc"

# 3b. --deflake: 8 scenario runs, each failure retried (seed pinned) up to
# 12 times; libfiu unseeded (KH_TEST_FIU_UNSEEDED, test-only: a failure
# that does not follow the seed, as a timing one).  Whatever happened,
# each label must match the attempts.
rc=0
KH_ALLOW_TEST_STEPS=1 KH_TEST_FIU_UNSEEDED=1 \
"$HARNESS" run "$FIX" --broker "$BROKER" --repeat 8 --deflake 12 --seed 12 --db d.db --history h.db \
  --junit d.xml > d.out 2>&1 || rc=$?
cat d.out | grep -v '^         |'
flaky=0 failed=0
for it in $(seq 0 7); do
  rows=$(q d.db "SELECT count(*) FROM scenarios WHERE iteration = $it")
  seeds=$(q d.db "SELECT count(DISTINCT seed) FROM scenarios WHERE iteration = $it")
  [ "$seeds" = 1 ] || fail "iteration $it: the seed was not pinned"
  [ "$(q d.db "SELECT group_concat(attempt) FROM (SELECT attempt FROM scenarios WHERE iteration = $it ORDER BY id)")" \
    = "$(seq -s, 0 $((rows - 1)))" ] || fail "iteration $it: attempts not 0..$((rows - 1))"
  first=$(q d.db "SELECT outcome FROM scenarios WHERE iteration = $it AND attempt = 0")
  last=$(q d.db "SELECT outcome FROM scenarios WHERE iteration = $it ORDER BY attempt DESC LIMIT 1")
  t=flaky-journal; [ "$it" = 0 ] || t="flaky-journal#$it"
  if [ "$first" = pass ]; then
    [ "$rows" = 1 ] || fail "iteration $it passed and was retried"
  elif [ "$last" = pass ]; then
    flaky=$((flaky + 1))
    [ "$(q d.db "SELECT count(*) FROM scenarios WHERE iteration = $it AND outcome = 'pass'")" = 1 ] \
      || fail "iteration $it: retried after it passed"
    grep -q "^FLAKY    $t .* failed $((rows - 1)) attempt(s) with seed" d.out || fail "$t: no FLAKY line"
  else
    failed=$((failed + 1))
    [ "$rows" = 13 ] || fail "iteration $it failed after $rows attempts, not 13"
    grep -q "^FAIL     $t failed every attempt (13)" d.out || fail "$t: no 'failed every attempt'"
  fi
done
echo "deflake: $flaky flaky, $failed failed every attempt"
[ "$flaky" -gt 0 ] || fail "no failure was retried into a pass (8 runs, 6 in 10 fail: never here)"
grep -q "^$((8 - flaky - failed)) passed, $failed failed, $flaky flaky" d.out || fail "the summary line"
[ "$rc" = "$([ "$failed" = 0 ] && echo 0 || echo 1)" ] || fail "deflake: exit $rc with $failed failed"
# JUnit: 8 testcases; each failed attempt of a flaky one a <flakyFailure>
nfl=$(q d.db "SELECT count(*) FROM scenarios s WHERE outcome != 'pass' AND EXISTS (SELECT 1 FROM
               scenarios t WHERE t.iteration = s.iteration AND t.outcome = 'pass')")
[ "$(grep -c '<testcase ' d.xml)" = 8 ] || fail "junit: testcases"
[ "$(grep -c '<flakyFailure ' d.xml)" = "$nfl" ] || fail "junit: $nfl flakyFailure expected"
grep -q "failures=\"$failed\"" d.xml || fail "junit: failures"
# report --junit of the recording says the same
"$HARNESS" report d.db --junit d2.xml 2> /dev/null
[ "$(grep -c '<flakyFailure ' d2.xml)" = "$nfl" ] && [ "$(grep -c '<testcase ' d2.xml)" = 8 ] \
  || fail "report --junit differs from run --junit"
# the history has every attempt: the flaky list counts the retries too
[ "$(q h.db "SELECT count(*) FROM results")" = "$((20 + $(q d.db "SELECT count(*) FROM scenarios")))" ] \
  || fail "history: not every attempt"

# 4. A copy that always fails: fail, every attempt, with both in JUnit/TAP.
sed 's/probability: 0.3/probability: 1/; s/^name: flaky-journal/name: always-fails/' \
  "$FIX/flaky-journal.yaml" > always.yaml
rc=0
"$HARNESS" run always.yaml --broker "$BROKER" --deflake 2 --db a.db --no-history --junit a.xml --tap \
  > a.out 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "always-fails: exit $rc"
grep -q "^# always-fails: attempt 1 fail" a.out && grep -q "^# always-fails: attempt 2 fail" a.out \
  || fail "always-fails: TAP retry notes"
grep -q "^not ok 1 - always-fails" a.out && grep -q "^# always-fails failed every attempt (3)" a.out \
  || fail "always-fails: TAP"
grep -q "^1\.\.1$" a.out || fail "always-fails: TAP plan"
[ "$(q a.db "SELECT group_concat(attempt || outcome) FROM scenarios")" = "0fail,1fail,2fail" ] \
  || fail "always-fails: attempts"
[ "$(grep -c '<failure ' a.xml)" = 1 ] && [ "$(grep -c '<rerunFailure ' a.xml)" = 2 ] \
  || fail "always-fails: JUnit failure + 2 rerunFailure"
"$HARNESS" report a.db --tap > at.out
grep -q "^not ok 1 - always-fails .* (every attempt)" at.out || fail "report --tap"
"$HARNESS" show a.db > as.out
grep -q "retry 2 (run --deflake)" as.out || fail "show: no retry"
echo "it_flaky: OK ($pass of 20 passed; deflake: $flaky flaky, $failed failed)"
