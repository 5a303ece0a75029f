# ci/bench/lib.sh - what the bench scripts share; source it, then call
# bench_init.  Owns a temporary directory ($tmp, removed at exit) and the
# brokers started through broker_start (killed at exit if still running).
# A broker listens on 127.0.0.1:0 and writes its events to a regular file
# (a pipe nobody reads during a run would fill and stall the broker); the
# port is read from its acceptor.listening event once it reports LIVE.
# Needs BROKER (the keel-broker binary) set before broker_start.

# Make $tmp and arrange for cleanup at exit.
bench_init() {
  tmp=$(mktemp -d)
  BROKER_PID=
  BROKER_PIDS=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  local p
  for p in "${BROKER_PIDS[@]}"; do
    if kill -0 "$p" 2>/dev/null; then
      kill -CONT "$p" 2>/dev/null || true
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
  rm -rf "$tmp"
}

# kib PID KEY: a figure in KiB from /proc/PID/status (VmRSS, VmHWM).
kib() { awk -v k="$2" '$1 == k":" { print $2 }' "/proc/$1/status"; }

# broker_start NAME [CONFIG]: start a fresh broker named NAME with the YAML
# CONFIG, data in $tmp/NAME, events in $tmp/NAME.events; wait (30 s at most)
# for LIVE.  Sets BROKER_PID, PORT, BROKER_DATA, BROKER_EVENTS; exits 1 when
# the broker does not start.
broker_start() {
  local name=$1 deadline=$((SECONDS + 30))
  BROKER_DATA=$tmp/$name
  BROKER_EVENTS=$tmp/$name.events
  rm -rf "$BROKER_DATA" "$BROKER_EVENTS"
  printf '%s\n' "${2:-}" >"$tmp/$name.yaml"
  "$BROKER" --config "$tmp/$name.yaml" --listen 127.0.0.1:0 --data-dir "$BROKER_DATA" \
            --events "$BROKER_EVENTS" --name "$name" --log-level warn &
  BROKER_PID=$!
  BROKER_PIDS+=("$BROKER_PID")
  PORT=
  while (( SECONDS < deadline )); do
    if grep -q '"state":"LIVE"' "$BROKER_EVENTS" 2>/dev/null; then
      PORT=$(grep -o '"type":"acceptor.listening".*"port":[0-9]*' "$BROKER_EVENTS" |
             grep -o '[0-9]*$')
      break
    fi
    kill -0 "$BROKER_PID" 2>/dev/null || break
    sleep 0.05
  done
  [ -n "$PORT" ] || { echo "bench: broker $name did not start" >&2; exit 1; }
}

# broker_stop [PID...]: SIGTERM the brokers (default BROKER_PID) and reap them.
broker_stop() {
  (( $# )) || set -- "$BROKER_PID"
  kill -TERM "$@"
  wait "$@" || true
  local p q keep=()
  for p in "${BROKER_PIDS[@]}"; do
    for q in "$@"; do [ "$p" = "$q" ] && continue 2; done
    keep+=("$p")
  done
  BROKER_PIDS=("${keep[@]}")
  BROKER_PID=
}

# build_flowbench OUT: the raw-socket producer/consumer (ci/bench/flowbench.c),
# its threads started through leakcheck's lc_thread_start like every thread.
build_flowbench() {
  cc -O2 -Wall -Wextra -Werror -pthread -iquote leakcheck/src -o "$1" \
     ci/bench/flowbench.c leakcheck/src/lc.c
}
