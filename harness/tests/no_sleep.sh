#!/usr/bin/env bash
# no_sleep.sh ROOT - the harness waits on events, never on time: no
# sleep(3)/usleep/nanosleep call in harness C code, no `sleep N` command in
# its scripts, no `sleep:` step in a scenario.  Prints each offence; exit 1.
set -uo pipefail
cd "$1"
bad=0
grep -rnE --include='*.c' --include='*.h' '\b(u|nano|clock_nano)?sleep[[:space:]]*\(' harness && bad=1
grep -rnE --include='*.sh' '(^|[;&|(`[:space:]])sleep[[:space:]]+[0-9.$]' harness && bad=1
grep -rnE --include='*.yaml' --include='*.yml' '^[[:space:]]*-?[[:space:]]*sleep[[:space:]]*:' harness scenarios && bad=1
[ "$bad" = 0 ] && echo "no_sleep: OK"
exit "$bad"
