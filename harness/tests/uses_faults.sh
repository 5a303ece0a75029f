# uses_faults.sh - sourced by it_suite.sh and replay_suite.sh: whether a
# scenario file runs its nodes under fiu-run or libfaketime (neither can
# preload before ASan): a fault, clock or disk step, a node's disk-size,
# or a chaos step with clock or disk faults (named in its mix, block or
# flow style, as the kind of a schedule entry or a trigger, or its
# clock:/disk: bounds).  kh_uses_faults FILE: exit 0 when it does.
kh_uses_faults() {
  grep -Eq '^ *- *(fault|clock|disk):|^ *disk-size:|kind: *(clock|disk)\b|mix:.*[{ ,](clock|disk):|^ +(clock|disk): *([{]|[0-9.]+ *$)' "$1"
}
