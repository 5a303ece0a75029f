#!/usr/bin/env bash
# it_leaks.sh HARNESS BROKER [KEEL_LEAKS] - leak checking in keel-harness:
# 1. a node leaking a thread (KEEL_TEST_LEAK_THREAD=1 through the node's
#    `env:`) fails its scenario naming the thread; the leak is in the
#    leaks table (once, with test=<scenario>), a no-leaks finding, and in
#    `show` and `report`;
# 2. processes left in the scenario's process group after the child ended
#    (one listening on the scenario's address) are recorded as CHILD and
#    LISTEN leaks and fail the scenario, and the runner still kills them.
# 3. the scenario child's own leaked thread and fd (KH_TEST_CHILD_LEAK)
#    fail it (exit 4, "harness child leaked: THREAD name=kh-leaktest ...")
#    and are in leaks and in what keel-leaks scan finds in the run's
#    stdout; a clean scenario of the same run passes.
set -euo pipefail
HARNESS=$1
BROKER=$2
KEEL_LEAKS=${3:-$(dirname "$HARNESS")/../leakcheck/keel-leaks}
HERE=$(cd "$(dirname "$0")" && pwd)
FIX=$HERE/fixtures/leaks
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "it_leaks: FAIL: $*" >&2; exit 1; }
q() { sqlite3 "$work/$1" "$2"; }

# 1. A leaked thread.
rc=0
"$HARNESS" run --broker "$BROKER" --db "$work/t.db" "$FIX/leak_thread.yaml" >"$work/t.out" 2>&1 || rc=$?
cat "$work/t.out"
[ "$rc" = 1 ] || fail "leak_thread: exit $rc, expected 1"
[ "$(q t.db "SELECT outcome FROM scenarios")" = fail ] || fail "leak_thread: not recorded as fail"
q t.db "SELECT reason FROM scenarios" | grep -q 'stop n1: the node leaked (exit code 3): THREAD name=keel-leaktest' \
  || fail "leak_thread: reason does not name the leaked thread"
[ "$(q t.db "SELECT count(*) FROM leaks WHERE kind = 'THREAD' AND node = 'n1' AND name = 'keel-leaktest'")" = 1 ] \
  || fail "leak_thread: not exactly one THREAD row in leaks"
q t.db "SELECT detail FROM leaks" | grep -q '^LEAKED THREAD name=keel-leaktest tid=[0-9]* .*owner=broker-test test=leak_thread stack=[^ ]*leak_on_purpose@broker/cmd/keel-broker\.c:[0-9]*;[^ ]* created-stack=main@broker/cmd/keel-broker\.c:[0-9]*;[^ ]*$' \
  || fail "leak_thread: leak detail is not the report line with test=leak_thread and both stacks"
grep -q '^         | \[ *[0-9.]* s\] node n1 leaked: LEAKED THREAD name=keel-leaktest tid=[0-9]* .* stack=' "$work/t.out" \
  || fail "leak_thread: the console's leak line is not the contract line"
[ "$(q t.db "SELECT count(*) FROM findings WHERE check_name = 'no-leaks' AND severity = 'error'")" = 1 ] \
  || fail "leak_thread: no no-leaks finding"
"$HARNESS" show "$work/t.db" >"$work/show.txt"
grep -q '^   THREAD n1 keel-leaktest: LEAKED THREAD' "$work/show.txt" || { cat "$work/show.txt"; fail "show: leak not listed"; }
grep -q 'ERROR no-leaks: n1 leaked THREAD keel-leaktest' "$work/show.txt" || fail "show: finding not listed"
"$HARNESS" report "$work/t.db" -o "$work/r.html"
grep -q 'keel-leaktest' "$work/r.html" || fail "report: leak not listed"

# 2. A process left behind in the scenario's process group.
mark=$work/orphan-mark
touch "$mark"
rc=0
KH_REAL_BROKER=$BROKER KH_ORPHAN_MARK=$mark \
  "$HARNESS" run --broker "$HERE/orphan-broker.sh" --db "$work/o.db" "$FIX/orphan.yaml" >"$work/o.out" 2>&1 || rc=$?
cat "$work/o.out"
[ "$rc" = 1 ] || fail "orphan: exit $rc, expected 1"
[ "$(q o.db "SELECT count(*) FROM steps WHERE outcome = 'ok'")" = 3 ] || fail "orphan: steps did not all pass"
[ "$(q o.db "SELECT count(*) FROM leaks WHERE kind = 'CHILD' AND node = 'keel-harness' AND name = 'tail'")" = 1 ] \
  || fail "orphan: the process left behind is not in leaks"
[ "$(q o.db "SELECT count(*) FROM leaks WHERE kind = 'CHILD' AND node = 'keel-harness' AND name = 'python3'")" = 1 ] \
  || fail "orphan: the listening process left behind is not in leaks"
q o.db "SELECT detail FROM leaks WHERE kind = 'LISTEN'" | grep -q '^LEAKED LISTEN fd=[0-9]* proto=tcp local=127\.77\.[0-9]*\.1:61614 test=orphan$' \
  || fail "orphan: the listening socket left behind is not in leaks"
