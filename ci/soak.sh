#!/usr/bin/env bash
# ci/soak.sh - N seeded chaos runs of one scenario (default 200 of
# scenarios/soak/ha-chaos-soak.yaml: a pair failing over and back under
# the full fault mix of a chaos step, with a producer following the
# pair), then the figures: rounds, passed, receipted, lost, duplicates,
# overlapping lives, and the seed and id of every failed round with the
# commands that replay and shrink it.  Each round is one `--repeat`
# iteration of one `keel-harness run` (its own scenario seed, derived from
# the run's seed, the name and the iteration; the fault schedule of each
# is in the recording's `faults` table).
#
#   bash ci/soak.sh [-n N] [-j J] [--seed S] [--db FILE] [SCENARIO.yaml]
#
# Exit status: 0 when every round passed, 1 when one failed, 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."

N=200 J=2 SEED="" DB="" SCEN=scenarios/soak/ha-chaos-soak.yaml
usage() { echo "usage: bash ci/soak.sh [-n ROUNDS] [-j JOBS] [--seed S] [--db FILE] [SCENARIO.yaml]"; }
while [ $# -gt 0 ]; do
  case "$1" in
    -n) N=$2; shift 2 ;;
    -j) J=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --db) DB=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage >&2; exit 2 ;;
    *) SCEN=$1; shift ;;
  esac
done
case "$N$J" in *[!0-9]*) usage >&2; exit 2 ;; esac
[ -f "$SCEN" ] || { echo "ci/soak.sh: $SCEN: no such scenario" >&2; exit 2; }

bash ci/setup.sh
BUILD=${KEEL_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE="${KEEL_BUILD_TYPE:-RelWithDebInfo}" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target keel-broker keel-harness
mkdir -p runs
[ -n "$DB" ] || DB=runs/soak-$(date +%Y%m%d-%H%M%S)-$$.db
args=(run --repeat "$N" -j "$J" --db "$DB")
[ -z "$SEED" ] || args+=(--seed "$SEED")
rc=0
"$BUILD/harness/keel-harness" "${args[@]}" "$SCEN" || rc=$?
[ "$rc" -le 1 ] || exit "$rc"

q() { sqlite3 "$DB" "$1"; }
echo
echo "soak: $SCEN, run seed $(q "SELECT seed FROM runs ORDER BY id DESC LIMIT 1"), recording $DB"
echo "  rounds:             $(q "SELECT count(*) FROM scenarios")"
echo "  passed:             $(q "SELECT count(*) FROM scenarios WHERE outcome = 'pass'")"
echo "  faults:             $(q "SELECT sum(n) || ' (' || group_concat(kind || ' ' || n, ', ') || ')'
                                 FROM (SELECT kind, count(*) AS n FROM faults
                                  WHERE result = 'ok' GROUP BY kind)")"
echo "  receipted:          $(q "SELECT count(*) FROM (SELECT DISTINCT scenario_id, msg_key
                                 FROM messages WHERE kind = 'receipted')")"
echo "  lost:               $(q "SELECT count(*) FROM (SELECT DISTINCT scenario_id, msg_key
                                 FROM messages r WHERE kind = 'receipted' AND persistent = 1
                                 AND NOT EXISTS (SELECT 1 FROM messages c WHERE c.kind = 'consumed'
                                 AND c.scenario_id = r.scenario_id AND c.msg_key = r.msg_key))")"
echo "  duplicates:         $(q "SELECT (SELECT count(*) FROM messages WHERE kind = 'consumed') -
                                 (SELECT count(*) FROM (SELECT DISTINCT scenario_id, msg_key
                                  FROM messages WHERE kind = 'consumed'))")"
echo "  overlapping lives:  $(q "SELECT count(*) FROM findings WHERE check_name = 'single-live'
                                 AND severity = 'error'")"
fails=$(q "SELECT id || ' ' || seed || ' ' || iteration || ' ' || outcome || ': ' ||
          substr(replace(COALESCE(reason, ''), char(10), ' '), 1, 160)
          FROM scenarios WHERE outcome != 'pass' ORDER BY id")
if [ -n "$fails" ]; then
  echo "  failed rounds (scenario id, scenario seed, iteration, outcome):"
  while IFS= read -r l; do
    id=${l%% *}
    echo "    $l"
    echo "      keel-harness replay $DB --scenario $id   |   keel-harness shrink $DB --scenario $id"
  done <<<"$fails"
  exit 1
fi
exit "$rc"
