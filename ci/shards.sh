#!/usr/bin/env bash
# ci/shards.sh - the scenario suite across CI machines: the commands the CI
# definitions run (ci/github-actions.yml, ci/gitlab-ci.yml; ci/README.md),
# and what harness/tests/it_shards.sh (CTest it_kh_shards) runs locally.
#
#   bash ci/shards.sh build        setup (ci/setup.sh) and build keel-harness,
#                                  keel-broker, keel-leaks in $KEEL_BUILD_DIR
#   bash ci/shards.sh shard K N    shard K of N: $OUT/shard-K.db, $OUT/shard-K.xml
#   bash ci/shards.sh merge        $OUT/shard-*.db -> $OUT/merged.db, junit.xml,
#                                  report.html; the merged run into the history
#
# Each command prints the keel-harness command lines it runs (`+ ...`).
# `shard` and `merge` need only the built binaries (no setup).
#
# Environment (every shard of a run must see the same values):
#   KH          keel-harness (default $KEEL_BUILD_DIR/harness/keel-harness);
#               keel-broker and keel-leaks are found next to it
#   OUT         where recordings and reports go (default ci-out)
#   HISTORY     the history database kept between CI runs (default
#               runs/history.db): shards read it to balance (--balance
#               history) and do not write it; `merge` adds the merged run
#   KH_SEED     the run's seed (default: $GITHUB_RUN_ID, $CI_PIPELINE_ID, else
#               the commit's first 12 hex digits): one per pipeline, the same
#               for all its shards
#   KH_FILTER   a --filter glob (default: every scenario)
#   KH_SCENARIOS  the scenario directory (default scenarios)
#   KH_JOBS     scenarios in parallel per shard (default 2)
#   KH_DEFLAKE  run --deflake N: retries of a failed scenario (default 0)
#   KH_BROKER   --broker PATH (default: the keel-broker next to keel-harness)
#
# Exit status: shard: keel-harness run's (0 passed or flaky, 1 a scenario
# failed, 2 usage); merge: 0 merged and reported, 1 a merged scenario did
# not pass (the reports are written first), 2 an input or usage error.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD=${KEEL_BUILD_DIR:-build}
KH=${KH:-$BUILD/harness/keel-harness}
OUT=${OUT:-ci-out}
HISTORY=${HISTORY:-runs/history.db}
SCEN=${KH_SCENARIOS:-scenarios}

run() { echo "+ $*"; "$@"; }

seed() {
  if [ -n "${KH_SEED:-}" ]; then echo "$KH_SEED"; return; fi
  if [ -n "${GITHUB_RUN_ID:-}" ]; then echo "$GITHUB_RUN_ID"; return; fi
  if [ -n "${CI_PIPELINE_ID:-}" ]; then echo "$CI_PIPELINE_ID"; return; fi
  local rev
  rev=$(git rev-parse HEAD 2>/dev/null || echo 0)
  echo $((16#${rev:0:12}))
}

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

cmd=${1:-}
case "$cmd" in
  build)
    bash ci/setup.sh
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE="${KEEL_BUILD_TYPE:-RelWithDebInfo}" >/dev/null
    cmake --build "$BUILD" -j"$(nproc)" --target keel-harness keel-broker keel-leaks
    ;;
  shard)
    [ $# = 3 ] || { usage >&2; exit 2; }
    k=$2 n=$3
    mkdir -p "$OUT"
    args=(run "$SCEN" -j "${KH_JOBS:-2}" --shard "$k/$n" --balance history
          --history "$HISTORY" --no-history --seed "$(seed)"
          --db "$OUT/shard-$k.db" --junit "$OUT/shard-$k.xml")
    [ -z "${KH_FILTER:-}" ] || args+=(--filter "$KH_FILTER")
    [ "${KH_DEFLAKE:-0}" = 0 ] || args+=(--deflake "$KH_DEFLAKE")
    [ -z "${KH_BROKER:-}" ] || args+=(--broker "$KH_BROKER")
    # a fresh recording: a shard retried by CI does not add to its last try
    rm -f "$OUT/shard-$k.db" "$OUT/shard-$k.db-wal" "$OUT/shard-$k.db-shm"
    run "$KH" "${args[@]}"
    ;;
  merge)
    [ $# = 1 ] || { usage >&2; exit 2; }
    shopt -s nullglob
    shards=("$OUT"/shard-*.db)
    [ ${#shards[@]} -gt 0 ] || { echo "shards.sh: no $OUT/shard-*.db to merge" >&2; exit 2; }
    rm -f "$OUT/merged.db"
    run "$KH" merge "$OUT/merged.db" "${shards[@]}"
    run "$KH" report "$OUT/merged.db" --junit "$OUT/junit.xml" -o "$OUT/report.html"
    mkdir -p "$(dirname "$HISTORY")"
    run "$KH" history add --history "$HISTORY" "$OUT/merged.db"
    run "$KH" flaky --history "$HISTORY" --since 30d
    bad=$(sqlite3 "$OUT/merged.db" "SELECT count(*) FROM scenarios s WHERE s.outcome IS NOT 'pass'
            AND NOT EXISTS (SELECT 1 FROM scenarios t WHERE t.run_id = s.run_id AND t.name = s.name
                            AND t.iteration = s.iteration AND t.outcome = 'pass')")
    if [ "$bad" != 0 ]; then
      echo "shards.sh: $bad scenario run(s) did not pass (every attempt): see $OUT/report.html"
      exit 1
    fi
    ;;
  -h|--help) usage ;;
  *) usage >&2; exit 2 ;;
esac
