#!/usr/bin/env bash
# it_shards.sh HARNESS BROKER SRC KEEL_LEAKS - the CI definitions' commands, run here:
# ci/shards.sh runs the suite in 3 shards as 3 processes at once, merges
# them and reports; the merged recording must hold what an unsharded run
# of the same scenarios and seed holds (same scenario runs, same seeds,
# same outcomes) with each run's origin, and read like any recording
# (show, report --junit/--tap and HTML, keel-leaks scan, replay).  Twice:
# without a history (first CI run), then balanced by the history the
# first merge wrote.  Also: merge's refusals, a table it does not know
# carried over keyed by scenario, and the CI files call these commands.
#
# KH_SHARDS_FILTER: which scenarios (default '[blfmpr]*': the bridge-,
# flow-, lifecycle, manage, persistence and roundtrip scenarios, about 4 s
# of work; '*' runs the whole suite).
set -euo pipefail
HARNESS=$1
BROKER=$2
SRC=$3
LEAKS=$4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "it_shards: FAIL: $*" >&2; exit 1; }
q() { sqlite3 "$@"; }

export KH=$HARNESS KH_BROKER=$BROKER OUT=$work/out HISTORY=$work/history.db
export KH_SEED=4242 KH_FILTER=${KH_SHARDS_FILTER:-'[blfmpr]*'} KH_JOBS=1
export KH_SCENARIOS=$SRC/scenarios
SHARDS=$SRC/ci/shards.sh
cd "$work"

# The reference: one unsharded run of the same scenarios and seed.
"$HARNESS" run "$KH_SCENARIOS" -j 2 --filter "$KH_FILTER" --seed "$KH_SEED" --broker "$BROKER" \
  --no-history --db whole.db > whole.out 2>&1 || { cat whole.out; fail "the unsharded run failed"; }
n=$(q whole.db "SELECT count(*) FROM scenarios")
[ "$n" -ge 3 ] || fail "only $n scenarios selected by $KH_FILTER"
q whole.db "SELECT name, iteration, seed, outcome FROM scenarios ORDER BY name, iteration" > whole.txt

