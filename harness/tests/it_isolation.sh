#!/usr/bin/env bash
# it_isolation.sh HARNESS BROKER - a run over fixtures that fail, hang (in an
# await and in a consume), crash the harness child and leave nodes running
# (one paused) reports each correctly; the passing scenario after them
# passes; nothing is left behind: no process, no listening port on the
# scenarios' addresses, no directory.  Also checks the JUnit XML (xmllint
# when installed) and the TAP output.
set -euo pipefail
HARNESS=$(realpath "$1")
BROKER=$(realpath "$2")
FIX=$(cd "$(dirname "$0")/fixtures/isolation" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/tmp"
fail() { echo "it_isolation: FAIL: $*" >&2; exit 1; }

rc=0
TMPDIR=$work/tmp "$HARNESS" run -j 2 --allow-test-steps --broker "$BROKER" \
  --db "$work/run.db" --junit "$work/junit.xml" --tap "$FIX" >"$work/out.tap" 2>"$work/err" || rc=$?
cat "$work/out.tap"
[ "$rc" = 1 ] || fail "exit code $rc, expected 1"

# Outcomes, as recorded.
q() { sqlite3 "$work/run.db" "$1"; }
expect_outcome() {
  local got
  got=$(q "SELECT outcome FROM scenarios WHERE name = '$1'")
  [ "$got" = "$2" ] || fail "$1: outcome '$got', expected '$2'"
}
expect_outcome a_fail fail
expect_outcome b_hang_await timeout
expect_outcome c_hang_consume timeout
expect_outcome d_crash crash
expect_outcome e_leave_running pass
expect_outcome f_pass pass
q "SELECT reason FROM scenarios WHERE name = 'a_fail'" | grep -q 'no matching event within' \
  || fail "a_fail: reason does not name the await"
# A timeout names the hung step, its line and how far it got.
q "SELECT reason FROM scenarios WHERE name = 'b_hang_await'" \
  | grep -q 'timed out after 3 s in step 1 (await n1, line 9): await n1 never.happens: no match' \
  || fail "b_hang_await: reason does not name the hung step, its line and what it awaits"
q "SELECT reason FROM scenarios WHERE name = 'c_hang_consume'" \
  | grep -q 'in step 4 (consume n1, line 14): consume 5 of 10 from /queue/half' \
  || fail "c_hang_consume: reason does not name the hung step, its line and its progress"
q "SELECT reason FROM scenarios WHERE name = 'd_crash'" | grep -q 'signal 6' \
  || fail "d_crash: reason does not name the signal"
[ "$(q "SELECT count(*) FROM events")" -gt 10 ] || fail "events not recorded"
[ "$(q "SELECT count(*) FROM messages WHERE kind = 'receipted'")" = 20 ] || fail "messages not recorded"

# TAP: a plan, 2 ok and 4 not ok, and the closing line.
grep -q '^1\.\.6$' "$work/out.tap" || fail "TAP plan missing"
[ "$(grep -c '^ok ' "$work/out.tap")" = 2 ] || fail "TAP: expected 2 ok"
[ "$(grep -c '^not ok ' "$work/out.tap")" = 4 ] || fail "TAP: expected 4 not ok"
grep -q '2 passed, 4 failed' "$work/out.tap" || fail "closing line missing"

# JUnit: one testcase each, 1 failure, 3 errors (timeouts, crash).
if command -v xmllint >/dev/null; then
  xmllint --noout "$work/junit.xml" || fail "JUnit XML is not well-formed"
  [ "$(xmllint --xpath 'count(//testcase)' "$work/junit.xml")" = 6 ] || fail "JUnit: 6 testcases"
  [ "$(xmllint --xpath 'count(//testcase/failure)' "$work/junit.xml")" = 1 ] || fail "JUnit: 1 failure"
  [ "$(xmllint --xpath 'count(//testcase/error)' "$work/junit.xml")" = 3 ] || fail "JUnit: 3 errors"
  [ "$(xmllint --xpath 'string(//testsuites/@failures)' "$work/junit.xml")" = 1 ] || fail "JUnit: failures attribute"
else
  echo "it_isolation: xmllint not installed; structure checked with grep"
  [ "$(grep -c '<testcase ' "$work/junit.xml")" = 6 ] || fail "JUnit: 6 testcases"
  [ "$(grep -c '<failure ' "$work/junit.xml")" = 1 ] || fail "JUnit: 1 failure"
fi

# Nothing left behind.  Processes: none whose command line names our
# temporary directory (every node's data dir is below it).
if pgrep -f -- "$work/tmp" >/dev/null; then
  pgrep -a -f -- "$work/tmp" >&2
  fail "processes left behind"
fi
# Directories: the run's work root is gone.
[ -z "$(ls -A "$work/tmp")" ] || { ls -la "$work/tmp" >&2; fail "directories left behind"; }
# Ports: nothing listens on the scenarios' 127.77.<slot>.x addresses.
for addr in $(q "SELECT address FROM scenarios"); do
  slot=$(echo "$addr" | cut -d. -f3)
  hex=$(printf '%02X4D7F' "$slot")
  if awk -v h="$hex" '$4 == "0A" && substr($2, 3, 6) == h { found = 1 } END { exit !found }' /proc/net/tcp; then
    fail "a port is still listening on $addr"
  fi
done
# SIGTERM to keel-harness run (a CI job cancelled): the running scenario
# and its node are killed at once and recorded as interrupted, no later
# scenario starts, nothing is left behind, the run is not added to the
# history, exit 1.  -j1 over a (passes), b (hangs), c: the signal goes
# once a's TAP line is out (b started in the same turn of the loop).
mkdir "$work/int" "$work/int/sc" "$work/tmp2"
cd "$work/int"
ok='nodes:\n  - name: n1\nsteps:\n  - start: {node: n1}\n  - await: {node: n1, type: state, where: [state == LIVE], within: 20}\n  - stop: {node: n1}\n'
printf "name: a_pass\n$ok" > sc/a_pass.yaml
printf "name: c_never\n$ok" > sc/c_never.yaml
printf 'name: b_hang\ntimeout: 900\nnodes:\n  - name: n1\nsteps:\n  - start: {node: n1}\n  - await: {node: n1, type: never.happens, within: 800}\n' > sc/b_hang.yaml
mkfifo out.fifo
TMPDIR=$work/tmp2 "$HARNESS" run -j 1 --tap --broker "$BROKER" --db int.db --history hist.db sc \
  > out.fifo 2> int.err &
hpid=$!
exec 3< out.fifo
got_ok=0
while IFS= read -r -t 60 line <&3; do
  echo "$line" >> int.out
  case "$line" in "ok 1 - a_pass"*) got_ok=1; break ;; esac
