#!/usr/bin/env bash
# it_flow.sh HARNESS BROKER - the produce options for flow control and
# storage errors fail when they should (fixtures/flow/): an ERROR the step
# does not allow, too few refusals, a refusal without the expected text, a
# background producer failing while a later step waits, receipted-but-
# dropped persistent messages without allow-dropped (no-receipted-lost);
# and f_pass, which uses them all as intended, passes with the rows the
# checks rely on (refused, receipted-droppable).
set -euo pipefail
HARNESS=$1
BROKER=$2
FIX=$(cd "$(dirname "$0")/fixtures/flow" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/tmp"
fail() { echo "it_flow: FAIL: $*" >&2; exit 1; }

rc=0
TMPDIR=$work/tmp "$HARNESS" run -j 2 --broker "$BROKER" --db "$work/run.db" "$FIX" \
  >"$work/out" 2>&1 || rc=$?
cat "$work/out"
[ "$rc" = 1 ] || fail "exit code $rc, expected 1"
q() { sqlite3 "$work/run.db" "$1"; }
expect() { # NAME OUTCOME REASON-SUBSTRING
  local got reason
  got=$(q "SELECT outcome FROM scenarios WHERE name = '$1'")
  reason=$(q "SELECT COALESCE(reason, '') FROM scenarios WHERE name = '$1'")
  [ "$got" = "$2" ] || fail "$1: outcome '$got', expected '$2' ($reason)"
  case "$reason" in *"$3"*) ;; *) fail "$1: reason '$reason' lacks '$3'" ;; esac
}
expect a_unexpected_refusal fail "ERROR frame for s2-0: Address 'full.a' is full"
expect b_too_few_refusals fail "0 refusal(s), at least 1 expected"
expect c_refusal_text fail "does not contain \"no such words\""
expect d_background_fails fail "step 3 (await n1, line 26): background produce (step 2)"
expect e_dropped_persistent fail "no-receipted-lost: 3 receipted persistent messages on /queue/drop.e"
expect f_pass pass ""
# d failed at once, not after its await's 60 s
[ "$(q "SELECT (finished_ns - started_ns) < 20000000000 FROM scenarios
        WHERE name = 'd_background_fails'")" = 1 ] || fail "d_background_fails: did not fail at once"
f=$(q "SELECT id FROM scenarios WHERE name = 'f_pass'")
[ "$(q "SELECT count(*) FROM messages WHERE scenario_id = $f AND kind = 'refused'")" = 3 ] \
  || fail "f_pass: 3 refused rows expected"
[ "$(q "SELECT count(*) FROM messages WHERE scenario_id = $f AND kind = 'receipted-droppable'")" = 3 ] \
  || fail "f_pass: 3 receipted-droppable rows expected"
[ "$(q "SELECT count(*) FROM messages WHERE scenario_id = $f AND kind = 'receipted'")" = 20 ] \
  || fail "f_pass: 20 receipted rows expected"
ls "$work/tmp" | grep -q . && fail "directories left in TMPDIR"
echo "it_flow: OK"
