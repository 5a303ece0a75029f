#!/usr/bin/env bash
# it_chaos.sh HARNESS BROKER - produce's rate and duration, the chaos
# step (a seeded nemesis), its recorded schedule, replay and shrink
# (fixtures/chaos/).
set -euo pipefail
HARNESS=$1
BROKER=$2
FIX=$(cd "$(dirname "$0")/fixtures/chaos" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/tmp"
export TMPDIR=$work/tmp
fail() { echo "it_chaos: FAIL: $*" >&2; exit 1; }
q() { sqlite3 "$1" "$2"; }

# ---- rate and duration: 80 messages spread over about 2 s; a cap of 30
"$HARNESS" run --broker "$BROKER" --db "$work/rate.db" "$FIX/rate.yaml" >"$work/out" 2>&1 \
  || { cat "$work/out"; fail "rate.yaml did not pass"; }
got=$(q "$work/rate.db" "SELECT count(*) || ' ' || ((max(at_ns) - min(at_ns)) / 100000000)
        FROM messages WHERE kind = 'produced' AND destination = '/queue/rate'")
case "$got" in "80 19"|"80 20"|"80 21") ;; *) fail "rate: '$got' (80 messages over ~2.0 s expected)" ;; esac
got=$(q "$work/rate.db" "SELECT count(*) FROM messages WHERE kind = 'receipted'
        AND destination = '/queue/cap'")
[ "$got" = 30 ] || fail "cap: $got receipted, 30 expected"
echo "it_chaos: rate OK"
