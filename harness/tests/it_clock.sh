#!/usr/bin/env bash
# it_clock.sh HARNESS BROKER - clock faults as a user runs them
# (fixtures/clock/steps.yaml): each step is a clock.set / clock.reset
# harness event with the offset it left; the broker's own event times
# (`ts`) follow its fake clock (an hour ahead, an hour behind after the
# jump and a restart, real again after the reset), while the recording's
# times of its events are the harness's (events.mono_ns near recv_ns).
# SKIP (77) without libfaketime or against an ASan broker.
set -euo pipefail
HARNESS=$1
BROKER=$2
FIX=$(cd "$(dirname "$0")/fixtures/clock" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "it_clock: FAIL: $*" >&2; exit 1; }
ldd "$BROKER" > "$work/ldd.out" 2>/dev/null || true
if grep -q libasan "$work/ldd.out"; then
  echo "SKIP: ASan build: clock steps preload libfaketime, which cannot come before ASan"
  exit 77
fi
found=${KH_FAKETIME_LIB:-}
for f in /usr/lib/*/faketime/libfaketimeMT.so.1 /usr/lib/faketime/libfaketimeMT.so.1; do
  [ -e "$f" ] && found=$f
done
if [ -z "$found" ]; then
  echo "SKIP: libfaketime is not installed (Debian package libfaketime; ci/setup.sh)"
  exit 77
fi
q() { sqlite3 "$work/c.db" "$1"; }
rc=0
"$HARNESS" run --broker "$BROKER" --db "$work/c.db" "$FIX/steps.yaml" > "$work/out" 2>&1 || rc=$?
[ "$rc" = 0 ] || { cat "$work/out"; fail "exit $rc"; }
ev=$(q "SELECT type || ' ' || printf('%.0f', json_extract(json, '$.offset-s')) || ' ' ||
        json_extract(json, '$.rate') FROM events WHERE type LIKE 'clock.%' ORDER BY id")
echo "$ev"
[ "$(echo "$ev" | sed -n 1p)" = "clock.set 3600 1.0" ] || fail "offset: $ev"
[ "$(echo "$ev" | sed -n 2p)" = "clock.set 3600 2.0" ] || fail "rate (no jump): $ev"
[ "$(echo "$ev" | sed -n 3p)" = "clock.set -3600 2.0" ] || fail "jump: $ev"
echo "$ev" | sed -n 4p | grep -q '^clock.reset 0 1.0$' || fail "reset: $ev"
# the broker's ts minus the harness's, at the first n1 event after the
# N-th clock.* event (each phase ends with a restart or the stop, whose
# events are the node's)
skew() {
  q "SELECT CAST(round((julianday(json_extract(e.json, '$.ts')) -
       julianday(json_extract(h.json, '$.ts'))) * 86400) AS INTEGER)
     FROM events h, events e WHERE h.id = (SELECT id FROM events WHERE type LIKE 'clock.%'
       ORDER BY id LIMIT 1 OFFSET $1)
     AND e.node = 'n1' AND e.id > h.id ORDER BY e.id LIMIT 1"
}
s1=$(skew 0); s3=$(skew 2); s4=$(skew 3)
echo "skews: after offset $s1 s, after jump and restart $s3 s, after reset $s4 s"
[ "$s1" -ge 3595 ] && [ "$s1" -le 3605 ] || fail "an hour ahead: $s1"
[ "$s3" -ge -3610 ] && [ "$s3" -le -3590 ] || fail "an hour behind: $s3"
[ "$s4" -ge -2 ] && [ "$s4" -le 2 ] || fail "real again: $s4"
# the recording's time of n1's events is the harness's
[ "$(q "SELECT count(*) FROM events WHERE node = 'n1' AND abs(mono_ns - recv_ns) > 1000000")" = 0 ] \
  || fail "a faked node's events timed by its own clock"
echo "it_clock: ok"
