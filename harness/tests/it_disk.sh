#!/usr/bin/env bash
# it_disk.sh HARNESS BROKER SCENARIOS - disk faults as a user runs them:
#  - `disk: {pick: 2}` draws its libfiu points from the scenario's seed
#    (fixtures/disk/pick.yaml): one --seed twice records the same points
#    per iteration (disk.on events), `off` disables exactly those, and the
#    draws differ between iterations; `target: live` found the node;
#  - scenarios/journal-disk.yaml (a libfiu disk step and a real ENOSPC on
#    an 8 MiB tmpfs, disk-size) passes, nothing stays mounted;
#  - a scenario with a tmpfs that times out (fixtures/disk/hang.yaml): the
#    runner removes its directory, unmounting the tmpfs its killed child
#    left.
# SKIP (77) against an ASan broker (fiu-run) or when not root (tmpfs).
set -euo pipefail
HARNESS=$1
BROKER=$2
SCEN=$3
FIX=$(cd "$(dirname "$0")/fixtures/disk" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "it_disk: FAIL: $*" >&2; exit 1; }

ldd "$BROKER" > "$work/ldd.out" 2>/dev/null || true
if grep -q libasan "$work/ldd.out"; then
  echo "SKIP: ASan build: disk steps need fiu-run, which cannot preload before ASan"
  exit 77
fi
q() { sqlite3 "$1" "$2"; }
run() { # DB FILE [SEED]
  local rc=0
  "$HARNESS" run --broker "$BROKER" --seed "${3:-7}" --repeat 4 --db "$work/$1" "$2" \
    > "$work/$1.out" 2>&1 || rc=$?
  [ "$rc" = 0 ] || { cat "$work/$1.out"; fail "$1: exit $rc"; }
}
points() { q "$work/$1" "SELECT group_concat(p, ' | ') FROM (SELECT
  json_extract(e.json, '$.points') AS p FROM events e JOIN scenarios s ON s.id = e.scenario_id
  WHERE e.type = '$2' ORDER BY s.iteration)"; }

"$HARNESS" lint "$FIX"
run a.db "$FIX/pick.yaml"
run b.db "$FIX/pick.yaml"
pa=$(points a.db disk.on); pb=$(points b.db disk.on)
echo "seed 7: $pa"
[ -n "$pa" ] || fail "no disk.on events"
[ "$pa" = "$pb" ] || fail "one seed, two draws: '$pa' vs '$pb'"
[ "$(points a.db disk.off)" = "$pa" ] || fail "off did not disable what was on: $(points a.db disk.off)"
[ "$(echo "$pa" | tr '|' '\n' | sort -u | wc -l)" -gt 1 ] || fail "4 iterations, one draw: $pa"
[ "$(q "$work/a.db" "SELECT DISTINCT json_extract(json, '$.broker') || ' ' ||
     json_extract(json, '$.target') || ' ' || json_extract(json, '$.failinfo') FROM events
     WHERE type = 'disk.on'")" = "n1 live 28" ] || fail "disk.on fields"

if [ "$(id -u)" != 0 ]; then
  echo "SKIP: not root: disk-size mounts a tmpfs (the pick part passed)"
  exit 77
fi
rc=0
"$HARNESS" run --broker "$BROKER" --db "$work/jd.db" "$SCEN/journal-disk.yaml" > "$work/jd.out" 2>&1 || rc=$?
[ "$rc" = 0 ] || { cat "$work/jd.out"; fail "journal-disk: exit $rc"; }
[ "$(q "$work/jd.db" "SELECT count(*) FROM messages WHERE kind = 'refused'")" -ge 2 ] \
  || fail "journal-disk: fewer than 2 refusals"
! grep -q "$work" /proc/mounts || fail "a tmpfs left mounted"
# a child killed at its timeout leaves its tmpfs: the runner unmounts it
rc=0
"$HARNESS" run --broker "$BROKER" --db "$work/hang.db" "$FIX/hang.yaml" > "$work/hang.out" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$work/hang.out"; fail "disk-hang: exit $rc, expected 1"; }
grep -q '^TIMEOUT  *disk-hang' "$work/hang.out" || { cat "$work/hang.out"; fail "disk-hang: no timeout"; }
! grep -q 'cannot remove' "$work/hang.out" || { cat "$work/hang.out"; fail "disk-hang: directory left"; }
! grep -q "1-disk-hang/n1/data" /proc/mounts || fail "disk-hang: its tmpfs left mounted"
echo "it_disk: ok"
