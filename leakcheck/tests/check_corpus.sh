#!/usr/bin/env bash
# check_corpus.sh KEEL-LEAKS SCHEMA.SQL - keel-leaks on the recorded corpus
# (corpus/README.md): its grouping of leak reports (logs, broker stdout,
# interleaved parallel ctest output, a harness SQLite file, the older
# broker stderr and harness console lines) and its
# Valgrind XML summaries must equal corpus/expected-*, and its exit codes
# must say what was found.
set -uo pipefail
KL=$(realpath "$1")
SCHEMA=$(realpath "$2")
cd "$(dirname "$0")/corpus"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail=0
ok() { echo "ok: $1"; }
bad() { echo "NOT OK: $1"; fail=1; }
expect() { # DESCRIPTION EXPECTED-FILE WANT-RC COMMAND...
  local what=$1 exp=$2 want=$3
  shift 3
  "$@" >"$T/out" 2>"$T/err"
  local rc=$?
  [ "$rc" -eq "$want" ] && ok "$what: exit $rc" || bad "$what: exit $rc, want $want ($(cat "$T/err"))"
  if [ -n "$exp" ]; then
    if diff -u "$exp" "$T/out"; then ok "$what: output as $exp"; else bad "$what: output differs from $exp"; fi
  fi
}

LOGS=(fixture-leaky.log broker-leak.stdout ctest-parallel.log fixture-clean.log)
expect "scan logs" expected-scan.txt 1 "$KL" scan "${LOGS[@]}"
expect "scan logs --json" expected-scan.json 1 "$KL" scan --json "${LOGS[@]}"
expect "scan a clean log" expected-scan-clean.txt 0 "$KL" scan fixture-clean.log
expect "scan stdin" "" 1 "$KL" scan - <broker-leak.stdout
grep -q '^  first: test recorded_broker_run at -:2$' "$T/out" && ok "stdin is named -" || bad "stdin: $(cat "$T/out")"
# the older forms: the broker's stderr line and the harness console's leak
# line before both carried the LEAKED line (not the reasons that repeat it)
expect "scan older stderr and console" expected-scan-old.txt 1 "$KL" scan broker-leak-old.stderr harness-old.console
expect "scan a missing file" "" 2 "$KL" scan no-such.log
expect "unknown command" "" 2 "$KL" frobnicate

# A harness run's SQLite file, built from the schema and recorded rows.
if command -v sqlite3 >/dev/null; then
  sqlite3 "$T/run.db" <"$SCHEMA" >/dev/null && sqlite3 "$T/run.db" <harness-leaks.sql
  cp expected-scan-sqlite.txt "$T/"
  (cd "$T" && expect "scan a harness SQLite file" expected-scan-sqlite.txt 1 "$KL" scan run.db
   exit "$fail") || fail=1
else
  bad "sqlite3 (ci/setup.sh installs it) is missing"
fi

cd valgrind
XML=(memcheck-a.xml memcheck-b.xml memcheck-clean.xml helgrind.xml drd.xml)
expect "valgrind summary" ../expected-valgrind.txt 1 "$KL" valgrind "${XML[@]}"
expect "valgrind summary --json" ../expected-valgrind.json 1 "$KL" valgrind --json "${XML[@]}"
expect "valgrind, a clean run" "" 0 "$KL" valgrind memcheck-clean.xml
expect "valgrind, not XML" "" 2 "$KL" valgrind vg_leak.c
expect "valgrind, bad --leak-errors" "" 2 "$KL" valgrind --leak-errors=lost memcheck-clean.xml
# a killed run is an error whatever it says
expect "valgrind, killed run" ../expected-killed.txt 1 "$KL" valgrind killed.xml
# the broker leaking its test thread: a possible leak counts by default...
expect "valgrind, possible leak" ../expected-broker.txt 1 "$KL" valgrind broker-leaktest.xml
# ...not when only definite leaks are errors (ci/valgrind.sh's policy)
expect "valgrind, --leak-errors=definite" "" 0 "$KL" valgrind --leak-errors=definite broker-leaktest.xml
expect "valgrind, --leak-errors=none: other errors still count" "" 1 "$KL" valgrind --leak-errors=none memcheck-a.xml
expect "valgrind, --leak-errors=all" "" 1 "$KL" valgrind --leak-errors=all memcheck-clean.xml broker-leaktest.xml
exit "$fail"
