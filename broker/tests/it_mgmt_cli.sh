#!/usr/bin/env bash
# it_mgmt_cli.sh - keelctl's management commands against a real keel-broker.
#
# Usage: it_mgmt_cli.sh KEEL-BROKER KEELCTL.  Starts one broker with users
# (admin may manage, app may not) on 127.0.0.1:0, events in a FIFO (waits
# are reads with deadlines, never sleeps), then checks `keelctl queue stat`
# (table, --json, filters, --max-rows, --loop), queue and address
# create/delete/purge/pause/resume/show/list, broker and bridge status,
# error replies (`error: <message>`, exit 1), usage errors (exit 2),
# --help of every subcommand, --url lists and KEEL_PASSWORD.  Prints TAP.
set -u
BROKER_BIN=${1:?usage: it_mgmt_cli.sh KEEL-BROKER KEELCTL}
KEELCTL=${2:?usage: it_mgmt_cli.sh KEEL-BROKER KEELCTL}
read -r -a WRAP <<<"${KEEL_BROKER_WRAPPER:-}"
SCALE=${KEEL_IT_TIMEOUT_SCALE:-1}
[ -n "${KEEL_BROKER_WRAPPER:-}" ] && [ -z "${KEEL_IT_TIMEOUT_SCALE:-}" ] && SCALE=20
T=$((10 * SCALE))
PY=$(command -v python3 || true)