done
[ "$got_ok" = 1 ] || { cat int.out int.err; fail "interrupt: a_pass never passed"; }
kill -TERM "$hpid"
# the rest of its output, up to its exit (a minute at most)
while IFS= read -r -t 60 line <&3; do echo "$line" >> int.out; done
exec 3<&-
rc=0; wait "$hpid" || rc=$?
[ "$rc" = 1 ] || { cat int.out int.err; fail "interrupt: exit $rc, expected 1"; }
grep -q 'keel-harness: SIGTERM: ending 1 running scenario(s)' int.err \
  || { cat int.err; fail "interrupt: no note on stderr"; }
grep -q 'keel-harness: interrupted: the run is incomplete' int.out \
  || { cat int.out; fail "interrupt: no closing note"; }
qi() { sqlite3 int.db "$1"; }
[ "$(qi "SELECT group_concat(name || ':' || outcome, ' ') FROM scenarios ORDER BY id")" = "a_pass:pass b_hang:fail" ] \
  || fail "interrupt: recorded $(qi "SELECT group_concat(name || ':' || outcome, ' ') FROM scenarios")"
qi "SELECT reason FROM scenarios WHERE name = 'b_hang'" | grep -q '^interrupted: keel-harness got SIGTERM' \
  || fail "interrupt: reason $(qi "SELECT reason FROM scenarios WHERE name = 'b_hang'")"
[ ! -e hist.db ] || [ "$(sqlite3 hist.db "SELECT count(*) FROM results" 2>/dev/null || echo 0)" = 0 ] \
  || fail "interrupt: the interrupted run went into the history"
if pgrep -f -- "$work/tmp2" >/dev/null; then
  pgrep -a -f -- "$work/tmp2" >&2
  fail "interrupt: processes left behind"
fi
[ -z "$(ls -A "$work/tmp2")" ] || { ls -la "$work/tmp2" >&2; fail "interrupt: directories left behind"; }
echo "it_isolation: OK"
