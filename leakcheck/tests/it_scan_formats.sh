#!/usr/bin/env bash
# it_scan_formats.sh FORMAT BROKER HARNESS KEEL_LEAKS FIXTURES - keel-leaks
# scan finds the leak of a real keel-broker started with the test leak
# switch (KEEL_TEST_LEAK_THREAD=1) in one format of output
# (leakcheck/README.md, "keel-leaks"), with owner, the creation stack and
# the current stack at FILE:LINE:
#   stdout stderr events        the broker run by hand (its three outputs)
#   console tap junit db        keel-harness on FIXTURES/leak_thread.yaml
#   ci-github                   a GitHub Actions raw log (timestamps)
#   ci-gh-jobs                  `gh run view --log`: two jobs in one file
#   ci-gitlab                   a GitLab trace (ANSI colours, section
#                               markers with carriage returns, timestamps)
#   ci-jenkins                  Jenkins: timestamps, two parallel branches
#                               interleaved line by line
#   ci-compose                  docker compose logs ("broker-1  | ...")
#   many                        all of the above at once: grouped across
#                               files (one group, one leak per real run)
# The CI logs are made from the real outputs.  Every wait has a deadline.
set -euo pipefail
FORMAT=$1
BROKER=$(realpath "$2")
HARNESS=$(realpath "$3")
KL=$(realpath "$4")
FIX=$(realpath "$5")
work=$(mktemp -d)
broker_pid=
cleanup() {
  [ -n "$broker_pid" ] && kill -9 "$broker_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "it_scan_formats $FORMAT: FAIL: $*" >&2; exit 1; }

# ---- real outputs -----------------------------------------------------------

# The broker by hand: stdout, stderr and events in files; SIGTERM once LIVE.
run_broker() {
  KEEL_TEST_LEAK_THREAD=1 KEEL_LC_TEST=it_scan_broker KEEL_LC_GRACE_MS=100 \
    "$BROKER" --listen 127.0.0.1:0 --data-dir "$work/data" --events "$work/events.jsonl" \
    >"$work/broker.stdout" 2>"$work/broker.stderr" &
  broker_pid=$!
  local deadline=$((SECONDS + 20))
  until grep -q '"state":"LIVE"' "$work/events.jsonl" 2>/dev/null; do
    [ $SECONDS -lt $deadline ] || fail "the broker did not become LIVE"
    kill -0 "$broker_pid" 2>/dev/null || fail "the broker exited early: $(cat "$work/broker.stderr")"
    sleep 0.05
  done
  kill -TERM "$broker_pid"
  local rc=0
  wait "$broker_pid" || rc=$?
  broker_pid=
  [ "$rc" = 3 ] || fail "broker: exit $rc, expected 3 (leaked)"
}

# keel-harness on the leaking scenario: TAP, JUnit and the run database, or
# the console.
run_harness_tap() {
  local rc=0
  "$HARNESS" run --broker "$BROKER" --tap --junit "$work/junit.xml" --db "$work/run.db" \
    "$FIX/leak_thread.yaml" >"$work/harness.tap" 2>"$work/harness.tap.err" || rc=$?
  [ "$rc" = 1 ] || fail "harness --tap: exit $rc, expected 1: $(cat "$work/harness.tap.err")"
}
run_harness_console() {
  local rc=0
  "$HARNESS" run --broker "$BROKER" --db "$work/run2.db" "$FIX/leak_thread.yaml" \
    >"$work/harness.console" 2>&1 || rc=$?
  [ "$rc" = 1 ] || fail "harness: exit $rc, expected 1: $(cat "$work/harness.console")"
}

# ---- CI logs made from them ---------------------------------------------------

# "2026-03-04T05:06:SS.0000000Z line", seconds counting up from $2.
stamp() { awk -v s="${2:-0}" '{ printf "2026-03-04T05:%02d:%02d.%07dZ %s\n", int((s+NR)/60)%60, (s+NR)%60, NR, $0 }' "$1"; }

make_ci_github() {
  { echo "2026-03-04T05:05:59.0000000Z ##[group]Run ./build/broker/keel-broker"
    stamp "$work/broker.stdout" 0
    stamp "$work/broker.stderr" 20
    echo "2026-03-04T05:07:00.0000000Z ##[endgroup]"; } >"$work/ci-github.log"
}

# gh run view --log: JOB<TAB>STEP<TAB>TIME LINE, one job after the other.
make_ci_gh_jobs() {
  { stamp "$work/broker.stdout" 0 | sed 's/^/broker (linux)\tRun the broker\t/'
    stamp "$work/harness.console" 30 | sed 's/^/scenarios (arm64)\tRun scenarios\t/'; } \
    >"$work/ci-gh-jobs.log"
}

# GitLab: section markers, ANSI colours (the report in bold red), stream
# markers after timestamps.
make_ci_gitlab() {
  local esc=$'\033' cr=$'\r'
  { printf '2026-03-04T05:06:00.000000Z 00O section_start:1772600760:step_script%s%s[0K%s[0;36mRunning the broker%s[0;m\n' "$cr" "$esc" "$esc" "$esc"
    awk -v e="$esc" '{ printf "2026-03-04T05:06:%02d.000000Z 00O %s[31;1m%s%s[0m\n", NR % 60, e, $0, e }' "$work/broker.stdout"
    printf '2026-03-04T05:06:59.000000Z 00O section_end:1772600819:step_script%s%s[0K\n' "$cr" "$esc"; } \
    >"$work/ci-gitlab.log"
}

# Jenkins: "[TIME] [branch] LINE", two parallel branches interleaved.
make_ci_jenkins() {
  paste -d '\n' <(sed 's/^/[linux] /' "$work/broker.stdout") <(sed 's/^/[arm] /' "$work/harness.tap") |
    grep -v '^$' | awk '{ printf "[2026-03-04T05:%02d:%02d.000Z] %s\n", int(NR/60), NR % 60, $0 }' \
    >"$work/ci-jenkins.log"
}

# docker compose logs: "NAME  | LINE" for the broker's stdout and stderr.
make_ci_compose() {
  { sed 's/^/broker-1  | /' "$work/broker.stdout"; sed 's/^/broker-1  | /' "$work/broker.stderr"; } \
    >"$work/ci-compose.log"
}

# ---- the check ----------------------------------------------------------------

# scan FILE... then check the JSON with EXPECT (python: the group g, the
# whole document d).
scan() {
  local expect=$1
  shift
  local rc=0
  (cd "$work" && "$KL" scan --json "$@") >"$work/scan.json" 2>"$work/scan.err" || rc=$?
  [ "$rc" = 1 ] || { cat "$work/scan.json" "$work/scan.err"; fail "keel-leaks scan $*: exit $rc, expected 1 (leaks)"; }
  (cd "$work" && "$KL" scan "$@") >"$work/scan.txt" || true
  python3 - "$work/scan.json" "$expect" <<'PY' || { cat "$work/scan.txt"; fail "keel-leaks scan $*: see above"; }
import json, sys
d = json.load(open(sys.argv[1]))
assert d["groups_count"] == 1, "want one group, got %d" % d["groups_count"]
g = d["groups"][0]
assert (g["kind"], g["name"]) == ("THREAD", "keel-leaktest"), g
assert g["created_at"].startswith("main (broker/cmd/keel-broker.c:"), g["created_at"]
assert [o["owner"] for o in g["owners"]] == ["broker-test"], g["owners"]
# the creation stack at FILE:LINE, the creation site on top
cs = g["created_stacks"]
assert cs and cs[0]["frames"][0].startswith("main@broker/cmd/keel-broker.c:"), cs
# the current stack: blocked in pause() under leak_on_purpose, at FILE:LINE
st = g["stacks"]
assert st and not st[0].get("unavailable"), st
assert any(f.startswith("leak_on_purpose@broker/cmd/keel-broker.c:") for f in st[0]["frames"]), st
exec(sys.argv[2])
PY
  grep -q '^  now at:$' "$work/scan.txt" || { cat "$work/scan.txt"; fail "text: no current stack"; }
  grep -Eq '^    #[0-9]+ leak_on_purpose \(broker/cmd/keel-broker\.c:[0-9]+\)$' "$work/scan.txt" \
    || { cat "$work/scan.txt"; fail "text: the current stack has no FILE:LINE"; }
  grep -Eq '^    #0 main \(broker/cmd/keel-broker\.c:[0-9]+\)$' "$work/scan.txt" \
    || { cat "$work/scan.txt"; fail "text: the creation stack has no FILE:LINE"; }
  grep -q 'owner broker-test' "$work/scan.txt" || { cat "$work/scan.txt"; fail "text: no owner"; }
  cat "$work/scan.txt"
}

one='assert g["count"] == 1, g["count"]'
case "$FORMAT" in
  stdout)  run_broker; scan "$one; assert g['first_test'] == 'it_scan_broker'" broker.stdout ;;
  stderr)  run_broker; scan "$one; assert g['first_test'] == 'it_scan_broker'; assert g['first_time']" broker.stderr ;;
  events)  run_broker; scan "$one; assert g['first_test'] == 'it_scan_broker'; assert g['first_time'].startswith('20')" events.jsonl ;;
  console) run_harness_console
           grep -q 'node n1 leaked: LEAKED THREAD name=keel-leaktest' "$work/harness.console" \
             || fail "the harness console's leak line does not carry the LEAKED line"
           scan "$one; assert g['first_test'] == 'leak_thread'" harness.console ;;
  tap)     run_harness_tap; scan "$one; assert g['first_test'] == 'leak_thread'" harness.tap ;;
  junit)   run_harness_tap
           scan "$one; assert g['first_test'] == 'leak_thread'; assert g['first_seen'].startswith('junit.xml:')" junit.xml ;;
  db)      run_harness_tap; scan "$one; assert g['first_test'] == 'leak_thread'; assert g['first_time']" run.db ;;
  ci-github)
    run_broker; make_ci_github
    scan "$one; assert g['reports'] == 2, g
