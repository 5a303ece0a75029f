#!/usr/bin/env bash
# ci/suite.sh - the main job: the README's first quick-start command.
#
# Installs what is missing (ci/setup.sh), builds keel-broker and
# keel-harness, and runs the scenario suite: `keel-harness run` over every
# scenarios/*.yaml, each scenario isolated in its own process group, with
# its own loopback address and data directories, recorded into
# runs/<timestamp>.db (runs/latest.db points at it), JUnit XML in
# runs/junit.xml.  Extra arguments go to `keel-harness run` (e.g.
# `--filter 'persist*'`, `--repeat 5`, `--seed 42`, `--tap`).
# `--serve` instead runs keel-broker in the foreground on its defaults
# (127.0.0.1:61613, data in ./keel-data; Ctrl-C stops it).
# Exit status: 0 when every scenario passed, 1 when one failed, 2 usage.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVE=0
case "${1:-}" in
  --serve) SERVE=1; shift ;;
  -h|--help)
    echo "usage: bash ci/suite.sh [--serve | keel-harness run options...]"
    exit 0 ;;
esac

bash ci/setup.sh
BUILD=${KEEL_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE="${KEEL_BUILD_TYPE:-RelWithDebInfo}" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target keel-broker keelctl keel-harness

if [ "$SERVE" = 1 ]; then
  echo "== keel-broker in the foreground (Ctrl-C or SIGTERM stops it) =="
  echo "   try: $BUILD/broker/keelctl produce --destination /queue/demo --count 3 --receipts"
  exec "$BUILD/broker/keel-broker" "$@"
fi

mkdir -p runs
echo "== keel-harness run scenarios/ =="
"$BUILD/harness/keel-harness" run -j"$(nproc)" --junit runs/junit.xml "$@" scenarios
