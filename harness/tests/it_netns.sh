#!/usr/bin/env bash
# it_netns.sh HARNESS BROKER [netem] - the network-namespace mode
# (`network: netns`, fixtures/netns/): each node in its own namespace on a
# bridge, the clients too.  Reports SKIP (77) with the reason where
# namespaces cannot be made (not root, no `ip`, no netns, no veth or
# bridge), never a silent pass.
#  - default: one-way partitions each way and a two-way one with a pair
#    producer (packets dropped, TCP retransmits), a node's packets shaped
#    (tbf) during a sync: all pass, the recording has the net.* events,
#    and no namespace of the slot is left; a netem step without netem in
#    the kernel fails naming sch_netem;
#  - `netem`: loss, duplication, reordering, corruption and delay (tc
#    netem) on a node; SKIP (77) where the kernel has no sch_netem.
set -uo pipefail
HARNESS=$1
BROKER=$2
MODE=${3:-partition}
FIX=$(cd "$(dirname "$0")/fixtures/netns" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"; ip netns del kh-it-probe 2>/dev/null; ip netns del kh-it-probe2 2>/dev/null' EXIT
fail() { echo "it_netns: FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }

[ "$(id -u)" = 0 ] || skip "network namespaces need root (uid $(id -u))"
command -v ip >/dev/null || skip "no ip command (iproute2)"
ip netns add kh-it-probe 2>"$work/e" || skip "cannot create a network namespace: $(cat "$work/e")"
ip netns add kh-it-probe2 2>/dev/null
ip -n kh-it-probe link add br0 type bridge 2>"$work/e" || skip "no bridge in a namespace: $(cat "$work/e")"
ip -n kh-it-probe link add v0 type veth peer name v1 netns kh-it-probe2 2>"$work/e" \
  || skip "no veth pair between namespaces: $(cat "$work/e")"
netem=1
ip netns exec kh-it-probe2 tc qdisc add dev v1 root netem delay 1ms 2>"$work/e" || netem=0
netem_why=$(cat "$work/e")
ip netns del kh-it-probe; ip netns del kh-it-probe2

run() { # NAME FILE WANT-RC
  local rc=0
  "$HARNESS" run --broker "$BROKER" --db "$work/$1.db" "$FIX/$2" >"$work/$1.out" 2>&1 || rc=$?
  [ "$rc" = "$3" ] || { cat "$work/$1.out"; fail "$2: exit $rc, expected $3"; }
}
left() { # DB: namespaces of its slot still there
  local slot
  slot=$(sqlite3 "$1" "SELECT address FROM scenarios" | head -1 | cut -d. -f3)
  ip netns list | awk '{print $1}' | grep -E "^kh${slot}(hub|n[0-9]+|nc)$" || true
}

if [ "$MODE" = netem ]; then
  [ "$netem" = 1 ] || skip "this kernel has no tc netem (sch_netem): $netem_why"
  run netem netem.yaml 0
  [ -z "$(left "$work/netem.db")" ] || fail "namespaces left: $(left "$work/netem.db")"
  echo "it_netns: netem OK"
  exit 0
fi

"$HARNESS" lint "$FIX" || fail "lint"
run oneway oneway.yaml 0
run partition partition.yaml 0
run shape shape.yaml 0
for db in oneway partition shape; do
  [ -z "$(left "$work/$db.db")" ] || fail "$db: namespaces left: $(left "$work/$db.db")"
  [ "$(sqlite3 "$work/$db.db" "SELECT count(*) FROM findings WHERE severity = 'error'")" = 0 ] \
    || fail "$db: error findings"
done
[ "$(sqlite3 "$work/oneway.db" "SELECT count(*) FROM events WHERE type = 'net.partition'
     AND json_extract(json, '$.one-way') = 1")" = 2 ] || fail "two one-way net.partition events"
grep -q 'nodes in network namespaces' <(sqlite3 "$work/oneway.db" "SELECT line FROM logs") \
  || fail "no note of the namespaces"
# the nodes' processes ran in their namespaces: backup1 synced over the
# bridge, under tbf
[ "$(sqlite3 "$work/shape.db" "SELECT count(*) FROM events WHERE type = 'replication.sync.done'")" -ge 1 ] \
  || fail "no sync under shaping"
if [ "$netem" = 0 ]; then
  run nonetem netem.yaml 1
  grep -q 'tc netem is not available (this kernel has no sch_netem)' "$work/nonetem.out" \
    || { cat "$work/nonetem.out"; fail "netem step without netem: no clear reason"; }
  [ -z "$(left "$work/nonetem.db")" ] || fail "namespaces left after a failure"
fi
echo "it_netns: OK"