assert g['first_time'].startswith('2026-03-04T05:'), g" ci-github.log ;;
  ci-gh-jobs)
    run_broker; run_harness_console; make_ci_gh_jobs
    scan "assert g['count'] == 2, g
assert sorted(j['job'] for j in g['jobs']) == ['broker (linux)', 'scenarios (arm64)'], g['jobs']
assert sorted(t['test'] for t in g['tests']) == ['it_scan_broker', 'leak_thread'], g['tests']
assert g['first_time'] < g['last_time'], g" ci-gh-jobs.log ;;
  ci-gitlab)
    run_broker; make_ci_gitlab
    scan "$one; assert g['first_test'] == 'it_scan_broker'
assert g['first_time'].startswith('2026-03-04T05:06:'), g
assert not any('\x1b' in f for s in g['stacks'] + g['created_stacks'] for f in s['frames'])" ci-gitlab.log ;;
  ci-jenkins)
    run_broker; run_harness_tap; make_ci_jenkins
    scan "assert g['count'] == 2, g
assert sorted(j['job'] for j in g['jobs']) == ['arm', 'linux'], g['jobs']" ci-jenkins.log ;;
  ci-compose)
    run_broker; make_ci_compose
    scan "$one; assert g['reports'] == 2, g
assert [j['job'] for j in g['jobs']] == ['broker-1'], g['jobs']" ci-compose.log ;;
  many)
    run_broker; run_harness_tap; run_harness_console
    make_ci_github; make_ci_gh_jobs; make_ci_gitlab; make_ci_jenkins; make_ci_compose
    # three real runs (the broker, the harness twice); every file names
    # one of their threads again: 3 leaks, one group, 13 files
    scan "assert g['count'] == 3, g
assert d['files_read'] == 13, d['files_read']
assert len(g['files']) == 13, g['files']
assert sorted((t['test'], t['count']) for t in g['tests']) == [('it_scan_broker', 1), ('leak_thread', 2)], g['tests']" \
      broker.stdout broker.stderr events.jsonl harness.console harness.tap junit.xml run.db \
      ci-github.log ci-gh-jobs.log ci-gitlab.log ci-jenkins.log ci-compose.log run2.db ;;
  *) fail "unknown format $FORMAT" ;;
esac
echo "it_scan_formats $FORMAT: OK"