tmp=$(mktemp -d "${TMPDIR:-/tmp}/keel-it-mgmt-XXXXXX")
BPID=
cleanup() {
  [ -n "$BPID" ] && kill -KILL "$BPID" 2>/dev/null
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
# run WANT_EXIT NAME CMD...: output (stdout+stderr) in $tmp/out.
run() {
  local want=$1 name=$2 rc=0; shift 2
  timeout "$T" "$@" >"$tmp/out" 2>&1 || rc=$?
  if [ "$rc" = "$want" ]; then ok "$name"; else not_ok "$name (exit $rc, want $want)" "$tmp/out"; fi
}
# has REGEX NAME: the last output matches.
has() { if grep -Eq -- "$1" "$tmp/out"; then ok "$2"; else not_ok "$2 (no /$1/)" "$tmp/out"; fi; }
hasnt() { if grep -Eq -- "$1" "$tmp/out"; then not_ok "$2 (/$1/ found)" "$tmp/out"; else ok "$2"; fi; }

HASH='$y$j9T$IL1E3nERihEdR9AxDgNKP.$XvYaG0NaCglaPyAsE81dSFubwJJyFK3AWvD5hR1aho.' # s3cret
cat >"$tmp/broker.yaml" <<EOF
users:
  - {name: admin, password-hash: "$HASH", roles: [admin]}
  - {name: app, password-hash: "$HASH", roles: [app]}
security-settings:
  - {match: "#", send: [admin, app], consume: [admin, app]}
  - {match: "keel.management", manage: [admin]}
EOF

mkfifo "$tmp/events"
exec {EVFD}<>"$tmp/events"
"${WRAP[@]}" "$BROKER_BIN" --config "$tmp/broker.yaml" --listen 127.0.0.1:0 \
  --data-dir "$tmp/data" --events "$tmp/events" --name clim 2>"$tmp/broker.log" &
BPID=$!
PORT=
deadline=$((SECONDS + 15 * SCALE))
live=false
while (( SECONDS < deadline )); do
  if IFS= read -r -t 1 -u "$EVFD" line; then
    [[ $line =~ \"type\":\"acceptor.listening\".*\"port\":([0-9]+) ]] && PORT=${BASH_REMATCH[1]}
    [[ $line =~ \"state\":\"LIVE\" ]] && { live=true; break; }
  elif ! kill -0 "$BPID" 2>/dev/null; then
    break
  fi
done
if ! $live; then
  not_ok "broker LIVE" "$tmp/broker.log"
  echo "1..$n"; exit 1
fi
ok "broker LIVE on port $PORT"

K=("$KEELCTL" --port "$PORT" --user admin --password s3cret --timeout $((5000 * SCALE)))
KA=("$KEELCTL" --port "$PORT" --user app --password s3cret --timeout $((5000 * SCALE)))

# ---- help and usage ---------------------------------------------------------
run 0 "keelctl --help" "$KEELCTL" --help
for c in queue address broker bridge; do has "^  $c " "keelctl --help lists $c"; done
has -- "--url" "keelctl --help documents --url"
has "KEEL_PASSWORD" "keelctl --help documents KEEL_PASSWORD"
for c in queue address broker bridge; do
  run 0 "keelctl $c --help" "$KEELCTL" "$c" --help
  has "^usage: keelctl $c" "keelctl $c --help shows its usage"
done
for a in stat list create delete purge pause resume; do
  run 0 "keelctl queue $a --help" "$KEELCTL" queue "$a" --help
  has "  $a " "queue $a --help describes $a"
done
for a in list show create delete; do run 0 "keelctl address $a --help" "$KEELCTL" address "$a" --help; done
run 0 "keelctl broker status --help" "$KEELCTL" broker status --help
run 0 "keelctl bridge status --help" "$KEELCTL" bridge status --help
has "exit codes: 0 ok, 1 failure, 2 usage" "help states the exit codes"

run 2 "queue without an action: exit 2" "$KEELCTL" queue
run 2 "queue frob: exit 2" "$KEELCTL" queue frob
run 2 "queue create without --name: exit 2" "${K[@]}" queue create
has "--name is required" "  ... says --name is required"
run 2 "queue stat --bogus: exit 2" "${K[@]}" queue stat --bogus
run 2 "queue stat --max-rows 0: exit 2" "${K[@]}" queue stat --max-rows 0
run 2 "queue stat --field without --operation/--value: exit 2" "${K[@]}" queue stat --field NAME
run 2 "queue stat --interval without --loop: exit 2" "${K[@]}" queue stat --interval 10
run 2 "queue purge --force (not its option): exit 2" "${K[@]}" queue purge --name x --force
run 2 "bad --url: exit 2" "$KEELCTL" --url nonsense broker status
run 2 "bad --url port: exit 2" "$KEELCTL" --url tcp://127.0.0.1:99999 broker status

# ---- queue and address commands ----------------------------------------------
run 0 "queue create" "${K[@]}" queue create --name cli.q1 --no-durable --max-consumers 5
has "created queue cli.q1 on address cli.q1 \(ANYCAST, non-durable\)" "  ... says what it created"
run 0 "produce 3 to cli.q1" "${K[@]}" produce --destination /queue/cli.q1 --count 3 --receipts
run 0 "queue create cli.q2 (multicast, on cli.addr)" "${K[@]}" queue create --name cli.q2 \
  --address cli.addr --routing-type MULTICAST --purge-on-no-consumers

run 0 "queue stat" "${K[@]}" queue stat
head -1 "$tmp/out" >"$tmp/header"
if grep -Eq '^\|NAME *\|ADDRESS *\|CONSUMER_COUNT\|MESSAGE_COUNT\|MESSAGES_ADDED\|DELIVERING_COUNT\|MESSAGES_ACKED\|SCHEDULED_COUNT\|PAGED_COUNT\|ROUTING_TYPE\|$' "$tmp/header"; then
  ok "queue stat header has the ten columns in order"
else
  not_ok "queue stat header has the ten columns in order" "$tmp/out"
fi
has '^\|cli\.q1 *\|cli\.q1 *\|0 *\|3 *\|3 *\|0 *\|0 *\|0 *\|0 *\|ANYCAST *\|$' "queue stat row of cli.q1: 3 messages, 3 added"
has '^\|cli\.q2 *\|cli\.addr *\|0 *\|0 *\|0 *\|0 *\|0 *\|0 *\|0 *\|MULTICAST *\|$' "queue stat row of cli.q2"
hasnt 'keelctl\.reply' "queue stat does not list keelctl's own reply queue"

run 0 "queue stat --json" "${K[@]}" queue stat --json
if [ -n "$PY" ] && "$PY" - "$tmp/out" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["status"] == "ok" and r["operation"] == "list-queues", r
q = {x["name"]: x for x in r["queues"]}
a = q["cli.q1"]
assert a["message-count"] == 3 and a["messages-added"] == 3 and a["durable"] is False, a
for k in ("name", "address", "routing-type", "durable", "consumer-count", "message-count",
          "delivering-count", "messages-added", "messages-acked", "messages-expired",
          "dead-lettered", "scheduled-count", "bytes-in-memory"):
    assert k in a, k
assert r["count"] == len(r["queues"]) == r["total"]
EOF
then ok "queue stat --json parses, with every stat field"; else not_ok "queue stat --json parses, with every stat field" "$tmp/out"; fi

run 0 "queue stat --queue-name q2" "${K[@]}" queue stat --queue-name q2
has '^\|cli\.q2 *\|' "  ... lists cli.q2"; hasnt '^\|cli\.q1 *\|' "  ... not cli.q1"
run 0 "queue stat MESSAGE_COUNT GREATER_THAN 2" "${K[@]}" queue stat --field MESSAGE_COUNT \
  --operation GREATER_THAN --value 2
has '^\|cli\.q1 *\|' "  ... lists cli.q1"; hasnt '^\|cli\.q2 *\|' "  ... not cli.q2"
run 0 "queue stat ROUTING_TYPE EQUALS MULTICAST" "${K[@]}" queue stat --field ROUTING_TYPE \
  --operation EQUALS --value MULTICAST
has '^\|cli\.q2 *\|' "  ... lists cli.q2"; hasnt '^\|cli\.q1 *\|' "  ... not cli.q1"
run 0 "queue stat NAME CONTAINS q1" "${K[@]}" queue stat --field NAME --operation CONTAINS --value q1
has '^\|cli\.q1 *\|' "  ... lists cli.q1"
run 0 "queue stat message-count LESS_THAN 1" "${K[@]}" queue stat --field message-count \
  --operation LESS_THAN --value 1
hasnt '^\|cli\.q1 *\|' "  ... not cli.q1"
run 0 "queue stat --max-rows 1" "${K[@]}" queue stat --max-rows 1
[ "$(grep -c '^|cli' "$tmp/out")" = 1 ] && ok "  ... one row" || not_ok "  ... one row" "$tmp/out"
has '^\(1 of [0-9]+ queues shown\)' "  ... says how many were left out"
run 1 "queue stat with an unknown field: exit 1" "${K[@]}" queue stat --field COLOUR \
  --operation EQUALS --value red
has "^error: unknown field 'COLOUR'" "  ... error: unknown field"
run 1 "queue stat with an unknown operation: exit 1" "${K[@]}" queue stat --field NAME \
  --operation LIKE --value x
has "^error: unknown compare 'LIKE'" "  ... error: unknown compare"
run 0 "queue stat --loop --interval 20 --iterations 3" "${K[@]}" queue stat --queue-name cli.q1 \
  --loop --interval 20 --iterations 3
[ "$(grep -c '^|NAME' "$tmp/out")" = 3 ] && ok "  ... three tables" || not_ok "  ... three tables" "$tmp/out"

run 0 "queue list" "${K[@]}" queue list --queue-name cli.
has '^\|NAME *\|ADDRESS *\|ROUTING_TYPE\|DURABLE\|TEMPORARY\|PAUSED\|' "  ... its columns"
has '^\|cli\.q1 *\|cli\.q1 *\|ANYCAST *\|false *\|false *\|false *\|' "  ... cli.q1"

run 0 "queue pause" "${K[@]}" queue pause --name cli.q1
has "queue cli.q1 paused" "  ... says paused"
run 0 "queue list shows it paused" "${K[@]}" queue list --json --queue-name cli.q1
has '"paused": true' "  ... paused: true"
run 0 "queue resume" "${K[@]}" queue resume --name cli.q1
run 0 "queue purge" "${K[@]}" queue purge --name cli.q1
has "purged 3 messages from queue cli.q1" "  ... purged 3"
run 1 "queue purge of a missing queue: exit 1" "${K[@]}" queue purge --name cli.none
has "^error: queue 'cli.none' does not exist" "  ... error: does not exist"
run 1 "queue create of an existing queue: exit 1" "${K[@]}" queue create --name cli.q1
has "^error: queue 'cli.q1' already exists" "  ... error: already exists"
run 1 "queue create --max-consumers lots: exit 1" "${K[@]}" queue create --name cli.b --max-consumers lots
has "^error: argument 'max-consumers' must be an integer" "  ... error names the argument"

# A consumer holds cli.q1: delete is refused, then forced.
"$KEELCTL" --port "$PORT" --user app --password s3cret consume --destination /queue/cli.q1 \
  --count 1 >"$tmp/consumer.out" 2>&1 &
CPID=$!
# Wait until the broker counts the consumer (asking, with a deadline).
deadline=$((SECONDS + T)); counted=false
while (( SECONDS < deadline )); do
  "${K[@]}" queue stat --json --queue-name cli.q1 >"$tmp/out" 2>&1
  grep -q '"consumer-count": 1' "$tmp/out" && { counted=true; break; }
done
$counted && ok "the consumer is counted" || not_ok "the consumer is counted" "$tmp/out"
run 1 "queue delete with a consumer: exit 1" "${K[@]}" queue delete --name cli.q1
has "^error: queue 'cli.q1' has 1 consumer\(s\); use remove-consumers" "  ... refused with the reason"
run 1 "address delete with queues: exit 1" "${K[@]}" address delete --name cli.q1
has "^error: address 'cli.q1' still has 1 queue\(s\)" "  ... refused with the reason"
run 1 "address delete --force with a consumer: exit 1" "${K[@]}" address delete --name cli.q1 --force
has "has 1 consumer\(s\); use remove-consumers" "  ... refused with the reason"
run 0 "queue delete --remove-consumers" "${K[@]}" queue delete --name cli.q1 --remove-consumers
has "deleted queue cli.q1 \(0 messages dropped, 1 consumers removed\)" "  ... says what it removed"
kill "$CPID" 2>/dev/null; wait "$CPID" 2>/dev/null

run 0 "address create" "${K[@]}" address create --name cli.a --routing-type ANYCAST,MULTICAST
has "created address cli.a" "  ... says so"
run 0 "address show" "${K[@]}" address show --name cli.a
has '^\|cli\.a *\|ANYCAST,MULTICAST\|0 *\|' "  ... name, routing types, no queues"
run 0 "address list" "${K[@]}" address list
has '^\|NAME *\|ROUTING_TYPES *\|QUEUE_COUNT\|QUEUES' "  ... header"
has '^\|cli\.addr *\|MULTICAST *\|1 *\|cli\.q2' "  ... cli.addr with its queue"
run 0 "address list --json" "${K[@]}" address list --json
has '"name": "cli.a"' "  ... has cli.a"
run 1 "address create of an existing one: exit 1" "${K[@]}" address create --name cli.a
has "^error: address 'cli.a' already exists" "  ... error"
run 1 "address create with a bad routing type: exit 1" "${K[@]}" address create --name cli.x --routing-type UP
has "^error: argument 'routing-type'" "  ... error names the argument"
run 0 "address delete" "${K[@]}" address delete --name cli.a
run 1 "address show of a deleted one: exit 1" "${K[@]}" address show --name cli.a
has "^error: address 'cli.a' does not exist" "  ... error"
run 0 "address delete --force takes its queues" "${K[@]}" address delete --name cli.addr --force
has "1 queues deleted with it" "  ... says so"

# ---- broker, bridge ------------------------------------------------------------
run 0 "broker status" "${K[@]}" broker status
has '^node: clim$' "  ... node"
has '^state: LIVE$' "  ... state"
has '^ha\.role: none$' "  ... HA role"
has '^replication\.state: ' "  ... replication state"
has '^uptime-ms: [0-9]+$' "  ... uptime"
has '^connections: [1-9][0-9]*$' "  ... connections"
has '^memory\.rss-bytes: [1-9][0-9]*$' "  ... memory"
run 0 "broker status --json" "${K[@]}" broker status --json
has '"operation": "broker-status"' "  ... JSON"
run 0 "broker threads" "${K[@]}" broker threads
has '^\|NAME *\|TID *\|OWNER *\|CREATION_SITE' "  ... thread table"
run 0 "bridge status" "${K[@]}" bridge status
has "^no bridges$" "  ... none yet"

# ---- connections and permissions --------------------------------------------------
run 1 "permission denied: exit 1" "${KA[@]}" queue stat
has "^error: permission denied: operation 'list-queues' needs the manage permission" "  ... error: permission denied"
run 0 "KEEL_PASSWORD stands in for --password" env KEEL_PASSWORD=s3cret "$KEELCTL" --port "$PORT" \
  --user admin broker status
run 1 "a wrong password: exit 1" "$KEELCTL" --port "$PORT" --user admin --password nope broker status
has "cannot connect" "  ... cannot connect"
run 0 "--url: the second of two is used when the first refuses" "$KEELCTL" --user admin \
  --password s3cret --url tcp://127.0.0.1:1 --url "tcp://127.0.0.1:$PORT" broker status
has '^node: clim$' "  ... reached the broker"
run 1 "--url: none answers: exit 1" "$KEELCTL" --timeout 2000 --url tcp://127.0.0.1:1 broker status
has "tcp://127.0.0.1:1" "  ... names the URL that failed"

# ---- stop ------------------------------------------------------------------------
kill -TERM "$BPID"
rc=0; wait "$BPID" || rc=$?
BPID=
[ "$rc" = 0 ] && ok "broker exit 0 after SIGTERM" || not_ok "broker exit $rc after SIGTERM" "$tmp/broker.log"

echo "1..$n"
[ "$failed" = 0 ]
