"""auth_bench.py - does password brute force slow down the other clients?
(issue 19 defect 5; run by ci/bench/auth-bench.sh, which builds.)

One keel-broker with users on 127.0.0.1:0.  An authenticated producer
sends small non-persistent SENDs to a topic, one at a time, each with a
receipt, and times send -> RECEIPT:
  1. baseline: alone, for --seconds;
  2. attack: while --attackers threads each loop connect -> CONNECT as
     admin with a wrong passcode -> wait for the ERROR (or the close) ->
     reconnect, for --seconds (all from 127.0.0.1: the failure delays of
     one address and one user apply);
  3. spread: the same, but every attempt from a new source address
     (127.x.y.z) with a new user name, so that no delay applies: what the
     threadpool alone does for the loop.
Prints, per phase, the receipts timed, their median, p99 and max latency
in ms, and (attacks) the wrong logins answered per second.  Raw sockets,
no client library; the figures depend on the machine and are never
asserted.

    python3 ci/bench/auth_bench.py KEEL-BROKER [--attackers 8] [--seconds 5]
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# The demo user of broker/etc/keel-broker.yaml: admin / admin-secret.
HASH = "$y$j9T$knv6RvOMdeTojCcgf51qs.$yutJUXBm9rYGKLjy6H2oL6lHsLhaLKSAJl7KkC6Wgn9"
CONFIG = """users:
  - name: admin
    password-hash: "%s"
    roles: [app]
security-settings:
  - match: "bench.#"
    send: [app]
""" % HASH


def frame(cmd, headers, body=b""):
    h = "".join("%s:%s\n" % kv for kv in headers.items())
    return (cmd + "\n" + h + "\n").encode() + body + b"\0"


class Conn:
    def __init__(self, port, source=None):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30,
                                          source_address=(source, 0) if source else None)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def read_frame(self):
        """The next frame's command and headers (None: closed)."""
        while True:
            self.buf = self.buf.lstrip(b"\r\n")
            i = self.buf.find(b"\0")
            if i >= 0:
                raw, self.buf = self.buf[:i], self.buf[i + 1:]
                head = raw.split(b"\n\n", 1)[0].decode(errors="replace").split("\n")
                hdrs = dict(ln.split(":", 1) for ln in head[1:] if ":" in ln)
                return head[0], hdrs
            chunk = self.s.recv(65536)
            if not chunk:
                return None
            self.buf += chunk

    def close(self):
        self.s.close()


def start_broker(exe, tmp):
    cfg = os.path.join(tmp, "broker.yaml")
    with open(cfg, "w") as f:
        f.write(CONFIG)
    events = os.path.join(tmp, "events")
    proc = subprocess.Popen([exe, "--config", cfg, "--listen", "127.0.0.1:0",
                             "--data-dir", os.path.join(tmp, "data"), "--events", events,
                             "--name", "authbench", "--log-level", "warn"])
    deadline = time.monotonic() + 30
    port = None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with open(events) as f:
                for ln in f:
                    ev = json.loads(ln)
                    if ev["type"] == "acceptor.listening":
                        port = ev["port"]
                    if ev["type"] == "state" and ev["state"] == "LIVE" and port:
                        return proc, port
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.05)
    proc.kill()
    sys.exit("auth_bench: the broker did not start")


def timed_sends(p, seconds):
    """send -> RECEIPT latencies (s) for `seconds`."""
    lat = []
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        t0 = time.perf_counter()
        p.send(frame("SEND", {"destination": "/topic/bench.auth", "persistent": "false",
                              "receipt": "r%d" % n}, b"x" * 64))
        f = p.read_frame()
        if f is None or f[0] != "RECEIPT":
            sys.exit("auth_bench: producer got %r" % (f,))
        lat.append(time.perf_counter() - t0)
    return lat


def attacker(port, stop, counts, idx, spread):
    n = 0
    while not stop.is_set():
        n += 1
        source, login = None, "admin"
        if spread:  # a fresh address and user each time: no delay applies
            k = idx * 1000000 + n
            source = "127.%d.%d.%d" % (1 + k // 65536 % 254, k // 256 % 256, 1 + k % 254)
            login = "user-%d" % k
        try:
            c = Conn(port, source)
            c.send(frame("CONNECT", {"accept-version": "1.2", "host": "x",
                                     "login": login, "passcode": "guess-%d" % n}))
            f = c.read_frame()
            c.close()
            if f is not None and f[0] == "ERROR":
                counts[idx] += 1
        except OSError:
            pass


def report(name, lat, extra=""):
    ms = sorted(x * 1000 for x in lat)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    print("%-9s receipts %6d  median %8.3f ms  p99 %8.3f ms  max %8.3f ms%s" %
          (name, len(ms), statistics.median(ms), p99, ms[-1], extra), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("broker")
    ap.add_argument("--attackers", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="keel-authbench-")
    proc = None
    try:
        proc, port = start_broker(a.broker, tmp)
        p = Conn(port)
        p.send(frame("CONNECT", {"accept-version": "1.2", "host": "x", "login": "admin",
                                 "passcode": "admin-secret"}))
        f = p.read_frame()
        if f is None or f[0] != "CONNECTED":
            sys.exit("auth_bench: the producer could not log in: %r" % (f,))
        timed_sends(p, 0.5)  # warm up
        report("baseline", timed_sends(p, a.seconds))

        threads = []
        for name, spread in (("attack", False), ("spread", True)):
            stop = threading.Event()
            counts = [0] * a.attackers
            ts = [threading.Thread(target=attacker, args=(port, stop, counts, i, spread))
                  for i in range(a.attackers)]
            for t in ts:
                t.start()
            t0 = time.monotonic()
            lat = timed_sends(p, a.seconds)
            wrong = sum(counts)
            rate = wrong / (time.monotonic() - t0)
            stop.set()
            report(name, lat, "  (%d attackers: %d wrong logins answered, %.1f/s)" %
                   (a.attackers, wrong, rate))
            threads += ts
        p.close()
        # attackers blocked in a read end when the broker stops
        proc.terminate()
        proc.wait(timeout=60)
        for t in threads:
            t.join()
        proc = None
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
