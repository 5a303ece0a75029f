#!/usr/bin/env bash
# ci/bench/idle-conns.sh - the broker's memory per idle connection.
#
# Starts a fresh broker, opens KEEL_BENCH_CONNS (default 4096, the broker's
# KEEL_MAX_CONNECTIONS) loopback connections that each CONNECT (heart-beat
# 0,0) and then stay silent, and prints the broker's RSS (VmRSS) before,
# with them open, and after they all closed (once the broker holds no more
# socket of theirs and has handed the freed heap back, which it does
# KEEL_TRIM_DELAY_MS after a burst of closes: up to 5 s are waited for
# RSS to come back within a quarter of the growth), with the cost per
# connection.  The soft fd limit is
# raised to the hard one for the broker and the client; when the hard
# limit is too low the count is lowered to fit and the figures are scaled
# to 4096 in the output.  Checks (exit 1): every connection got CONNECTED,
# all of them were released, and the RSS scaled to 4096 connections stays
# under 256 MiB (the figure limits.h gives for KEEL_MAX_CONNECTIONS).
# Everything is on 127.0.0.1; the run takes a few seconds.
set -euo pipefail
cd "$(dirname "$0")/../.."
. ci/bench/lib.sh

BUILD=${KEEL_BUILD_DIR:-build-bench}
CONNS=${KEEL_BENCH_CONNS:-4096}
if [ -z "${KEEL_BENCH_NO_BUILD:-}" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target keel-broker >/dev/null
fi
BROKER=$BUILD/broker/keel-broker

# fds: one per connection in the broker and in the client, plus slack
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ]; then
  ulimit -Sn "$hard"
  if (( CONNS > hard - 64 )); then
    echo "idle-conns: the hard fd limit is $hard: $((hard - 64)) connections instead of $CONNS"
    CONNS=$((hard - 64))
  fi
fi

bench_init
broker_start idle ''

python3 - "$PORT" "$BROKER_PID" "$CONNS" <<'EOF'
import os
import resource
import socket
import sys
import time

port, pid, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def rss_kib():
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def broker_sockets():
    count = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"):
                count += 1
        except OSError:
            pass
    return count


def wait_for(cond, what, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            sys.exit("idle-conns: timed out waiting for %s" % what)
        time.sleep(0.05)


base_sockets = broker_sockets()
before = rss_kib()
t0 = time.monotonic()
socks = []
frame = b"CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\0"
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(frame)
    socks.append(s)
for s in socks:
    got = b""
    while b"\0" not in got:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("idle-conns: a connection closed before CONNECTED")
        got += chunk
    if not got.startswith(b"CONNECTED"):
        sys.exit("idle-conns: expected CONNECTED, got %r" % got[:80])
opened_s = time.monotonic() - t0
with_conns = rss_kib()
for s in socks:
    s.close()
wait_for(lambda: broker_sockets() <= base_sockets, "the broker to release the sockets")
# The broker hands freed heap back (malloc_trim) a moment after a burst of
# closes (KEEL_TRIM_DELAY_MS): wait up to 5 s for most of it to come back.
closed_at = time.monotonic()
returned = lambda: rss_kib() - before <= (with_conns - before) // 4
while not returned() and time.monotonic() - closed_at < 5:
    time.sleep(0.05)
after = rss_kib()
returned_s = time.monotonic() - closed_at

scale = 4096.0 / n
per_conn = (with_conns - before) / n
print("idle-conns: %d connections (CONNECT, heart-beat 0,0, then silent), opened in %.1f s"
      % (n, opened_s))
print("  broker RSS before  %8.1f MiB" % (before / 1024))
print("  broker RSS with    %8.1f MiB  (+%.1f KiB per connection)" % (with_conns / 1024, per_conn))
print("  broker RSS after   %8.1f MiB  (%.1f MiB above before, %.1f s after the last close)"
      % (after / 1024, (after - before) / 1024, returned_s))
with_4096 = before + per_conn * 4096
if n != 4096:
    print("  scaled to 4096 connections: %.1f MiB" % (with_4096 / 1024))
if with_4096 >= 256 * 1024:
    sys.exit("FAIL: %.1f MiB with 4096 idle connections: limits.h says under 256 MiB"
             % (with_4096 / 1024))
EOF
broker_stop
