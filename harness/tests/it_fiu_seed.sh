#!/usr/bin/env bash
# it_fiu_seed.sh HARNESS BROKER - `--seed` reaches libfiu: a scenario whose
# outcome is a libfiu probability fault (fixtures/fiu-seed/coin.yaml, a
# journal write failing with probability 0.5) run twice with
# `--seed 42 --repeat 10` gives the same pass/fail sequence, with passes
# and failures in it; each node start's FIU_PRNG_SEED is recorded
# (fiu.seed events), the same in both runs; another --seed gives other
# seeds.  SKIP (77) against an ASan broker (fiu-run cannot preload it).
set -euo pipefail
HARNESS=$1
BROKER=$2
FIX=$(cd "$(dirname "$0")/fixtures/fiu-seed" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "it_fiu_seed: FAIL: $*" >&2; exit 1; }

ldd "$BROKER" > "$work/ldd.out" 2>/dev/null || true
if grep -q libasan "$work/ldd.out"; then
  echo "SKIP: ASan build: fault steps need fiu-run, which cannot preload before ASan"
  exit 77
fi
q() { sqlite3 "$1" "$2"; }
run() { # DB SEED
  local rc=0
  "$HARNESS" run --broker "$BROKER" --seed "$2" --repeat 10 --db "$work/$1" "$FIX" \
    > "$work/$1.out" 2>&1 || rc=$?
  [ "$rc" = 0 ] || [ "$rc" = 1 ] || { cat "$work/$1.out"; fail "$1: exit $rc"; }
}
seq_of() { q "$work/$1" "SELECT group_concat(outcome, ' ') FROM
  (SELECT outcome FROM scenarios ORDER BY iteration)"; }
seeds_of() { q "$work/$1" "SELECT group_concat(s, ' ') FROM (SELECT
  json_extract(e.json, '$.seed') AS s FROM events e JOIN scenarios sc ON sc.id = e.scenario_id
  WHERE e.type = 'fiu.seed' ORDER BY sc.iteration)"; }

run a.db 42
run b.db 42
sa=$(seq_of a.db); sb=$(seq_of b.db)
echo "seed 42, run 1: $sa"
echo "seed 42, run 2: $sb"
[ "$(q "$work/a.db" "SELECT count(*) FROM scenarios")" = 10 ] || fail "10 iterations"
[ "$sa" = "$sb" ] || fail "one seed, two sequences: '$sa' vs '$sb'"
case "$sa" in *pass*) ;; *) fail "no pass in '$sa' (the coin never came up heads)";; esac
case "$sa" in *fail*) ;; *) fail "no fail in '$sa' (the coin never came up tails)";; esac
ka=$(seeds_of a.db); kb=$(seeds_of b.db)
[ "$(echo "$ka" | wc -w)" = 10 ] || fail "one fiu.seed event per run: '$ka'"
[ "$ka" = "$kb" ] || fail "FIU_PRNG_SEED differs between runs: '$ka' vs '$kb'"
[ "$(echo "$ka" | tr ' ' '\n' | sort -u | wc -l)" = 10 ] || fail "iterations share a seed: '$ka'"
[ "$(q "$work/a.db" "SELECT DISTINCT json_extract(json, '$.broker') || ' ' ||
     json_extract(json, '$.incarnation') || ' ' || node FROM events WHERE type = 'fiu.seed'")" \
  = "n1 1 keel-harness" ] || fail "fiu.seed fields"
run c.db 7
[ "$(seeds_of c.db)" != "$ka" ] || fail "another --seed, the same libfiu seeds"
echo "it_fiu_seed: ok ($sa)"
