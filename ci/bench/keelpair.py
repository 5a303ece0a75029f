"""keelpair.py - what the HA scripts of ci/bench share (ha_bench.py,
ha_campaign.py): the clock, logging, free loopback ports outside the
ephemeral range, and reading a broker's JSON Lines events file as it grows.
Imported from the scripts' own folder (python3 ci/bench/X.py puts it on
sys.path).  No broker is started here: each script's Node does that.
"""
import json
import os
import random
import socket
import time


def now_ns():
    return time.monotonic_ns()


def log(msg):
    print(msg, flush=True)


def port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # as libuv binds: SO_REUSEADDR, so TIME_WAIT leftovers do not count
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def pick_ports(n, error=RuntimeError):
    """n consecutive free ports outside the ephemeral range (bounded tries);
    raises `error` when there are none."""
    lo, hi = 32768, 60999
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        pass
    spans = [(hi + 1, 65535 - n), (20000, lo - n - 1)]
    spans = [(a, b) for a, b in spans if b - a > 100]
    rnd = random.Random(os.getpid())
    for _ in range(200):
        a, b = rnd.choice(spans)
        base = rnd.randrange(a, b)
        if all(port_free(base + i) for i in range(n)):
            return [base + i for i in range(n)]
    raise error("no %d consecutive free ports found" % n)


class EventReader:
    """Mixin of a broker node: self.events (its --events file) read as it
    grows into self.ev; a line that does not parse (a torn write of a
    killed broker) is counted in self.torn, not fatal.  Needs self.proc."""

    def events_init(self, path):
        self.events = path
        self._buf = b""
        self._off = 0
        self.ev = []      # every event read so far, in order
        self.torn = 0

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def read(self):
        try:
            with open(self.events, "rb") as f:
                f.seek(self._off)
                chunk = f.read()
        except FileNotFoundError:
            return
        self._off += len(chunk)
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        for ln in lines:
            if ln.strip():
                try:
                    self.ev.append(json.loads(ln))
                except ValueError:
                    self.torn += 1

    def mark(self):
        """Index of the next event: find(..., since=mark) sees only newer ones."""
        self.read()
        return len(self.ev)

    def find(self, etype, since=0, **fields):
        self.read()
        for e in self.ev[since:]:
            if e.get("type") == etype and all(e.get(k) == v for k, v in fields.items()):
                return e
        return None
