#!/usr/bin/env bash
# it_cli.sh - keel-broker's and keelctl's command lines, end to end.
#
# Usage: it_cli.sh KEEL-BROKER KEELCTL.  Starts brokers on 127.0.0.1:0
# with their events in a FIFO (waits are reads with deadlines, never
# sleeps), then checks keelctl produce/consume/perf, a consume that
# outlives connection-ttl (keelctl's heart-beats), user hash-password
# with a config that uses the hash, usage errors (exit 2), --help,
# --version, --check-config on good and bad files, and the refusal of a
# non-loopback listen without users; a damaged journal refused at start,
# keelctl journal check and salvage, and the salvaged journal served.  KEEL_BROKER_WRAPPER prefixes every
# keel-broker run.  Prints TAP; exit 1 when a check failed.
set -u
BROKER_BIN=${1:?usage: it_cli.sh KEEL-BROKER KEELCTL}
KEELCTL=${2:?usage: it_cli.sh KEEL-BROKER KEELCTL}
read -r -a WRAP <<<"${KEEL_BROKER_WRAPPER:-}"
SCALE=${KEEL_IT_TIMEOUT_SCALE:-1}
[ -n "${KEEL_BROKER_WRAPPER:-}" ] && [ -z "${KEEL_IT_TIMEOUT_SCALE:-}" ] && SCALE=20
T=$((10 * SCALE))      # seconds for anything that should be quick

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-it-cli-XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
  n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"
  [ -n "${2:-}" ] && [ -f "$2" ] && sed 's/^/#   /' "$2"
  return 0
}
# check NAME OUTFILE CMD...: the command must exit 0.
check() {
  local name=$1 out=$2; shift 2
  if timeout "$T" "$@" >"$out" 2>&1; then ok "$name"; else not_ok "$name (exit $?)" "$out"; fi
}
# check_exit NAME WANT OUTFILE CMD...: the command must exit WANT.
check_exit() {
  local name=$1 want=$2 out=$3 rc=0; shift 3
  timeout "$T" "$@" >"$out" 2>&1 || rc=$?
  if [ "$rc" = "$want" ]; then ok "$name"; else not_ok "$name (exit $rc, want $want)" "$out"; fi
}
BROKER=("${WRAP[@]}" "$BROKER_BIN")

