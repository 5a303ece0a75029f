#!/usr/bin/env bash
# it_leaks.sh HARNESS BROKER - leak checking in keel-harness:
# 1. a node leaking a thread (KEEL_TEST_LEAK_THREAD=1 through the node's
#    `env:`) fails its scenario naming the thread; the leak is in the
#    leaks table (once, with test=<scenario>), a no-leaks finding, and in
#    `show` and `report`;
# 2. processes left in the scenario's process group after the child ended
#    (one listening on the scenario's address) are recorded as CHILD and
#    LISTEN leaks and fail the scenario, and the runner still kills them.
set -euo pipefail
HARNESS=$1
BROKER=$2
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
q t.db "SELECT detail FROM leaks" | grep -q '^LEAKED THREAD name=keel-leaktest tid=[0-9]* .*test=leak_thread$' \
  || fail "leak_thread: leak detail is not the report line with test=leak_thread"
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
echo "it_leaks: OK"
