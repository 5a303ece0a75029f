#!/usr/bin/env bash
# ci/suite.sh - the main job: the README's first quick-start command.
#
# Until the harness and its scenario suite land (issue: harness core), the
# main job is the broker itself: install what is missing, build, start
# keel-broker on its defaults (127.0.0.1:61613, data in ./keel-data), wait
# for its `state LIVE` event, produce and consume a few messages with
# keelctl, show how to talk to it, then stop it with SIGTERM and wait for
# `state STOPPED`.  `--serve` keeps the broker in the foreground instead
# (Ctrl-C stops it).  Exit status: 0 when every step worked.
set -euo pipefail
cd "$(dirname "$0")/.."

SERVE=0
case "${1:-}" in
  --serve) SERVE=1 ;;
  "") ;;
  -h|--help) echo "usage: bash ci/suite.sh [--serve]"; exit 0 ;;
  *) echo "usage: bash ci/suite.sh [--serve]" >&2; exit 2 ;;
esac

bash ci/setup.sh
BUILD=${KEEL_BUILD_DIR:-build}
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE="${KEEL_BUILD_TYPE:-RelWithDebInfo}" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target keel-broker keelctl
BROKER=$BUILD/broker/keel-broker
KEELCTL=$BUILD/broker/keelctl

PYDEMO=$(cat <<'PY'
import stomp, threading
got = threading.Event()
class Listener(stomp.ConnectionListener):
    def on_message(self, frame):
        print("python3-stomp got:", frame.body)
        got.set()
c = stomp.Connection12([("127.0.0.1", 61613)])
c.set_listener("", Listener())
c.connect(wait=True)
c.subscribe("/queue/demo", id="1", ack="auto")
c.send("/queue/demo", "hello from python3-stomp")
ok = got.wait(10)
c.disconnect()
raise SystemExit(0 if ok else 1)
PY
)

howto() {
  cat <<EOT

== Talking to the broker (127.0.0.1:61613, STOMP 1.0/1.1/1.2) ==
  $KEELCTL produce --destination /queue/demo --count 3 --body hello --receipts
  $KEELCTL consume --destination /queue/demo --count 3 --print
  $KEELCTL perf --producers 1 --consumers 1 --size 1024 --count 100000
  $KEELCTL --help

  Any STOMP client works; with Debian's python3-stomp (/usr/bin/python3):
$(sed 's/^/    /' <<<"$PYDEMO")
EOT
}

if [ "$SERVE" = 1 ]; then
  howto
  echo
  echo "== keel-broker in the foreground (Ctrl-C or SIGTERM stops it) =="
  exec "$BROKER"
fi

# Events come through a FIFO: reading it waits for the next event, so
# every wait below is a read with a deadline, not a sleep.
tmp=$(mktemp -d)
BROKER_PID=
cleanup() {
  if [ -n "$BROKER_PID" ] && kill -0 "$BROKER_PID" 2>/dev/null; then
    kill -KILL "$BROKER_PID" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT
mkfifo "$tmp/events"
exec {EVFD}<>"$tmp/events"

# wait_event REGEX SECONDS: read events until one matches (0) or the
# deadline passes / the broker dies (1).  Every event is echoed.
wait_event() {
  local deadline=$((SECONDS + $2)) line
  while (( SECONDS < deadline )); do
    if IFS= read -r -t 1 -u "$EVFD" line; then
      echo "  event: $line"
      [[ $line =~ $1 ]] && return 0
    elif ! kill -0 "$BROKER_PID" 2>/dev/null; then
      return 1
    fi
  done
  return 1
}

echo "== Starting keel-broker on its defaults =="
"$BROKER" --events "$tmp/events" &
BROKER_PID=$!
if ! wait_event '"state":"LIVE"' 30; then
  echo "suite: keel-broker did not become LIVE (is 127.0.0.1:61613 in use?)" >&2
  exit 1
fi

echo
echo "== keelctl produce =="
"$KEELCTL" produce --destination /queue/demo --count 3 --body "hello from keelctl" --receipts
echo
echo "== keelctl consume =="
"$KEELCTL" consume --destination /queue/demo --count 3 --print
echo
echo "== python3-stomp (Debian's, run with /usr/bin/python3) =="
/usr/bin/python3 -c "$PYDEMO"
howto

echo
echo "== Stopping keel-broker (SIGTERM) =="
kill -TERM "$BROKER_PID"
if ! wait_event '"state":"STOPPED"' 30; then
  echo "suite: keel-broker did not stop" >&2
  exit 1
fi
rc=0
wait "$BROKER_PID" || rc=$?
BROKER_PID=
if [ "$rc" != 0 ]; then
  echo "suite: keel-broker exited with $rc" >&2
  exit 1
fi
echo
echo "suite: OK (the scenario suite replaces this demo when the harness lands)"