# start_broker NAME ARGS...: starts a broker, sets PORT_<NAME> via $PORT
# and PID; 0 once `state LIVE` was read from its events FIFO.
PORT= PID= EVFD=
start_broker() {
  local name=$1; shift
  mkfifo "$tmp/$name.events"
  exec {EVFD}<>"$tmp/$name.events"
  "${BROKER[@]}" --listen 127.0.0.1:0 --data-dir "$tmp/$name.data" --events "$tmp/$name.events" \
         --name "$name" "$@" 2>"$tmp/$name.log" &
  PID=$!
  PIDS+=("$PID")
  PORT=
  wait_event '"state":"LIVE"' $((15 * SCALE))
}
# wait_event REGEX SECONDS (on the current EVFD/PID).
wait_event() {
  local deadline=$((SECONDS + $2)) line
  while (( SECONDS < deadline )); do
    if IFS= read -r -t 1 -u "$EVFD" line; then
      echo "$line" >>"$tmp/events.all"
      if [[ $line =~ \"type\":\"acceptor.listening\".*\"port\":([0-9]+) ]]; then
        PORT=${BASH_REMATCH[1]}
      fi
      [[ $line =~ $1 ]] && return 0
    elif ! kill -0 "$PID" 2>/dev/null; then
      return 1
    fi
  done
  return 1
}
# stop_broker: SIGTERM, STOPPED, exit 0.
stop_broker() {
  local name=$1 rc=0
  kill -TERM "$PID"
  if ! wait_event '"state":"STOPPED"' "$T"; then
    not_ok "$name: STOPPED after SIGTERM" "$tmp/$name.log"
    return
  fi
  wait "$PID" || rc=$?
  if [ "$rc" = 0 ]; then ok "$name: exit 0 after SIGTERM"; else not_ok "$name: exit $rc after SIGTERM" "$tmp/$name.log"; fi
}

echo "# keel-broker: $BROKER_BIN"
echo "# keelctl: $KEELCTL"

# ---- keel-broker's own command line -------------------------------------
check "keel-broker --help" "$tmp/help" "${BROKER[@]}" --help
grep -q -- '--listen' "$tmp/help" && ok "--help lists --listen" || not_ok "--help lists --listen" "$tmp/help"
check "keel-broker --version" "$tmp/version" "${BROKER[@]}" --version
grep -Eq '[0-9]+\.[0-9]+\.[0-9]+' "$tmp/version" && ok "--version prints a version" \
  || not_ok "--version prints a version" "$tmp/version"
check_exit "keel-broker --no-such-flag: usage error" 2 "$tmp/badflag" "${BROKER[@]}" --no-such-flag

cat >"$tmp/good.yaml" <<'EOF'
name: cli
address-settings:
  - match: "cli.#"
    max-delivery-attempts: 3
EOF
check "--check-config on a good file" "$tmp/good.out" "${BROKER[@]}" --config "$tmp/good.yaml" --check-config
grep -q 'config OK' "$tmp/good.out" && ok "--check-config says config OK" || not_ok "--check-config says config OK" "$tmp/good.out"

cat >"$tmp/bad.yaml" <<'EOF'
name: cli
address-settings:
  - match: "cli.#"
    max-delivery-attempts: lots
EOF
check_exit "--check-config on a bad file: exit 2" 2 "$tmp/bad.out" "${BROKER[@]}" --config "$tmp/bad.yaml" --check-config
grep -q 'bad.yaml:4' "$tmp/bad.out" && ok "bad config error names file:line (bad.yaml:4)" \
  || not_ok "bad config error names file:line (bad.yaml:4)" "$tmp/bad.out"
printf 'name: cli\nno-such-key: 1\n' >"$tmp/unknown.yaml"
check_exit "unknown key: exit 2" 2 "$tmp/unknown.out" "${BROKER[@]}" --config "$tmp/unknown.yaml" --check-config
grep -q 'unknown.yaml:2' "$tmp/unknown.out" && grep -q 'no-such-key' "$tmp/unknown.out" \
  && ok "unknown key error names file:line and key" || not_ok "unknown key error names file:line and key" "$tmp/unknown.out"
check_exit "missing config file: exit 2" 2 "$tmp/missing.out" "${BROKER[@]}" --config "$tmp/nope.yaml" --check-config

check_exit "non-loopback --listen without users is refused" 2 "$tmp/open.out" \
  "${BROKER[@]}" --listen 0.0.0.0:0 --data-dir "$tmp/open.data"
[ -s "$tmp/open.out" ] && ok "the refusal says why" || not_ok "the refusal says why" "$tmp/open.out"

# ---- keelctl usage -------------------------------------------------------
check_exit "keelctl without a command: exit 2" 2 "$tmp/k0" "$KEELCTL"
check_exit "keelctl unknown command: exit 2" 2 "$tmp/k1" "$KEELCTL" frobnicate
check_exit "keelctl produce --no-such-flag: exit 2" 2 "$tmp/k2" "$KEELCTL" produce --no-such-flag
check "keelctl --help" "$tmp/k3" "$KEELCTL" --help

# ---- an open broker: produce, consume, perf ------------------------------
if start_broker open; then
  ok "open broker LIVE on port $PORT"
  check "keelctl produce 5 with receipts" "$tmp/produce.out" \
    "$KEELCTL" --port "$PORT" produce --destination /queue/cli.q --count 5 --body hello-cli --receipts
  check "keelctl consume 5" "$tmp/consume.out" \
    "$KEELCTL" --port "$PORT" consume --destination /queue/cli.q --count 5 --print
  bodies=$(grep -c '^hello-cli$' "$tmp/consume.out")
  [ "$bodies" = 5 ] && ok "consume printed the 5 bodies" || not_ok "consume printed the 5 bodies ($bodies)" "$tmp/consume.out"
  # Nothing left: a consume with a short timeout gets nothing.
  check_exit "consume on an empty queue times out (exit 1)" 1 "$tmp/empty.out" \
    "$KEELCTL" --port "$PORT" --timeout 300 consume --destination /queue/cli.q --count 1
  check "keelctl perf --json" "$tmp/perf.json" \
    "$KEELCTL" --port "$PORT" perf --producers 1 --consumers 1 --size 128 --count 2000 --json
  if /usr/bin/python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(0 if d["messages"] == 2000 and d["lost"] == 0 and d["duplicated"] == 0 and d["ok"] else 1)
' "$tmp/perf.json" 2>"$tmp/perf.err"; then
    ok "perf --json: 2000 messages, none lost or duplicated"
  else
    not_ok "perf --json: 2000 messages, none lost or duplicated" "$tmp/perf.json"
  fi
  check "keelctl perf 2x2 (text)" "$tmp/perf.txt" \
    "$KEELCTL" --port "$PORT" perf --producers 2 --consumers 2 --size 64 --count 2000
  stop_broker open
else
  not_ok "open broker LIVE" "$tmp/open.log"
fi

# ---- a damaged journal: refused at start, checked, salvaged -------------
# 600 receipted messages in 64 KiB segments; one bit of the oldest
# segment's header (its `created` field) flipped while the broker is down.
printf 'journal-file-size: 65536\n' >"$tmp/jrn.yaml"
if start_broker jrn --config "$tmp/jrn.yaml"; then
  check "journal: 600 receipted messages" "$tmp/jp.out" \
    "$KEELCTL" --port "$PORT" produce --destination /queue/cli.j --count 600 --size 200 --persistent --receipts
  stop_broker jrn
  seg="$tmp/jrn.data/journal/keel-000000000001.jnl"
  byte=$(od -An -tu1 -j48 -N1 "$seg" | tr -d ' ')
  printf "$(printf '\\%03o' $((byte ^ 8)))" | dd of="$seg" bs=1 seek=48 conv=notrunc status=none
  rm -f "$tmp/jrn.events"
  rc=0
  start_broker jrn --config "$tmp/jrn.yaml" || rc=1
  if [ "$rc" = 1 ]; then
    wait "$PID"; rc=$?
    [ "$rc" = 2 ] && ok "damaged journal: the broker refuses to start (exit 2)" \
      || not_ok "damaged journal: the broker refuses to start (exit $rc, want 2)" "$tmp/jrn.log"
    grep -q 'keel-000000000001.jnl: segment header damaged' "$tmp/jrn.log" \
      && ok "the refusal names the file and the damage" || not_ok "the refusal names the file and the damage" "$tmp/jrn.log"
  else
    not_ok "damaged journal: the broker refuses to start (it said LIVE)" "$tmp/jrn.log"
    stop_broker jrn
  fi
  check_exit "keelctl journal check: damaged (exit 1)" 1 "$tmp/jc.out" \
    "$KEELCTL" journal check --data-dir "$tmp/jrn.data"
  grep -q '^damage: keel-000000000001.jnl: segment header damaged' "$tmp/jc.out" \
    && ok "check names the damage" || not_ok "check names the damage" "$tmp/jc.out"
  check "keelctl journal salvage" "$tmp/js.out" "$KEELCTL" journal salvage --data-dir "$tmp/jrn.data"
  grep -q '^salvaged: ' "$tmp/js.out" && ls "$tmp"/jrn.data/journal/damaged-*/damage.txt >/dev/null 2>&1 \
    && ok "salvage moved the old files and damage.txt aside" || not_ok "salvage moved the old files and damage.txt aside" "$tmp/js.out"
  check_exit "keelctl journal check after salvage: clean (exit 0)" 0 "$tmp/jc2.out" \
    "$KEELCTL" journal check --data-dir "$tmp/jrn.data"
  rm -f "$tmp/jrn.events"
  if start_broker jrn --config "$tmp/jrn.yaml"; then
    ok "salvaged journal: the broker starts"
    check "salvaged journal: all 600 messages there" "$tmp/jcons.out" \
      "$KEELCTL" --port "$PORT" consume --destination /queue/cli.j --count 600
    stop_broker jrn
  else
    not_ok "salvaged journal: the broker starts" "$tmp/jrn.log"
  fi
else
  not_ok "journal broker LIVE" "$tmp/jrn.log"
fi

# ---- keelctl offers heart-beats: a receive outlives connection-ttl --------
# (a client without heart-beats that only waits is closed after it)
printf 'connection-ttl: %d\n' $((400 * SCALE)) >"$tmp/ttl.yaml"
if start_broker ttl --config "$tmp/ttl.yaml"; then
  ok "broker with connection-ttl $((400 * SCALE)) ms LIVE on port $PORT"
  check "keelctl consume --until-empty --idle $((1500 * SCALE)) outlives connection-ttl" \
    "$tmp/ttl.out" "$KEELCTL" --port "$PORT" consume --destination /queue/cli.ttl --until-empty \
    --idle $((1500 * SCALE))
  stop_broker ttl
else
  not_ok "broker with a short connection-ttl LIVE" "$tmp/ttl.log"
fi

# ---- users: hash-password, a config that uses it, logins -----------------
if "$KEELCTL" user hash-password --password 'cli-s3cret' >"$tmp/hash.out" 2>&1; then
  ok "keelctl user hash-password"
else
  not_ok "keelctl user hash-password (exit $?)" "$tmp/hash.out"
fi
HASH=$(grep -Eo '\$[a-z0-9]+\$[^[:space:]]+' "$tmp/hash.out" | head -1)
[ -n "$HASH" ] && ok "hash-password printed a crypt hash" || not_ok "hash-password printed a crypt hash" "$tmp/hash.out"
cat >"$tmp/users.yaml" <<EOF
users:
  - name: carol
    password-hash: "$HASH"
    roles: [app]
security-settings:
  - match: "cli.#"
    send: [app]
    consume: [app]
EOF
check "--check-config with the new hash" "$tmp/users.check" "${BROKER[@]}" --config "$tmp/users.yaml" --check-config
if start_broker secure --config "$tmp/users.yaml"; then
  ok "secure broker LIVE on port $PORT"
  check "login with the hashed password: produce" "$tmp/sp.out" \
    "$KEELCTL" --port "$PORT" --user carol --password cli-s3cret produce --destination /queue/cli.s --count 1 --receipts
  check "login with the hashed password: consume" "$tmp/sc.out" \
    "$KEELCTL" --port "$PORT" --user carol --password cli-s3cret consume --destination /queue/cli.s --count 1
  rc=0
  timeout "$T" "$KEELCTL" --port "$PORT" --user carol --password wrong produce --destination /queue/cli.s --count 1 >"$tmp/sw.out" 2>&1 || rc=$?
  if [ "$rc" != 0 ] && [ "$rc" != 124 ]; then ok "wrong password refused (exit $rc)"; else not_ok "wrong password refused (exit $rc)" "$tmp/sw.out"; fi
  stop_broker secure
else
  not_ok "secure broker LIVE" "$tmp/secure.log"
fi

echo "1..$n"
[ "$failed" = 0 ]
