#!/usr/bin/env bash
# it_net.sh HARNESS BROKER - the network steps as a user runs them
# (fixtures/net/), checked on the recording:
#  - `partition: {target: one}` draws its node from the scenario's seed:
#    two runs with one --seed record the same groups; every step is a
#    harness event (net.partition, net.heal, net.degrade) with what it
#    resolved, and a log line says the links go through the proxy;
#  - a target that names no node fails the step with the nodes' states;
#  - the clients' link refused: a produce fails with ECONNREFUSED through
#    the proxy; healed, it connects; limit-bytes closes its connection.
set -euo pipefail
HARNESS=$1
BROKER=$2
FIX=$(cd "$(dirname "$0")/fixtures/net" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "it_net: FAIL: $*" >&2; exit 1; }

"$HARNESS" lint "$FIX"
run() { # DB FILE [rc]
  local rc=0
  "$HARNESS" run --broker "$BROKER" --seed 7 --db "$work/$1" "$FIX/$2" >"$work/$1.out" 2>&1 || rc=$?
  [ "$rc" = "${3:-0}" ] || { cat "$work/$1.out"; fail "$2: exit $rc, expected ${3:-0}"; }
}
q() { sqlite3 "$1" "$2"; }

# target: one, twice with one seed
run one1.db target_one.yaml
run one2.db target_one.yaml
g1=$(q "$work/one1.db" "SELECT json_extract(json, '$.groups') FROM events WHERE type = 'net.partition'")
g2=$(q "$work/one2.db" "SELECT json_extract(json, '$.groups') FROM events WHERE type = 'net.partition'")
[ -n "$g1" ] || fail "no net.partition event"
[ "$g1" = "$g2" ] || fail "one seed, two targets: $g1 vs $g2"
echo "$g1" | grep -q 'keel-harness' || fail "clients: true did not put the clients beside the others: $g1"
[ "$(q "$work/one1.db" "SELECT json_extract(json, '$.target') || ' ' || node
     FROM events WHERE type = 'net.partition'")" = "one keel-harness" ] || fail "net.partition fields"
[ "$(q "$work/one1.db" "SELECT count(*) FROM events WHERE type = 'net.heal'")" = 2 ] \
  || fail "two net.heal events"
[ "$(q "$work/one1.db" "SELECT json_extract(json, '$.endpoint') FROM events
     WHERE type = 'net.heal' AND json_extract(json, '$.endpoint') IS NOT NULL")" = n2 ] || fail "heal node"
d=$(q "$work/one1.db" "SELECT json_extract(json, '$.endpoint') || ' ' ||
     json_extract(json, '$.links') || ' ' || json_extract(json, '$.delay-ms')
     || ' ' || json_extract(json, '$.direction') || ' ' || json_extract(json, '$.loss')
     FROM events WHERE type = 'net.degrade'")
[ "$d" = 'n2 ["n2>n1","n2>n3","n2>keel-harness"] 5 forward 0.1' ] || fail "net.degrade: $d"
grep -q 'links through the proxy' <(q "$work/one1.db" "SELECT line FROM logs WHERE node = 'keel-harness'") \
  || fail "no note of the proxy"

# a target naming no node
run missing.db target_missing.yaml 1
grep -q 'partition: target backup: no node is a backup now (n1 LIVE)' "$work/missing.db.out" \
  || { cat "$work/missing.db.out"; fail "missing target message"; }

# the clients' link refused, healed, limited
run refuse.db client_refuse.yaml 1
grep -Eq 'produce to /queue/q on n1: connect to 127\.100\.[0-9]+\.1:61613: Connection refused' \
  "$work/refuse.db.out" || { cat "$work/refuse.db.out"; fail "refused produce"; }
run heal.db client_heal.yaml 1
grep -q 'step 4 produce n1: ok - sent 5, receipts 5' "$work/heal.db.out" \
  || { cat "$work/heal.db.out"; fail "produce after the heal"; }
grep -q 'step 6 produce n1: FAILED: .*connection closed' "$work/heal.db.out" \
  || { cat "$work/heal.db.out"; fail "limit-bytes did not close the connection"; }
[ "$(q "$work/heal.db" "SELECT count(*) FROM logs WHERE node = 'keel-harness' AND line LIKE
     'net: connection % closed after 300 bytes%'")" = 1 ] || fail "no note of the limit"
echo "it_net: OK"
