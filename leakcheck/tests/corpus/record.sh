#!/usr/bin/env bash
# record.sh BUILD_DIR - re-record the corpus keel-leaks is tested on, from
# this project's own programs (README.md here says what each file is).
# Not run by the tests: they read the files it wrote, and compare
# keel-leaks' output with expected-*.  After recording, check the new
# outputs by hand before updating expected-* (see README.md).
set -euo pipefail
cd "$(dirname "$0")"
B=$(realpath "$1")
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export KEEL_LC_GRACE_MS=300

# 1. One cmocka program with the fixture, leaking a thread, an fd, a child.
"$B/leakcheck/tests/test_lc_fixture_leaky" >fixture-leaky.log 2>&1 || true
# 2. The same fixture on clean tests: no leak lines.
"$B/leakcheck/tests/test_lc_fixture_clean" >fixture-clean.log 2>&1

# 3. keel-broker with a thread leaked on purpose: its stdout.
broker_run() { # OUT TEST
  KEEL_TEST_LEAK_THREAD=1 KEEL_LC_TEST=$2 "$B/broker/keel-broker" --listen 127.0.0.1:0 \
      --data-dir "$T/data-$2" --events "$T/ev-$2" >"$1" 2>/dev/null &
  local pid=$!
  until grep -q '"LIVE"' "$T/ev-$2" 2>/dev/null; do sleep 0.05; done
  kill -TERM "$pid"
  wait "$pid" || true
}
broker_run broker-leak.stdout recorded_broker_run

# 4. Parallel tests through ctest -V -j3: lines of three tests interleave,
#    each prefixed with its test number.
mkdir -p "$T/ct"
cat >"$T/ct/CTestTestfile.cmake" <<CT
add_test(fixture_a stdbuf -oL "$B/leakcheck/tests/test_lc_fixture_leaky")
add_test(fixture_b stdbuf -oL "$B/leakcheck/tests/test_lc_fixture_leaky")
add_test(broker_c bash -c "KEEL_TEST_LEAK_THREAD=1 KEEL_LC_TEST=broker_c \
  '$B/broker/keel-broker' --listen 127.0.0.1:0 --data-dir '$T/data-c' --events '$T/ev-c' 2>/dev/null & \
  until grep -q LIVE '$T/ev-c' 2>/dev/null; do sleep 0.05; done; kill -TERM \\\$!; wait \\\$!")
add_test(clean_d stdbuf -oL "$B/leakcheck/tests/test_lc_fixture_clean")
CT
(cd "$T/ct" && ctest -V -j3 >"$OLDPWD/ctest-parallel.log" 2>&1) || true
sed -i "s|$T|/tmp/REC|g; s|$B|BUILD|g" ctest-parallel.log

# 5. Valgrind XML of small programs with known findings.
cc -g -O0 -o "$T/vg_leak" valgrind/vg_leak.c
cc -g -O0 -pthread -o "$T/vg_race" valgrind/vg_race.c
vg() { # OUT TEST TOOL ARGS... PROGRAM...
  local out=$1 test=$2 tool=$3
  shift 3
  valgrind --tool="$tool" --xml=yes --xml-file="valgrind/$out" \
      --xml-user-comment="<test>$test</test>" "$@" >/dev/null 2>&1 || true
  sed -i "s|$T|/tmp/REC|g" "valgrind/$out"
}
vg memcheck-a.xml vg_leak_a memcheck --leak-check=full "$T/vg_leak"
vg memcheck-b.xml vg_leak_b memcheck --leak-check=full "$T/vg_leak"
vg memcheck-clean.xml vg_clean memcheck --leak-check=full "$T/vg_leak" clean
vg helgrind.xml vg_race_hg helgrind "$T/vg_race"
vg drd.xml vg_race_drd drd "$T/vg_race"
# Killed mid-run: the XML has no FINISHED status.
(timeout -s KILL 4 valgrind --xml=yes --xml-file=valgrind/killed.xml \
    --xml-user-comment="<test>vg_killed</test>" sleep 30 >/dev/null 2>&1) || true
# keel-broker leaking its test thread, no suppressions: a "possibly lost"
# TLS block (leakcheck/valgrind.supp suppresses it) and a still reachable
# lc record.
vg_broker() {
  KEEL_TEST_LEAK_THREAD=1 KEEL_LC_TEST=vg_broker KEEL_LC_GRACE_MS=100 valgrind --leak-check=full \
      --show-leak-kinds=all --xml=yes --xml-file=valgrind/broker-leaktest.xml \
      "$B/broker/keel-broker" --listen 127.0.0.1:0 --data-dir "$T/data-vg" --events "$T/ev-vg" \
      >/dev/null 2>&1 &
  local pid=$!
  until grep -q '"LIVE"' "$T/ev-vg" 2>/dev/null; do sleep 0.1; done
  kill -TERM "$pid"
  wait "$pid" || true
  sed -i "s|$T|/tmp/REC|g; s|$B|BUILD|g" valgrind/broker-leaktest.xml
}
vg_broker
echo "recorded into $(pwd)"
