#!/usr/bin/env bash
# it_replay.sh HARNESS BROKER - replay (harness/README.md, "Replay") on a
# pair scenario (fixtures/replay/pair.yaml): a clean rerun is "same"; a
# recorded text tampered with -- an extra kill step, a backup configured
# so that two nodes serve, another message count -- is replayed as
# recorded and each divergence is named at its step, with the findings of
# both runs; a file edited after the recording is warned about (and
# replayed with --use-file); a schema version 1 recording (no texts) is
# replayed from its file and upgraded when written to.
set -euo pipefail
HARNESS=$1
BROKER=$2
HERE=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "it_replay: FAIL: $*" >&2; exit 1; }
cd "$work"
cp "$HERE/fixtures/replay/pair.yaml" pair.yaml
"$HARNESS" lint pair.yaml
"$HARNESS" run --broker "$BROKER" --db r.db pair.yaml > run.out || { cat run.out; fail "the recorded run failed"; }

# 1. As recorded: the same, the replay's recording kept and named.
rc=0; "$HARNESS" replay r.db --broker "$BROKER" > same.out 2>&1 || rc=$?
cat same.out
[ "$rc" = 0 ] || fail "a clean replay exits $rc"
grep -q '^  same: 10 steps, 20 message keys, [0-9]* events compared in order, [0-9]* by presence' same.out \
  || fail "no 'same' line"
grep -q '^  findings, recorded: none$' same.out || fail "recorded findings not printed"
grep -q '^  findings, replay: none$' same.out || fail "replay findings not printed"
grep -q '^replay: 1 scenario(s), 0 differ; the replay.s recording: runs/replay-' same.out \
  || fail "the replay's recording is not named"
kept=$(sed -n 's/.*the replay.s recording: \(runs\/replay-[^ ]*\.db\).*/\1/p' same.out)
[ -f "$kept" ] || fail "$kept was not kept"
[ "$(sqlite3 "$kept" "SELECT outcome FROM scenarios")" = pass ] || fail "$kept: no passing scenario"
# (into a file: `show | grep -q` under pipefail fails when grep exits first)
"$HARNESS" show r.db > show.out
grep -q ' seq 1  *state STARTING$' show.out || fail "show does not print seq"

# Tampering: the recorded text is what replay runs.
tamper() { # DB SQL-REPLACE-FROM SQL-REPLACE-TO
  cp r.db "$1"
  sqlite3 "$1" "UPDATE scenarios SET text = replace(text, '$2', '$3')"
  [ "$(sqlite3 "$1" "SELECT instr(text, '$3') > 0 FROM scenarios")" = 1 ] || fail "$1 not tampered"
}
nl="' || char(10) || '"

# 2. An extra kill step before the consume.
tamper k.db "  - consume:" "  - kill: {node: backup1}$nl  - consume:"
rc=0; "$HARNESS" replay k.db --broker "$BROKER" --db kr.db > k.out 2>&1 || rc=$?
cat k.out
[ "$rc" = 1 ] || fail "extra kill: exit $rc, expected 1"
grep -A2 '^   [0-9]*\. step replay #8 kill backup1$' k.out | grep -q 'recorded: (none)' \
  || fail "extra kill: the step is not named"
grep -A2 '^   [0-9]*\. findings$' k.out | grep -q 'replay:   1 no-receipted-lost error(s)' \
  || fail "extra kill: the finding is not a divergence"
grep -A1 '^  findings, replay:$' k.out | grep -q 'ERROR no-receipted-lost' \
  || fail "extra kill: the replay's findings are not printed"
grep -A2 'messages /queue/rp at step #8 consume backup1$' k.out \
  | grep -q 'replay:   0 consumed' || fail "extra kill: consumption not compared"
grep -q '^  DIFFERS: ' k.out || fail "extra kill: no DIFFERS"