# One round: 3 shard processes at once, then the merge; checks.
round() {
  local r=$1 known=$2 pids=() k
  for k in 1 2 3; do
    bash "$SHARDS" shard "$k" 3 > "shard-$r-$k.log" 2>&1 &
    pids+=($!)
  done
  for k in 1 2 3; do
    wait "${pids[$((k - 1))]}" || { cat "shard-$r-$k.log"; fail "round $r: shard $k/3 failed"; }
  done
  # every shard computed the same plan from the same history
  grep -h -o 'plan [0-9a-f]*' shard-"$r"-*.log | sort -u > plans.txt
  [ "$(wc -l < plans.txt)" = 1 ] || { cat shard-"$r"-*.log; fail "round $r: shards disagree on the plan"; }
  for k in 1 2 3; do
    grep -q "shard $k/3 balanced by $HISTORY ($known of $n scenarios known)" "shard-$r-$k.log" \
      || { cat "shard-$r-$k.log"; fail "round $r: shard $k: not balanced from $known known"; }
    grep -q -- "+ $HARNESS run .* --shard $k/3 --balance history" "shard-$r-$k.log" \
      || fail "round $r: shard $k: the command is not printed"
  done
  bash "$SHARDS" merge > "merge-$r.log" 2>&1 || { cat "merge-$r.log"; fail "round $r: merge failed"; }
  cat "merge-$r.log"
  local m=$OUT/merged.db
  # same scenario runs, seeds and outcomes as the unsharded run
  q "$m" "SELECT name, iteration, seed, outcome FROM scenarios ORDER BY name, iteration" > merged.txt
  diff whole.txt merged.txt || fail "round $r: the merged recording differs from the unsharded run"
  # each run with its origin: shard, host, source file, a uid of its own
  [ "$(q "$m" "SELECT group_concat(shard, ' ') FROM (SELECT shard FROM runs ORDER BY shard)")" = "1/3 2/3 3/3" ] \
    || fail "round $r: runs.shard"
  [ "$(q "$m" "SELECT count(DISTINCT uid) FROM runs WHERE host != '' AND source LIKE '%/shard-_.db'
                 AND source_run_id = 1")" = 3 ] || fail "round $r: runs' origin"
  # every row of every shard, with its scenario
  local t sum
  for t in steps events logs messages nodes findings leaks; do
    sum=0
    for k in 1 2 3; do sum=$((sum + $(q "$OUT/shard-$k.db" "SELECT count(*) FROM $t"))); done
    [ "$(q "$m" "SELECT count(*) FROM $t")" = "$sum" ] || fail "round $r: $t: not every row merged"
  done
  [ "$(q "$m" "SELECT count(*) FROM events e JOIN scenarios s ON s.id = e.scenario_id
                 JOIN runs u ON u.id = s.run_id")" = "$(q "$m" "SELECT count(*) FROM events")" ] \
    || fail "round $r: events whose scenario or run is lost"
  for k in 1 2 3; do
    # a scenario's events in the merge are its events in its shard
    q "$OUT/shard-$k.db" "SELECT s.name, e.node, e.seq, e.type FROM events e JOIN scenarios s
                          ON s.id = e.scenario_id ORDER BY e.id" > "ev-$k.txt"
    q "$m" "SELECT s.name, e.node, e.seq, e.type FROM events e JOIN scenarios s ON s.id = e.scenario_id
            JOIN runs u ON u.id = s.run_id WHERE u.shard = '$k/3' ORDER BY e.id" > "evm-$k.txt"
    cmp -s "ev-$k.txt" "evm-$k.txt" || fail "round $r: shard $k's events differ in the merge"
  done
  # the reports of the merged file
  grep -q "<testsuites name=\"keel-harness\" tests=\"$n\" failures=\"0\" errors=\"0\"" "$OUT/junit.xml" \
    || { head -3 "$OUT/junit.xml"; fail "round $r: junit.xml"; }
  [ "$(grep -c '<testcase ' "$OUT/junit.xml")" = "$n" ] || fail "round $r: junit testcases"
  grep -q '<html' "$OUT/report.html" || fail "round $r: report.html"
  grep -q "history $HISTORY: $OUT/merged.db: $n scenario run(s) added" "merge-$r.log" \
    || fail "round $r: the history did not get the merged run"
}

# Round 1: no history yet (the first CI run): every shard plans from
# defaults, all the same; the merge writes the history.
round 1 0
[ "$(q "$HISTORY" "SELECT count(*) FROM results")" = "$n" ] || fail "history rows"
# Round 2: balanced by the durations the first merge recorded.
round 2 "$n"
[ "$(q "$HISTORY" "SELECT count(DISTINCT run_uid) FROM results")" = 6 ] || fail "history runs"
"$HARNESS" history add --history "$HISTORY" "$OUT/merged.db" > again.out
grep -q ": 0 scenario run(s) added" again.out || fail "history add twice added rows"

M=$OUT/merged.db
# show, report --tap, keel-leaks scan, replay on the merged file
"$HARNESS" show "$M" > show.out
[ "$(grep -c '^== scenario ' show.out)" = "$n" ] || fail "show: not every scenario"
grep -q '   origin host .*, shard 2/3, merged from .*shard-2.db (run 1)' show.out || fail "show: no origin"
"$HARNESS" report "$M" --tap > tap.out
grep -q "^1\.\.$n\$" tap.out || fail "report --tap: plan"
[ "$(grep -c '^ok ' tap.out)" = "$n" ] || fail "report --tap: not all ok"
"$LEAKS" scan "$M" > leaks.out || { cat leaks.out; fail "keel-leaks scan of the merged file"; }
one=$(q "$M" "SELECT name FROM scenarios ORDER BY name LIMIT 1")
"$HARNESS" replay "$M" --scenario "$one" --broker "$BROKER" --db replay.db > replay.out 2>&1 \
  || { cat replay.out; fail "replay of $one from the merged file"; }
