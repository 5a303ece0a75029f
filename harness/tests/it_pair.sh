#!/usr/bin/env bash
# it_pair.sh HARNESS BROKER - produce and consume on a node list
# (`nodes: [a, b]`) across a node's death (fixtures/pair/failover.yaml):
# two independent brokers; a producer of 300 persistent messages starts on
# a, a is killed once the producer has a RECEIPT from it and a has stopped
# reading (BLOCK); the producer carries on on b. Checked here on the
# recording, row by row:
#  - the producer moved from a to b (client.disconnected, client.reconnected);
#  - every key was receipted exactly once, some by a, the rest by b;
#  - a key receipted by a was never sent again, and is consumed from a
#    (after a's restart: persistent and receipted, so in a's journal);
#  - a key receipted by b is consumed from b;
#  - the keys unanswered when a died were sent again to b with the same key
#    (sent twice, receipted once), and nothing consumed from a node was
#    never sent to it;
#  - the consume on [a, b] with a down connected to b after a failed attempt;
#  - the checks found no error (duplicates, if any, are warnings);
# and (fixtures/pair-down/) with neither node running a produce and a
# consume on [a, b] fail at their deadline naming each node and its error.
set -euo pipefail
HARNESS=$1
BROKER=$2
FIX=$(cd "$(dirname "$0")/fixtures/pair" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/tmp"
fail() { echo "it_pair: FAIL: $*" >&2; exit 1; }

"$HARNESS" lint "$FIX"
rc=0
TMPDIR=$work/tmp "$HARNESS" run --broker "$BROKER" --db "$work/run.db" "$FIX" \
  >"$work/out" 2>&1 || rc=$?
cat "$work/out"
[ "$rc" = 0 ] || fail "exit code $rc, expected 0"
q() { sqlite3 "$work/run.db" "$1"; }
s=$(q "SELECT id FROM scenarios WHERE name = 'pair_failover' AND outcome = 'pass'")
[ -n "$s" ] || fail "pair_failover did not pass"
M="messages WHERE scenario_id = $s"
E="events WHERE scenario_id = $s AND node = 'keel-harness'"
eq() { # WHAT SQL WANT
  local got
  got=$(q "$2")
  [ "$got" = "$3" ] || fail "$1: got '$got', expected '$3'"
}
ge1() { # WHAT SQL
  local got
  got=$(q "$2")
  [ "$got" -ge 1 ] 2>/dev/null || fail "$1: got '$got', expected at least 1"
}

# The producer (step 4) moved from a to b.
eq "produce connected to a first" \
  "SELECT json_extract(json, '$.broker') FROM $E AND type = 'client.connected'
   AND json_extract(json, '$.step') = 4" a
eq "produce lost a" \
  "SELECT count(*) FROM $E AND type = 'client.disconnected' AND json_extract(json, '$.step') = 4
   AND json_extract(json, '$.broker') = 'a' AND json_extract(json, '$.unanswered') > 0" 1
eq "produce reconnected a -> b" \
  "SELECT json_extract(json, '$.from') || '->' || json_extract(json, '$.to') FROM $E
   AND type = 'client.reconnected' AND json_extract(json, '$.step') = 4" "a->b"
# Receipts: 300 keys, each exactly once; some by a, some by b.
eq "receipted keys" "SELECT count(DISTINCT msg_key) FROM $M AND kind = 'receipted'" 300
eq "receipts" "SELECT count(*) FROM $M AND kind = 'receipted'" 300
ge1 "receipted by a" "SELECT count(*) FROM $M AND kind = 'receipted' AND node = 'a'"
ge1 "receipted by b" "SELECT count(*) FROM $M AND kind = 'receipted' AND node = 'b'"
# A key receipted by a was sent once, to a; and is consumed from a.
eq "receipted by a and sent again" \
  "SELECT count(*) FROM $M AND kind = 'receipted' AND node = 'a' AND msg_key IN
   (SELECT msg_key FROM $M AND kind = 'produced' AND node = 'b')" 0
eq "receipted by a, not consumed from a" \
  "SELECT count(*) FROM $M AND kind = 'receipted' AND node = 'a' AND msg_key NOT IN
   (SELECT msg_key FROM $M AND kind = 'consumed' AND node = 'a')" 0
# A key receipted by b is consumed from b.
eq "receipted by b, not consumed from b" \
  "SELECT count(*) FROM $M AND kind = 'receipted' AND node = 'b' AND msg_key NOT IN
   (SELECT msg_key FROM $M AND kind = 'consumed' AND node = 'b')" 0
# The ones unanswered when a died: sent to a, sent again to b, receipted by b.
ge1 "sent to a, resent to b, receipted by b" \
  "SELECT count(*) FROM $M AND kind = 'receipted' AND node = 'b' AND msg_key IN
   (SELECT msg_key FROM $M AND kind = 'produced' AND node = 'a') AND msg_key IN
   (SELECT msg_key FROM $M AND kind = 'produced' AND node = 'b')"
eq "resends = unanswered at the loss" \
  "SELECT count(*) FROM $M AND kind = 'produced' AND node = 'b' AND msg_key IN
   (SELECT msg_key FROM $M AND kind = 'produced' AND node = 'a')" \
  "$(q "SELECT json_extract(json, '$.unanswered') FROM $E AND type = 'client.disconnected'
        AND json_extract(json, '$.step') = 4")"
eq "a key sent more than twice" \
  "SELECT count(*) FROM (SELECT msg_key FROM $M AND kind = 'produced' GROUP BY msg_key
   HAVING count(*) > 2)" 0
for n in a b; do
  eq "consumed from $n, never sent to $n" \
    "SELECT count(*) FROM $M AND kind = 'consumed' AND node = '$n' AND msg_key NOT IN
     (SELECT msg_key FROM $M AND kind = 'produced' AND node = '$n')" 0
done
# The consume on [a, b] with a down: b, after a's refusal.
eq "consume on [a, b] with a down" \
  "SELECT json_extract(json, '$.broker') || ' ' || (json_extract(json, '$.attempts') >= 1)
   FROM $E AND type = 'client.connected' AND json_extract(json, '$.kind') = 'consume'
   AND json_extract(json, '$.step') = 10" "b 1"
eq "error findings" "SELECT count(*) FROM findings WHERE scenario_id = $s AND severity = 'error'" 0
# The trace shows the harness's events among the nodes'.
"$HARNESS" show "$work/run.db" pair_failover >"$work/show"
grep -q "keel-harness.*client.reconnected" "$work/show" || fail "show lacks client.reconnected"
# Neither node running: each step fails at its deadline (1 s), naming the
# nodes tried and their last error.
rc=0
TMPDIR=$work/tmp "$HARNESS" run --broker "$BROKER" --db "$work/down.db" "$FIX/../pair-down" \
  >"$work/out" 2>&1 || rc=$?
cat "$work/out"
[ "$rc" = 1 ] || fail "pair-down: exit code $rc, expected 1"
for k in produce consume; do
  reason=$(sqlite3 "$work/down.db" "SELECT outcome || ': ' || reason FROM scenarios
                                    WHERE name = 'pair_${k}_down'")
  case "$reason" in
    "fail: step 0 ($k a,b, line 8): $k "*" on a, b: deadline passed"*"; not connected, "*" failed attempt(s) since the last connection; tried a (Connection refused), b (Connection refused)") ;;
    *) fail "pair_${k}_down: reason '$reason'" ;;
  esac
done
ls "$work/tmp" | grep -q . && fail "directories left in TMPDIR"
echo "it_pair: OK"