q o.db "SELECT reason FROM scenarios" | grep -q 'no-leaks: keel-harness leaked CHILD tail' \
  || fail "orphan: reason does not name the leak"
if pgrep -f "$mark" >/dev/null; then fail "orphan: a process survived the run"; fi

# 3. The scenario child's own leaks: with KH_TEST_CHILD_LEAK=child_leak and
#    test steps allowed, child_leak's child leaks a thread and an fd; its
#    own check prints the report, it exits 4, the runner fails it naming
#    the thread and records both; child_clean (same run, in parallel)
#    passes with no leak; keel-leaks scan finds the leak in the run's
#    stdout.  Without --allow-test-steps the variable does nothing.
rc=0
KH_TEST_CHILD_LEAK=child_leak "$HARNESS" run -j2 --allow-test-steps --broker "$BROKER" --db "$work/c.db" \
  "$FIX/child_leak.yaml" "$FIX/child_clean.yaml" >"$work/c.out" 2>&1 || rc=$?
cat "$work/c.out"
[ "$rc" = 1 ] || fail "child_leak: exit $rc, expected 1"
[ "$(q c.db "SELECT outcome FROM scenarios WHERE name = 'child_leak'")" = fail ] || fail "child_leak: not recorded as fail"
q c.db "SELECT reason FROM scenarios WHERE name = 'child_leak'" \
  | grep -q '^harness child leaked: THREAD name=kh-leaktest tid=[0-9]* state=. created-at=test_leak (harness/src/child\.c:[0-9]*) owner=keel-harness-test test=child_leak stack=.* (and 1 more)$' \
  || fail "child_leak: reason does not name the leaked thread"
[ "$(q c.db "SELECT count(*) FROM steps s JOIN scenarios c ON c.id = s.scenario_id WHERE c.name = 'child_leak' AND s.outcome = 'ok'")" = 5 ] \
  || fail "child_leak: its steps did not all pass"
[ "$(q c.db "SELECT count(*) FROM leaks l JOIN scenarios c ON c.id = l.scenario_id WHERE c.name = 'child_leak' AND l.node = 'keel-harness' AND l.kind = 'THREAD' AND l.name = 'kh-leaktest'")" = 1 ] \
  || fail "child_leak: the thread is not in leaks"
q c.db "SELECT l.detail FROM leaks l JOIN scenarios c ON c.id = l.scenario_id WHERE c.name = 'child_leak' AND l.kind = 'FD' AND l.node = 'keel-harness' AND l.name LIKE '%/kh-test-child-leak'" \
  | grep -q '^LEAKED FD fd=[0-9]* target=/.*/kh-test-child-leak test=child_leak$' || fail "child_leak: the fd is not in leaks"
[ "$(q c.db "SELECT count(*) FROM leaks l JOIN scenarios c ON c.id = l.scenario_id WHERE c.name = 'child_leak'")" = 2 ] \
  || fail "child_leak: expected exactly 2 leaks"
[ "$(q c.db "SELECT count(*) FROM findings f JOIN scenarios c ON c.id = f.scenario_id WHERE c.name = 'child_leak' AND f.check_name = 'no-leaks' AND f.severity = 'error'")" = 2 ] \
  || fail "child_leak: no no-leaks findings"
[ "$(q c.db "SELECT outcome FROM scenarios WHERE name = 'child_clean'")" = pass ] || fail "child_clean: did not pass"
[ "$(q c.db "SELECT count(*) FROM leaks l JOIN scenarios c ON c.id = l.scenario_id WHERE c.name = 'child_clean'")" = 0 ] \
  || fail "child_clean: leaks recorded"
grep -q '==== END KEEL LEAK REPORT (2 leaks) ====' "$work/c.out" || fail "child_leak: no report block in the run's output"
rc=0
"$KEEL_LEAKS" scan --json "$work/c.out" >"$work/scan.json" || rc=$?
cat "$work/scan.json"; echo
[ "$rc" = 1 ] || fail "keel-leaks scan: exit $rc, expected 1"
python3 - "$work/scan.json" <<'PY' || fail "keel-leaks scan: the child's leaks are not found"
import json, sys
d = json.load(open(sys.argv[1]))
g = {(x["kind"], x["name"]): x for x in d["groups"]}
t = g[("THREAD", "kh-leaktest")]
assert t["count"] == 1 and t["first_test"] == "child_leak", t
assert t["created_at"].startswith("test_leak (harness/src/child.c:"), t
assert [x for x in d["groups"] if x["kind"] == "FD" and x["name"].endswith("/kh-test-child-leak")], d
assert d["leaks"] == 2, d
PY
rc=0
KH_TEST_CHILD_LEAK=child_leak "$HARNESS" run --broker "$BROKER" --db "$work/n.db" "$FIX/child_leak.yaml" >"$work/n.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || { cat "$work/n.out"; fail "child_leak without --allow-test-steps: exit $rc, expected 0"; }
[ "$(q n.db "SELECT count(*) FROM leaks")" = 0 ] || fail "child_leak without --allow-test-steps: leaks recorded"
echo "it_leaks: OK"