grep -q "same" replay.out || fail "replay: not the same"

# A table merge does not know (another part's, keyed by scenario) comes
# along, and a leak of a shard is scanned in the merge.
cp "$OUT/shard-1.db" s1.db
cp "$OUT/shard-2.db" s2.db
q s1.db "CREATE TABLE chaos_schedule (id INTEGER PRIMARY KEY,
           scenario_id INTEGER NOT NULL REFERENCES scenarios(id), at_ms INTEGER, fault TEXT);
         INSERT INTO chaos_schedule(scenario_id, at_ms, fault)
           SELECT id, 100 * id, 'kill ' || name FROM scenarios;"
s2=$(q s2.db "SELECT name FROM scenarios ORDER BY id LIMIT 1")
q s2.db "INSERT INTO leaks(scenario_id, node, kind, name, detail) SELECT id, 'n1', 'THREAD', 'kh-merged',
           'LEAKED THREAD name=kh-merged tid=7 created-at=x.c:1 owner=it test=$s2' FROM scenarios
           WHERE name = '$s2'"
"$HARNESS" merge x.db s2.db s1.db > x.out || { cat x.out; fail "merge with a table of its own"; }
grep -q "table chaos_schedule (not in this keel-harness's schema) carried over" x.out \
  || fail "merge: no note of the carried table"
[ "$(q x.db "SELECT count(*) FROM chaos_schedule c JOIN scenarios s ON s.id = c.scenario_id
               WHERE c.fault = 'kill ' || s.name")" = "$(q s1.db "SELECT count(*) FROM scenarios")" ] \
  || fail "merge: chaos_schedule rows not keyed to their scenarios"
rc=0; "$LEAKS" scan x.db > xl.out || rc=$?
[ "$rc" = 1 ] && grep -q "kh-merged" xl.out && grep -q "$s2" xl.out || { cat xl.out; fail "keel-leaks scan: the merged leak"; }

# Refusals: a missing input, not a recording, the output as an input, a
# recording merged in part; nothing half written.
rc=0; "$HARNESS" merge y.db nowhere.db 2> e1.err || rc=$?
[ "$rc" = 2 ] && grep -q "nowhere.db: No such file" e1.err || fail "merge: missing input"
q notrec.db "CREATE TABLE t(x)"
rc=0; "$HARNESS" merge y.db notrec.db 2> e2.err || rc=$?
[ "$rc" = 2 ] && grep -q "notrec.db: not a keel-harness recording" e2.err || fail "merge: not a recording"
[ ! -e y.db ] || fail "merge: a failed merge left y.db"
rc=0; "$HARNESS" merge x.db x.db 2> e3.err || rc=$?
[ "$rc" = 2 ] && grep -q "both the output and an input" e3.err || fail "merge: OUT as IN"
"$HARNESS" merge z.db s1.db > /dev/null
rc=0; "$HARNESS" merge z.db x.db 2> e4.err || rc=$?
[ "$rc" = 2 ] && grep -q "1 of its 2 runs are already in the output" e4.err || fail "merge: partial"
out=$("$HARNESS" merge z.db s1.db)
echo "$out" | grep -q "already in z.db: skipped" || fail "merge: a run merged twice"

# The CI definitions run these commands.
for f in "$SRC/ci/github-actions.yml" "$SRC/ci/gitlab-ci.yml"; do
  grep -q 'bash ci/shards.sh shard ' "$f" || fail "$f does not run ci/shards.sh shard"
  grep -q 'bash ci/shards.sh merge' "$f" || fail "$f does not run ci/shards.sh merge"
  if python3 -c 'import yaml' 2>/dev/null; then
    python3 -c 'import sys, yaml; yaml.safe_load(open(sys.argv[1]))' "$f" || fail "$f: not YAML"
  fi
done
echo "it_shards: OK ($n scenarios)"