# 3. The backup configured as a second primary that trusts its journal:
# two nodes serve at once.
tamper l.db "        role: backup$nl" "        role: primary$nl        check-for-live-server: false$nl"
rc=0; "$HARNESS" replay l.db --broker "$BROKER" --db lr.db > l.out 2>&1 || rc=$?
cat l.out
[ "$rc" = 1 ] || fail "two lives: exit $rc, expected 1"
grep -A2 '^   [0-9]*\. findings$' l.out | grep -q 'replay:   1 single-live error(s): live1 and backup1 both serving' \
  || fail "two lives: single-live is not a divergence"
grep -A1 '^  findings, replay:$' l.out | grep -q 'ERROR single-live' \
  || fail "two lives: the replay's findings are not printed"
grep -A2 '^   [0-9]*\. node backup1 at step #3 await backup1$' l.out > l.first || true
grep -q 'recorded: seq 2 replication.listening .*"role":"backup"' l.first \
  && grep -q 'replay:   seq 2 replication.listening .*"role":"primary".*#2 start backup1)' l.first \
  || fail "two lives: the backup's start is not the divergence"

# 4. Another message count: 25 instead of 20.
tamper c.db "count: 20," "count: 25,"
rc=0; "$HARNESS" replay c.db --broker "$BROKER" --db cr.db > c.out 2>&1 || rc=$?
cat c.out
[ "$rc" = 1 ] || fail "count: exit $rc, expected 1"
grep -A2 '^   [0-9]*\. messages /queue/rp at step #4 produce live1$' c.out > c.first || true
grep -q 'recorded: 20 receipted' c.first && grep -q 'replay:   25 receipted' c.first \
  || fail "count: the receipts of step #4 are not the divergence"
grep -A1 '^   [0-9]*\. step #4 produce live1$' c.out | grep -q '"count":20' \
  || fail "count: the changed step is not named"

# 5. The file edited since the recording: a warning, the recorded text
# runs; --use-file runs the file.
sed -i 's/count: 20,/count: 21,/' pair.yaml
rc=0; "$HARNESS" replay r.db --broker "$BROKER" --db fr.db > f.out 2>&1 || rc=$?
cat f.out
[ "$rc" = 0 ] || fail "edited file: the recorded text did not replay the same (exit $rc)"
grep -q "WARNING: .*pair.yaml changed since the recording (sha256 .* recorded, .* on disk): replaying the recorded text" f.out \
  || fail "edited file: no warning"
rc=0; "$HARNESS" replay r.db --broker "$BROKER" --db ur.db --use-file > u.out 2>&1 || rc=$?
[ "$rc" = 1 ] || fail "--use-file: exit $rc, expected 1"
grep -q 'replay:   21 receipted' u.out || fail "--use-file did not run the file"

# 6. A schema version 1 recording (before texts were kept): replayed from
# its file, with a note; a run into it adds the columns.
cp "$HERE/fixtures/replay/pair.yaml" pair.yaml
cp r.db v1.db
sqlite3 v1.db "ALTER TABLE scenarios DROP COLUMN text; ALTER TABLE scenarios DROP COLUMN text_sha256;
               ALTER TABLE runs DROP COLUMN broker_version; ALTER TABLE runs DROP COLUMN broker_build_id;
               ALTER TABLE steps DROP COLUMN line; UPDATE meta SET value = '1'"
rc=0; "$HARNESS" replay v1.db --broker "$BROKER" --db v1r.db > v1.out 2>&1 || rc=$?
cat v1.out
[ "$rc" = 0 ] || fail "version 1: exit $rc"
grep -q 'the recording has no scenario text (recorded before they were kept): replaying the file' v1.out \
  || fail "version 1: no note"
"$HARNESS" run --broker "$BROKER" --db v1.db pair.yaml > /dev/null
[ "$(sqlite3 v1.db "SELECT value FROM meta WHERE key = 'schema_version'")" = 3 ] || fail "not upgraded"
[ "$(sqlite3 v1.db "SELECT count(*) FROM scenarios WHERE text IS NOT NULL")" = 1 ] \
  || fail "upgraded file: the new run has no text"
echo "it_replay: OK"
