#!/usr/bin/env bash
# check_fixture.sh PROGRAM - runs test_lc_fixture_leaky and checks that the
# fixture failed exactly its leaking tests, each naming its leak (kind,
# name, creation site, owner, test, current and creation stacks at
# FILE:LINE) in the report format, and passed the clean ones.  Exit 0 when
# all of that holds.
set -uo pipefail
prog=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$prog" >"$out" 2>&1
rc=$?
fail=0
check() { # DESCRIPTION REGEX
  if grep -Eq -- "$2" "$out"; then echo "ok: $1"; else echo "NOT OK: $1 (no line matching $2)"; fail=1; fi
}
count() { # DESCRIPTION REGEX N
  n=$(grep -Ec -- "$2" "$out")
  if [ "$n" -eq "$3" ]; then echo "ok: $1 ($n)"; else echo "NOT OK: $1: $n, want $3"; fail=1; fi
}
if [ "$rc" -eq 3 ]; then echo "ok: exit status 3 (three tests failed)"; else echo "NOT OK: exit status $rc, want 3"; fail=1; fi
src='leakcheck/tests/test_lc_fixture_leaky\.c:[0-9]+'
check "thread leak named with site, owner and test" \
  "^LEAKED THREAD name=lc-leaky tid=[0-9]+ state=[RS] created-at=t_leaks_thread \($src\) owner=fixture-test test=t_leaks_thread stack="
check "its current stack in the line: blocked under wait_forever" \
  "^LEAKED THREAD name=lc-leaky .* stack=([^ ]*;)?wait_forever@$src;[^ ]* created-stack="
check "its creation stack in the line" "^LEAKED THREAD name=lc-leaky .* created-stack=t_leaks_thread@$src;"
check "its creation stack, indented under it" "^    #0 t_leaks_thread \($src\) \[test_lc_fixture_leaky\+0x[0-9a-f]+\]$"
check "its current stack, indented under it" "^    #[0-9] wait_forever \($src\) \[test_lc_fixture_leaky\+0x[0-9a-f]+\]$"
check "fd leak" "^LEAKED FD fd=[0-9]+ target=/dev/null test=t_leaks_fd$"
check "child leak" "^LEAKED CHILD pid=[0-9]+ name=[^ ]+ state=[RSZ] test=t_leaks_child$"
count "one report per leaking test" '^==== KEEL LEAK REPORT ====$' 3
count "each with one leak" '^==== END KEEL LEAK REPORT \(1 leak\) ====$' 3
count "LEAKED lines in all" '^LEAKED ' 3
for t in t_leaks_thread t_leaks_fd t_leaks_child; do
  check "$t failed" "^\[  (ERROR   |FAILED  )\] $t$"
  check "$t: the failure names the leak" "^$t leaked 1 resource \(LEAKED lines above\)$"
done
count "clean tests passed" '^\[       OK \] t_clean$' 3
check "summary" '^\[  PASSED  \] 3 test\(s\)\.$'
if [ "$fail" -ne 0 ]; then
  echo "---- output of $prog"
  cat "$out"
fi
exit "$fail"
