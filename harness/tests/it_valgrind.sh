#!/usr/bin/env bash
# it_valgrind.sh HARNESS BROKER KEEL_LEAKS SCENARIOS CORPUS - `run --valgrind`:
# 1. lifecycle under memcheck passes, and each node process's XML was read
#    (a log note per process, no finding);
# 2. Valgrind errors fail the scenario: with a keel-leaks that reads a
#    corpus XML holding errors instead (memcheck-a.xml: InvalidRead,
#    UninitCondition, definite leaks), the scenario fails with
#    `valgrind` findings naming kind, node and stack.
set -euo pipefail
HARNESS=$1
BROKER=$2
KL=$3
SCEN=$4
CORPUS=$5
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "it_valgrind: FAIL: $*" >&2; exit 1; }
q() { sqlite3 "$work/$1" "$2"; }

"$HARNESS" run --valgrind --broker "$BROKER" --keel-leaks "$KL" --db "$work/v.db" \
  "$SCEN/lifecycle.yaml" | tee "$work/v.out"
[ "$(q v.db "SELECT outcome FROM scenarios")" = pass ] || fail "lifecycle under valgrind did not pass"
q v.db "SELECT options FROM runs" | grep -q '"valgrind": *"memcheck"' || fail "valgrind not in the run's options"
[ "$(q v.db "SELECT count(*) FROM logs WHERE line LIKE 'keel-harness: valgrind memcheck: n1 pid % 0 error(s)%'")" = 1 ] \
  || fail "the node's Valgrind XML was not read"
[ "$(q v.db "SELECT count(*) FROM findings")" = 0 ] || fail "findings on a clean run"

# keel-leaks reading a corpus file with errors in place of the node's XML.
cat >"$work/kl.sh" <<EOS
#!/usr/bin/env bash
exec "$KL" valgrind --json --leak-errors=definite "$CORPUS/memcheck-a.xml"
EOS
chmod +x "$work/kl.sh"
rc=0
"$HARNESS" run --valgrind --broker "$BROKER" --keel-leaks "$work/kl.sh" --db "$work/e.db" \
  "$SCEN/lifecycle.yaml" >"$work/e.out" 2>&1 || rc=$?
cat "$work/e.out"
[ "$rc" = 1 ] || fail "errors: exit $rc, expected 1"
q e.db "SELECT reason FROM scenarios" | grep -q '^valgrind: [0-9]* error(s); first: n1 (pid [0-9]*, memcheck): ' \
  || fail "errors: reason does not name the Valgrind errors"
q e.db "SELECT message FROM findings WHERE check_name = 'valgrind' AND severity = 'error'" \
  | grep -q 'n1 (pid [0-9]*, memcheck): InvalidRead x1: Invalid read of size 4; at read_past_end (vg_leak.c:31)' \
  || fail "errors: no InvalidRead finding with its stack"
q e.db "SELECT message FROM findings WHERE check_name = 'valgrind' AND severity = 'error'" \
  | grep -q 'Leak_DefinitelyLost' || fail "errors: no definite leak finding"
echo "it_valgrind: OK"
