#!/usr/bin/env bash
# ci/bench/ha-campaign.sh - a seeded random fault campaign against real
# keel-broker pairs (issue "HA safety"; broker/README.md "Replication (HA)",
# "Tests").  The rounds are in ci/bench/ha_campaign.py (run with Debian's
# /usr/bin/python3 for python3-stomp); this builds a Release broker, picks a
# data directory on disk (/var/tmp when /tmp is a tmpfs, so that fdatasync
# is real) and kills every broker left at exit.  One pair at a time.
#
#   ci/bench/ha-campaign.sh [--seed S] [--rounds N] [--round R] [--old-rules]
#                           [--keep DIR] [--schedule TEXT] [--max-msgs N]
#                           [--rate MSG/S] [-v]
#
# --seed S: the campaign's seed (default: from the time, printed); round R
# of seed S draws its faults from random.Random("S:R"), so `--seed S
# --round R` runs that round again with the same schedule.  --old-rules:
# `failover-may-lose-data: true` in both configs (the rules before leases:
# the campaign must find defect 2's losses there, or it is too weak).  --keep DIR: copy the
# data, events and stderr of every failed round to DIR/S-R.  --schedule
# TEXT: every round runs that schedule (as the rounds print it) instead of
# a drawn one.  -v: every action as it is done.
# Knobs: KEEL_BUILD_DIR (build-bench), KEEL_BENCH_NO_BUILD.  Exit status 1
# if a receipted message was lost, two nodes were LIVE at once or a round
# could not be checked, 0 otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."
. ci/bench/lib.sh

bash ci/setup.sh   # python3-stomp among the rest
BUILD=${KEEL_BUILD_DIR:-build-bench}
if [ -z "${KEEL_BENCH_NO_BUILD:-}" ]; then
  # -O2 may warn where a debug build does not; a campaign tests, it does not lint.
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DKEEL_WERROR=OFF >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target keel-broker keelctl >/dev/null
fi

# Data on a real disk: a tmpfs makes fdatasync free.
if [ "$(stat -f -c %T "${TMPDIR:-/tmp}")" = tmpfs ]; then
  export TMPDIR=/var/tmp
fi
bench_init
PIDS=$tmp/pids
: >"$PIDS"
PY=
# Stop ha_campaign.py first (it kills its brokers on SIGTERM), then kill any
# broker it started and left; a pid is only killed while it is still a
# keel-broker (SIGCONT first: it may be paused).
campaign_cleanup() {
  local p
  if [ -n "$PY" ] && kill -0 "$PY" 2>/dev/null; then
    kill -TERM "$PY" 2>/dev/null || true
    wait "$PY" 2>/dev/null || true
  fi
  while read -r p; do
    if tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -q keel-broker; then
      kill -CONT "$p" 2>/dev/null || true
      kill -KILL "$p" 2>/dev/null || true
    fi
  done <"$PIDS"
  bench_cleanup
}
trap campaign_cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

echo "ha-campaign: $(nproc) cores, data in $tmp on $(df -P "$tmp" | awk 'NR == 2 { print $1 }')" \
     "($(stat -f -c %T "$tmp")); load at start: $(uptime | sed 's/.*load/load/')"
rc=0
# In the background and waited for, so that a signal reaches the traps at once.
/usr/bin/python3 ci/bench/ha_campaign.py --broker "$BUILD/broker/keel-broker" \
  --dir "$tmp" --pids-file "$PIDS" "$@" &
PY=$!
wait "$PY" || rc=$?
PY=
echo "load at end: $(uptime | sed 's/.*load/load/')"
exit "$rc"
