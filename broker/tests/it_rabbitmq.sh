#!/usr/bin/env bash
# it_rabbitmq.sh - a Keel bridge forwarding to a STOMP broker this project
# did not write: Debian's RabbitMQ with its STOMP plugin.
#
# Usage: it_rabbitmq.sh KEEL-BROKER KEELCTL.  Starts a private RabbitMQ on
# loopback (own RABBITMQ_* dirs, ports and epmd port, under a temp dir),
# then keel-broker with a bridge to RabbitMQ's STOMP port; produces small
# and large messages at Keel and consumes them from RabbitMQ with keelctl.
# Exit 77 (CTest SKIP_RETURN_CODE) with a "SKIP:" line when RabbitMQ is not
# installed or does not start; never counted as passed then.
set -euo pipefail

BROKER=$1
KEELCTL=$2
RMQ=/usr/lib/rabbitmq/bin/rabbitmq-server
N=50
LARGE=3
LARGE_SIZE=300000

if [ ! -x "$RMQ" ]; then
  echo "SKIP: rabbitmq-server is not installed (apt-get install rabbitmq-server)"
  exit 77
fi

WORK=$(mktemp -d /tmp/keel-it-rmq-XXXXXX)
RMQ_PID=
KEEL_PID=
EPMD_PORT=
cleanup() {
  [ -n "$KEEL_PID" ] && kill "$KEEL_PID" 2>/dev/null && wait "$KEEL_PID" 2>/dev/null || true
  if [ -n "$RMQ_PID" ]; then
    # the whole process group: beam, epmd, erl_child_setup
    kill -- -"$RMQ_PID" 2>/dev/null || true
    wait "$RMQ_PID" 2>/dev/null || true
    # epmd daemonizes out of the group: stop ours (private port) by name
    ERL_EPMD_PORT=$EPMD_PORT epmd -kill >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# wait_line FD PATTERN SECONDS COPY: read lines from FD (a FIFO a process
# writes to) until one contains PATTERN; each read blocks for at most what
# is left of the deadline.  Every line is appended to COPY.  0 on a match;
# 1 at the deadline or when the writer is gone (EOF).
wait_line() {
  local fd=$1 pat=$2 end=$((SECONDS + $3)) copy=$4 line left
  while left=$((end - SECONDS)); [ "$left" -gt 0 ]; do
    IFS= read -r -t "$left" line <&"$fd" || return 1
    printf '%s\n' "$line" >> "$copy"
    case $line in *"$pat"*) return 0 ;; esac
  done
  return 1
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

AMQP_PORT=$(free_port)
STOMP_PORT=$(free_port)
DIST_PORT=$(free_port)
EPMD_PORT=$(free_port)
mkdir -p "$WORK/mnesia" "$WORK/log" "$WORK/schema"
cat > "$WORK/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
stomp.listeners.tcp.1 = 127.0.0.1:$STOMP_PORT
loopback_users.guest = true
EOF
echo "[rabbitmq_stomp]." > "$WORK/enabled_plugins"

# RabbitMQ's console output and Keel's events come through FIFOs, so the
# waits below are reads with deadlines, not polls.
mkfifo "$WORK/rabbitmq.fifo" "$WORK/keel.fifo"
(
  export HOME="$WORK" RABBITMQ_NODENAME="keelit$$@localhost"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT=$AMQP_PORT
  export RABBITMQ_DIST_PORT=$DIST_PORT ERL_EPMD_PORT=$EPMD_PORT
  export RABBITMQ_MNESIA_BASE="$WORK/mnesia" RABBITMQ_LOG_BASE="$WORK/log"
  export RABBITMQ_CONFIG_FILE="$WORK/rabbitmq.conf"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$WORK/enabled_plugins"
  export RABBITMQ_SCHEMA_DIR="$WORK/schema" RABBITMQ_GENERATED_CONFIG_DIR="$WORK/schema"
  exec setsid "$RMQ"
) > "$WORK/rabbitmq.fifo" 2>&1 &
RMQ_PID=$!
exec 5< "$WORK/rabbitmq.fifo"

# RabbitMQ prints "Starting broker... completed with N plugins." once its
# listeners (STOMP included) are up.  Deadline 60 s; a RabbitMQ that exits
# or never gets there is a SKIP.
if ! wait_line 5 "Starting broker... completed" 60 "$WORK/rabbitmq.out"; then
  echo "SKIP: RabbitMQ did not complete its start within 60 s:"
  tail -5 "$WORK/rabbitmq.out" || true
  exit 77
fi
cat <&5 >> "$WORK/rabbitmq.out" &   # keep draining: RabbitMQ never blocks on us
echo "rabbitmq: STOMP on 127.0.0.1:$STOMP_PORT"

cat > "$WORK/keel.yaml" <<EOF
bridges:
  - name: to-rabbit
    queue: outbound
    forwarding-address: /queue/from-keel
    connectors: ["127.0.0.1:$STOMP_PORT"]
    user: guest
    password: guest
    virtual-host: /
    retry-interval: 200
EOF
"$BROKER" --config "$WORK/keel.yaml" --listen 127.0.0.1:0 --data-dir "$WORK/keel" \
  --events "$WORK/keel.fifo" --name keel 2> "$WORK/keel.log" &
KEEL_PID=$!
exec 6< "$WORK/keel.fifo"

# The bridge connected (deadline 30 s), and the port Keel listens on.
PORT=
if wait_line 6 '"type":"bridge.connected"' 30 "$WORK/keel.events"; then
  PORT=$(grep -o '"type":"acceptor.listening"[^}]*"port":[0-9]*' "$WORK/keel.events" \
         | grep -o '[0-9]*$')
fi
cat <&6 >> "$WORK/keel.events" &    # keep draining: the broker never blocks on us
if [ -z "$PORT" ]; then
  echo "FAIL: the bridge never connected to RabbitMQ"
  cat "$WORK/keel.events" "$WORK/keel.log"
  exit 1
fi

"$KEELCTL" --port "$PORT" produce --destination /queue/outbound --count $N --size 200 \
  --receipts --persistent
"$KEELCTL" --port "$PORT" produce --destination /queue/outbound --count $LARGE \
  --size $LARGE_SIZE --receipts --persistent

# Consume at RabbitMQ with python3-stomp (a client we did not write):
# every message once (by the bridge's duplicate-detection id), bodies
# whole, then nothing more for 500 ms.
/usr/bin/python3 - "$STOMP_PORT" $((N + LARGE)) $LARGE_SIZE <<'PY'
import sys, threading, stomp
port, want, large = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
keys, sizes, lock = [], [], threading.Lock()
done, extra = threading.Event(), threading.Event()
class L(stomp.ConnectionListener):
    def on_message(self, frame):
        with lock:
            keys.append(frame.headers.get("duplicate-detection"))
            sizes.append(len(frame.body))
            if len(keys) >= want:
                done.set()
            if len(keys) > want:
                extra.set()
c = stomp.Connection([("127.0.0.1", port)], vhost="/", auto_decode=False)
c.set_listener("l", L())
c.connect("guest", "guest", wait=True)
c.subscribe("/queue/from-keel", id="s", ack="auto")
if not done.wait(30):
    sys.exit("FAIL: received %d of %d messages" % (len(keys), want))
# A negative check with a deadline: no delivery beyond `want` within 500 ms.
if extra.wait(0.5):
    sys.exit("FAIL: more than %d deliveries" % want)
c.disconnect()
if None in keys or len(keys) != want or len(set(keys)) != want:
    sys.exit("FAIL: %d deliveries, %d distinct, want %d" % (len(keys), len(set(keys)), want))
if sorted(sizes)[-3:] != [large] * 3:
    sys.exit("FAIL: large bodies arrived with sizes %s" % sorted(sizes)[-3:])
print("rabbitmq: received %d messages, %d distinct" % (len(keys), len(set(keys))))
PY

# Nothing left at the source.
left=$("$KEELCTL" --port "$PORT" queue stat --queue-name outbound --json | python3 -c \
  'import json,sys; print(sum(q["message-count"] for q in json.load(sys.stdin)["queues"]))')
[ "$left" = 0 ] || { echo "FAIL: $left messages left at the source"; exit 1; }
echo "PASS: $((N + LARGE)) messages bridged to RabbitMQ (STOMP), none left, none twice"
