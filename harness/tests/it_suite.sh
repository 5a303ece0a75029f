#!/usr/bin/env bash
# it_suite.sh HARNESS BROKER SCENARIOS - the shipped suite lints, runs green
# (recording SQLite, JUnit, TAP), and replays without divergence; lint and
# run refuse a broken file with exit 2 and file:line: key.
set -euo pipefail
HARNESS=$1
BROKER=$2
SCEN=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "it_suite: FAIL: $*" >&2; exit 1; }

"$HARNESS" lint "$SCEN"

# MODE (4th argument): `nofault` (default) runs every scenario without
# fault steps and checks the runner's outputs; `faults` runs the scenarios
# with fault steps alone (fault, clock, disk, a node's disk-size, or a
# chaos step with clock or disk faults: uses_faults.sh).
# fiu-run preloads libfiu and clock steps libfaketime, and an ASan build
# insists on coming first in the library list, so against such a broker
# `faults` reports SKIP (77) with the reason -- a separate CTest entry,
# never a silent partial pass; likewise when not root (disk-size mounts a
# tmpfs).
MODE=${4:-nofault}
# shellcheck source=uses_faults.sh
. "$(dirname "$0")/uses_faults.sh"
mkdir "$work/scenarios"
for f in "$SCEN"/*.yaml; do
  has_fault=0
  kh_uses_faults "$f" && has_fault=1
  if [ "$MODE" = faults ] && [ "$has_fault" = 1 ]; then cp "$f" "$work/scenarios/"; fi
  if [ "$MODE" != faults ] && [ "$has_fault" = 0 ]; then cp "$f" "$work/scenarios/"; fi
done
SCEN=$work/scenarios
if [ "$MODE" = faults ]; then
  # (into a file: `ldd | grep -q` under pipefail fails when grep exits first)
  ldd "$BROKER" > "$work/ldd.out" 2>/dev/null || true
  if grep -q libasan "$work/ldd.out"; then
    echo "SKIP: ASan build: fault steps need fiu-run (and clock steps libfaketime), which cannot preload before ASan"
    exit 77
  fi
  if [ "$(id -u)" != 0 ] && grep -lq '^ *disk-size:' "$SCEN"/*.yaml; then
    echo "SKIP: not root: a node's disk-size mounts a tmpfs (run as root)"
    exit 77
  fi
  n=$(ls "$SCEN"/*.yaml | wc -l)
  [ "$n" -gt 0 ] || fail "no scenario with fault steps found"
  cd "$work"
  "$HARNESS" run -j 2 --broker "$BROKER" --db faults.db "$SCEN" | tee out.txt
  grep -q "^$n passed, 0 failed$" out.txt || fail "fault scenarios"
  echo "it_suite: $n fault scenario(s) passed"
  exit 0
fi

# Default recording place: runs/<timestamp>.db with runs/latest.db.
cd "$work"
"$HARNESS" run -j 2 --broker "$BROKER" --junit junit.xml --seed 42 "$SCEN" | tee out.txt
[ -L runs/latest.db ] || fail "runs/latest.db is not a link"
n=$(ls "$SCEN"/*.yaml | wc -l)
[ "$(sqlite3 runs/latest.db "SELECT count(*) FROM scenarios WHERE outcome = 'pass'")" = "$n" ] \
  || fail "not every scenario recorded as pass"
[ "$(sqlite3 runs/latest.db "SELECT seed FROM runs")" = 42 ] || fail "seed not recorded"
[ "$(sqlite3 runs/latest.db "PRAGMA journal_mode")" = wal ] || fail "not WAL"
grep -q "^$n passed, 0 failed$" out.txt || fail "closing line"
if command -v xmllint >/dev/null; then
  xmllint --noout junit.xml
  [ "$(xmllint --xpath 'count(//testcase)' junit.xml)" = "$n" ] || fail "JUnit testcases"
  [ "$(xmllint --xpath 'count(//failure|//error)' junit.xml)" = 0 ] || fail "JUnit failures"
fi

# TAP, a filter and a shard.
"$HARNESS" run --broker "$BROKER" --tap --db tap.db --filter 'life*' "$SCEN" > out.tap
grep -q '^ok 1 - lifecycle' out.tap || fail "TAP ok line"
grep -q '^1\.\.1$' out.tap || fail "TAP plan"
"$HARNESS" run --broker "$BROKER" --db shard.db --shard 1/$n "$SCEN" > /dev/null
[ "$(sqlite3 shard.db "SELECT count(*) FROM scenarios")" = 1 ] || fail "--shard 1/$n ran more than one"
# An empty shard (more shards than scenarios, as CI matrices make): a
# note, exit 0, an empty JUnit file, nothing recorded.
m=$((n + 1))
rc=0; "$HARNESS" run --broker "$BROKER" --db empty.db --junit empty.xml --shard $m/$m "$SCEN" \
  > empty.out 2> empty.err || rc=$?
[ "$rc" = 0 ] || { cat empty.out empty.err; fail "an empty shard exits $rc"; }
grep -q "^keel-harness: shard $m/$m has no scenario ($n selected for $m shards); nothing to run$" empty.out \
  || fail "an empty shard: no note"
[ ! -s empty.err ] || { cat empty.err; fail "an empty shard: something on stderr"; }
[ ! -e empty.db ] || fail "an empty shard made a recording"
grep -q 'tests="0"' empty.xml || fail "an empty shard: no empty JUnit file"
"$HARNESS" run --broker "$BROKER" --tap --db empty2.db --shard $m/$m "$SCEN" > empty.tap
grep -q '^1\.\.0 # SKIP' empty.tap || fail "an empty shard: no TAP plan"

# show --help: the usage on stdout, exit 0, nothing on stderr.
rc=0; "$HARNESS" show --help > help.out 2> help.err || rc=$?
[ "$rc" = 0 ] && [ ! -s help.err ] && grep -q '^usage: keel-harness show' help.out \
  || { cat help.out help.err; fail "show --help: exit $rc"; }

# Replay: the same, scenario by scenario.
"$HARNESS" replay runs/latest.db --broker "$BROKER" --scenario persistence | tee replay.txt
grep -q '^  same: ' replay.txt || fail "replay did not compare"

# Broken files: exit 2, message names file, line and key.
printf 'nodes:\n  - name: n1\nsteps:\n  - start: {node: n1, colour: red}\n' > bad.yaml
rc=0; "$HARNESS" lint bad.yaml 2> lint.err || rc=$?
[ "$rc" = 2 ] || fail "lint exit $rc"
grep -q 'bad.yaml:4: steps\[0\].start.colour: unknown key' lint.err || { cat lint.err; fail "lint message"; }
rc=0; "$HARNESS" run --broker "$BROKER" --db bad.db bad.yaml 2> run.err || rc=$?
[ "$rc" = 2 ] || fail "run of a broken file: exit $rc"
# Every error of a file, not only the first; a warning does not fail.
printf 'nodes:\n  - name: n1\nsteps:\n  - start: {node: n1, colour: red}\n  - await: {node: n1, type: x, within: soon}\n  - stop: {node: n2}\n' > bad2.yaml
rc=0; "$HARNESS" lint bad2.yaml 2> lint2.err || rc=$?
[ "$rc" = 2 ] || fail "lint of two errors: exit $rc"
grep -q 'bad2.yaml:4: steps\[0\].start.colour: unknown key' lint2.err \
  && grep -q 'bad2.yaml:5: steps\[1\].await.within: invalid number "soon"' lint2.err \
  || { cat lint2.err; fail "lint did not list every schema error"; }
printf 'timeout: 2\nnodes:\n  - name: n1\nsteps:\n  - start: {node: n1}\n  - await: {node: n1, type: state, within: 5}\n' > warn.yaml
rc=0; "$HARNESS" lint warn.yaml 2> warn.err || rc=$?
[ "$rc" = 0 ] || fail "a warning failed lint"
grep -q "warn.yaml:6: steps\[1\].await.within: warning: within 5 s is longer than the scenario's timeout (2 s)" warn.err \
  || { cat warn.err; fail "no warning on within > timeout"; }

# A node whose graceful stop fails: the step's reason carries its error
# lines (the broker's log at level error, a sanitizer's report), so a CI
# log says why without the recording.
cat > failstop.sh <<EOF
#!/bin/sh
"$BROKER" "\$@" &
pid=\$!
trap 'kill -TERM \$pid' TERM
wait \$pid
wait \$pid
echo "00:00:00.000 error n1: something went wrong at the stop" >&2
echo "SUMMARY: AddressSanitizer: 303 byte(s) leaked in 5 allocation(s)." >&2
exit 1
EOF
chmod +x failstop.sh
printf 'nodes:\n  - name: n1\nsteps:\n  - start: {node: n1}\n  - await: {node: n1, type: state, where: [state == LIVE], within: 10}\n  - stop: {node: n1}\n' > failstop.yaml
rc=0; "$HARNESS" run --broker "$PWD/failstop.sh" --db failstop.db failstop.yaml > failstop.out 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat failstop.out; fail "a failed stop: exit $rc"; }
reason=$(sqlite3 failstop.db "SELECT reason FROM scenarios")
case "$reason" in
  *"graceful stop ended with exit code 1; its error lines (2):"*"error n1: something went wrong at the stop"*"SUMMARY: AddressSanitizer: 303 byte(s)"*) ;;
  *) cat failstop.out; fail "a failed stop's reason lacks the node's error lines: $reason" ;;
esac
# A node that refuses to start while a step awaits it: the reason
# carries the broker's own message (its "keel-broker: ..." line).
printf '#!/bin/sh\necho "keel-broker: data-dir /nowhere: Permission denied" >&2\nexit 2\n' > refuse.sh
chmod +x refuse.sh
printf 'nodes:\n  - name: n1\nsteps:\n  - start: {node: n1}\n  - await: {node: n1, type: state, where: [state == LIVE], within: 10}\n' > refuse.yaml
rc=0; "$HARNESS" run --broker "$PWD/refuse.sh" --db refuse.db refuse.yaml > refuse.out 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat refuse.out; fail "a node refusing to start: exit $rc"; }
reason=$(sqlite3 refuse.db "SELECT reason FROM scenarios")
case "$reason" in
  *"node went down (exit code 2) before a match"*"its error lines (1):"*"keel-broker: data-dir /nowhere: Permission denied"*) ;;
  *) cat refuse.out; fail "a node refusing to start: the reason lacks its message: $reason" ;;
esac
echo "it_suite: OK"
