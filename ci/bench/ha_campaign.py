#!/usr/bin/python3
# ci/bench/ha_campaign.py - a seeded random fault campaign against real
# keel-broker pairs (issue "HA safety"; broker/README.md "Replication (HA)",
# "Tests"), called by ci/bench/ha-campaign.sh (which builds, makes the data
# directory and kills what is left at exit).
#
# Each round: a fresh primary + backup on loopback, a producer that follows
# the pair (python3-stomp: persistent SENDs, a receipt for each, unique
# bodies; on any error it reconnects to whichever node accepts and sends
# again every message not yet receipted), and 1..4 faults drawn from
# random.Random(f"{seed}:{round}"): kill -9 of the live or of the backup,
# SIGSTOP of either for 0.2..3 x connection-ttl, restart of a killed node,
# a kill of either node while the backup syncs.  Then every node is
# resumed and restarted, the pair must settle (one LIVE, the other
# announced) and the live is drained: a receipted body missing there is
# lost.  From both event files and the kill times: the spans in which each
# node was LIVE (or FAILING_BACK; a paused node stays live) must not
# overlap.
#
# Run with /usr/bin/python3 (Debian's python3-stomp).  Every wait is on a
# broker event, a process or the producer's receipts, with a deadline; the
# only sleeps are the 5 ms poll steps of those waits and the delays of the
# seeded schedule.  Times: CLOCK_MONOTONIC on both sides
# (time.monotonic_ns() here, `mono_ns` in the events).  Node, the event
# reading and the port choice follow ci/bench/ha_bench.py (copied, not
# imported: that file is a benchmark with its own globals).
import argparse
import collections
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import logging

import stomp

import keelpair
from keelpair import EventReader, log, now_ns

POLL_S = 0.005
QUEUE = "/queue/campaign"
LIVE_STATES = ("LIVE", "FAILING_BACK")
# ha: of both nodes (broker/README.md "Configuration (ha:)"): small timings
# so that a round takes seconds.
TIMINGS = {"check-period": 200, "connection-ttl": 1000, "retry-interval": 100,
           "initial-replication-sync-timeout": 2000, "failback-wait": 5000}
TTL_MS = TIMINGS["connection-ttl"]
RC_WAIT_S = 5.0   # the longest a "+Krc" anchor waits for its receipts
EVENT_WAIT_S = 4 * TTL_MS / 1000   # ... and an "@EVENT" anchor for its event

A = None          # parsed arguments
PROCS = []        # every Popen started, for the final cleanup


class RoundError(Exception):
    """The round could not be carried out or checked (not a loss)."""


def pick_ports(n):
    return keelpair.pick_ports(n, RoundError)


# ---- brokers ---------------------------------------------------------------------

class Node(EventReader):
    """One keel-broker of a pair: config, data directory, events file, and
    every process started on them (a restart appends to the same events
    file; `incs` says which events and which death belong to which)."""

    def __init__(self, name, role, rdir, stomp_port, listen, peer):
        self.name = name
        self.role = role
        self.port = stomp_port
        self.dir = os.path.join(rdir, name)
        self.data = os.path.join(self.dir, "data")
        self.events_init(os.path.join(self.dir, "events.jsonl"))
        self.stderr = os.path.join(self.dir, "stderr.log")
        self.cfg = os.path.join(self.dir, "broker.yaml")
        self.proc = None
        self.incs = []        # [first event index, death ns or None, how]
        self.paused_until = None   # monotonic ns of the scheduled SIGCONT
        self.expected_exit = False
        os.makedirs(self.dir, exist_ok=True)
        ha = {"role": role, "listen": "127.0.0.1:%d" % listen, "peer": "127.0.0.1:%d" % peer}
        ha.update(TIMINGS)
        if A.old_rules:
            ha["failover-may-lose-data"] = "true"
        with open(self.cfg, "w") as f:
            f.write("journal-sync: true\nha:\n")
            for k, v in ha.items():
                f.write("  %s: %s\n" % (k, json.dumps(v) if isinstance(v, str) and ":" in v else v))

    def start(self):
        assert not self.alive()
        self.read()
        self._buf = b""       # a torn last line of the previous process
        err = open(self.stderr, "ab")
        self.proc = subprocess.Popen(
            [A.broker, "-c", self.cfg, "-l", "127.0.0.1:%d" % self.port, "-d", self.data,
             "-e", self.events, "-n", self.name, "-L", "warn"],
            stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        err.close()
        PROCS.append(self.proc)
        with open(A.pids_file, "a") as f:
            f.write("%d\n" % self.proc.pid)
        self.incs.append([len(self.ev), None, None])
        self.paused_until = None
        self.expected_exit = False

    def last_index(self, etype):
        for i in range(len(self.ev) - 1, -1, -1):
            if self.ev[i].get("type") == etype:
                return i
        return -1

    def state(self):
        """The last `state` of the running process (None: dead or none yet)."""
        self.read()
        if not self.alive() or not self.incs:
            return None
        i = self.last_index("state")
        return self.ev[i]["state"] if i >= self.incs[-1][0] else None

    def after_last_state(self, etype):
        """An etype event after the last `state` event (of this process)."""
        i = self.last_index("state")
        j = self.last_index(etype)
        return j > i and j >= self.incs[-1][0]

    def kill9(self, how="kill -9"):
        """SIGKILL (a paused process too); the death is the time just before."""
        t = now_ns()
        self.expected_exit = True
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.incs[-1][1:] = [t, how]
        self.paused_until = None
        return t

    def pause(self, ms):
        os.kill(self.proc.pid, signal.SIGSTOP)
        until = now_ns() + ms * 1_000_000
        self.paused_until = max(until, self.paused_until or 0)

    def resume(self):
        if self.alive():
            os.kill(self.proc.pid, signal.SIGCONT)
        self.paused_until = None

    def stop(self, within_s=15):
        """SIGTERM and reap; a stop that fails is reported, not raised."""
        if not self.alive():
            return None
        self.resume()
        self.expected_exit = True
        t = now_ns()
        self.proc.terminate()
        try:
            rc = self.proc.wait(within_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            self.incs[-1][1:] = [t, "SIGTERM (no stop in time)"]
            return "%s did not stop within %g s of SIGTERM" % (self.name, within_s)
        self.incs[-1][1:] = [t, "SIGTERM"]
        return None if rc == 0 else "%s exited with status %d on SIGTERM" % (self.name, rc)

    def live_spans(self, t_end):
        """[start, end] ns of every span in which this node was LIVE or
        FAILING_BACK: from that state to the next other `state` of the same
        process, or to its death (or t_end if still running)."""
        self.read()
        spans = []
        for k, (first, death, _) in enumerate(self.incs):
            last = self.incs[k + 1][0] if k + 1 < len(self.incs) else len(self.ev)
            start, t_last = None, 0
            for e in self.ev[first:last]:
                t_last = max(t_last, e["mono_ns"])
                if e.get("type") != "state":
                    continue
                if e["state"] in LIVE_STATES:
                    if start is None:
                        start = e["mono_ns"]
                elif start is not None:
                    spans.append((start, e["mono_ns"]))
                    start = None
            if start is not None:
                # an event the process wrote just after our kill timestamp
                # proves it ran that long: end no earlier than its last one
                end = t_end if death is None else max(death, t_last)
                spans.append((start, end))
        return spans

    def diag(self, n=25):
        self.read()
        out = ["  last events of %s:" % self.name]
        out += ["    " + json.dumps(e) for e in self.ev[-n:]]
        try:
            with open(self.stderr, errors="replace") as f:
                tail = f.read().splitlines()[-10:]
        except OSError:
            tail = []
        if tail:
            out.append("  stderr of %s:" % self.name)
            out += ["    " + ln for ln in tail]
        return "\n".join(out)


# ---- the producer that follows the pair -----------------------------------------

class _Listener(stomp.ConnectionListener):
    """Forwards one connection's frames to its owner, tagged with the
    connection's number (frames of an older connection are ignored)."""

    def __init__(self, owner, cno):
        self.owner = owner
        self.cno = cno

    def on_connected(self, frame):
        self.owner.on_frame(self.cno, "connected", frame)

    def on_receipt(self, frame):
        self.owner.on_frame(self.cno, "receipt", frame)

    def on_error(self, frame):
        self.owner.on_frame(self.cno, "error", frame)

    def on_message(self, frame):
        self.owner.on_frame(self.cno, "message", frame)

    def on_disconnected(self):
        self.owner.on_frame(self.cno, "disconnected", None)


class Session:
    """One STOMP 1.2 connection with a deadline on CONNECTED: a paused
    broker's kernel accepts the TCP connection and then says nothing."""

    def __init__(self, port, connect_s):
        self.cv = threading.Condition()
        self.connected = False
        self.broken = None
        self.receipts = set()
        self.messages = []
        self.conn = stomp.Connection12([("127.0.0.1", port)], heartbeats=(0, 0),
                                       reconnect_attempts_max=1, reconnect_sleep_initial=0.01)
        self.conn.set_listener("s", _Listener(self, 0))
        try:
            self.conn.connect(wait=False)
        except Exception as e:   # refused: stomp.py raises ConnectFailedException
            raise ConnectionError("connect to %d: %s" % (port, type(e).__name__))
        if not self.wait(lambda: self.connected or self.broken, connect_s) or not self.connected:
            self.close()
            raise ConnectionError("no CONNECTED from %d within %g s (%s)"
                                  % (port, connect_s, self.broken or "silent"))

    def on_frame(self, _cno, kind, frame):
        with self.cv:
            if kind == "connected":
                self.connected = True
            elif kind == "receipt":
                self.receipts.add(frame.headers.get("receipt-id"))
            elif kind == "message":
                self.messages.append(frame)
            elif kind == "error":
                self.broken = "ERROR " + frame.headers.get("message", "")
            elif kind == "disconnected":
                self.broken = self.broken or "disconnected"
            self.cv.notify_all()

    def wait(self, pred, within_s):
        deadline = time.monotonic() + within_s
        with self.cv:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cv.wait(left)
            return True

    def close(self):
        try:
            self.conn.transport.disconnect_socket()
        except Exception:
            pass


class Producer(threading.Thread):
    """Persistent SENDs to QUEUE, each with a receipt, at most `window`
    waiting; bodies "<tag>:<n>".  Connects to whichever of the pair's STOMP
    ports answers CONNECT; on an ERROR, a closed connection or a receipt
    late by receipt_s it drops the connection, connects again and sends
    every message not yet receipted again (duplicates are allowed, losses
    are not).  At most max_msgs distinct messages, rate msg/s."""

    def __init__(self, ports, tag, max_msgs, rate, window=16, receipt_s=3.0, connect_s=1.0):
        super().__init__(daemon=True)
        self.ports = list(ports)
        self.tag = tag
        self.max_msgs = max_msgs
        self.rate = rate
        self.window = window
        self.receipt_s = receipt_s
        self.connect_s = connect_s
        self.cv = threading.Condition()
        self.stopping = False
        self.cno = 0
        self.conn = None
        self.broken = None
        self.connected = False
        self.next_n = 0
        self.unreceipted = collections.OrderedDict()   # n -> body
        self.inflight = {}        # receipt id -> (n, sent ns), current connection
        self.receipted = {}       # n -> body
        self.connects = 0
        self.drops = collections.Counter()
        self.sends = 0

    # -- called by the receiver threads of stomp.py
    def on_frame(self, cno, kind, frame):
        with self.cv:
            if cno != self.cno:
                return
            if kind == "connected":
                self.connected = True
            elif kind == "receipt":
                rid = frame.headers.get("receipt-id")
                n, _ = self.inflight.pop(rid, (None, None))
                if n is not None and n in self.unreceipted:
                    self.receipted[n] = self.unreceipted.pop(n)
            elif kind == "error":
                self.broken = self.broken or "ERROR " + frame.headers.get("message", "")[:60]
            elif kind == "disconnected":
                self.broken = self.broken or "disconnected"
            self.cv.notify_all()

    def receipts(self):
        with self.cv:
            return len(self.receipted)

    def stop(self):
        with self.cv:
            self.stopping = True
            self.cv.notify_all()
        self.join(30)
        if self.is_alive():
            raise RoundError("the producer did not stop within 30 s")

    def _drop(self, why):
        self.drops[why.split(" ")[0]] += 1
        conn = self.conn
        with self.cv:
            self.conn = None
            self.cno += 1
            self.inflight.clear()
        if conn is not None:
            try:
                conn.transport.disconnect_socket()
            except Exception:
                pass

    def _connect(self):
        """Try each port once (the last one that worked first)."""
        for port in list(self.ports):
            with self.cv:
                if self.stopping:
                    return False
                self.cno += 1
                cno = self.cno
                self.connected = False
                self.broken = None
            conn = stomp.Connection12([("127.0.0.1", port)], heartbeats=(0, 0),
                                      reconnect_attempts_max=1, reconnect_sleep_initial=0.01)
            conn.set_listener("p", _Listener(self, cno))
            try:
                conn.connect(wait=False)
            except Exception:
                continue
            deadline = time.monotonic() + self.connect_s
            with self.cv:
                while not (self.connected or self.broken or self.stopping):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self.cv.wait(left)
                ok = self.connected and not self.broken
            if ok:
                self.conn = conn
                self.connects += 1
                if self.ports[0] != port:
                    self.ports.reverse()
                return True
            try:
                conn.transport.disconnect_socket()
            except Exception:
                pass
        return False

    def run(self):
        t0 = time.monotonic()
        try:
            while True:
                with self.cv:
                    if self.stopping:
                        break
                if self.conn is None:
                    if not self._connect():
                        with self.cv:     # both refused or silent: try again soon
                            self.cv.wait(0.05)
                        continue
                    resend = list(self.unreceipted.items())
                else:
                    resend = []
                why = self._pump(resend, t0)
                if why:
                    self._drop(why)
        finally:
            if self.conn is not None:
                self._drop("stop")

    def _send(self, n, body):
        rid = "%d-%d" % (self.cno, n)
        with self.cv:
            self.inflight[rid] = (n, now_ns())
        self.conn.send(QUEUE, body, headers={"persistent": "true", "receipt": rid})
        self.sends += 1

    def _pump(self, resend, t0):
        """Send and wait for receipts on the current connection until it
        breaks (returns why) or the producer stops (returns None)."""
        try:
            for n, body in resend:
                self._send(n, body)
            while True:
                with self.cv:
                    if self.stopping:
                        return None
                    if self.broken:
                        return self.broken
                    if self.inflight:
                        oldest = min(t for _, t in self.inflight.values())
                        if now_ns() - oldest > self.receipt_s * 1e9:
                            return "receipt-timeout"
                    room = len(self.inflight) < self.window
                    due = self.next_n < self.max_msgs and \
                        self.next_n < (time.monotonic() - t0) * self.rate + 1
                    if not (room and due):
                        self.cv.wait(0.01)
                        continue
                    n = self.next_n
                    self.next_n += 1
                    body = "%s:%d" % (self.tag, n)
                    self.unreceipted[n] = body
                self._send(n, body)
        except Exception as e:   # the socket went away under a send
            return "send-failed " + type(e).__name__


def drain(port, within_s=60):
    """Every message of QUEUE on the broker at port (auto ack).  The
    queue's message-count (management `queue-stat`, which counts messages
    on their way to us too) says when it is empty: asked again whenever
    the messages it announced have come, or a second without one."""
    s = Session(port, 5.0)

    def got():
        return sum(1 for m in s.messages if m.headers.get("subscription") == "q")

    def reply(corr):
        for m in s.messages:
            if m.headers.get("subscription") == "reply" and \
                    m.headers.get("correlation-id") == str(corr):
                return m
        return None
    try:
        s.conn.subscribe("/queue/campaign.reply", id="reply", ack="auto")
        s.conn.subscribe(QUEUE, id="q", ack="auto")
        deadline = time.monotonic() + within_s
        for corr in range(1, 10**6):
            if time.monotonic() > deadline:
                raise RoundError("drain: messages still on %d after %g s" % (port, within_s))
            s.conn.send("/queue/keel.management", "", headers={
                "operation": "queue-stat", "name": "campaign",
                "reply-to": "/queue/campaign.reply", "correlation-id": str(corr)})
            if not s.wait(lambda: reply(corr) is not None or s.broken, 10) or s.broken:
                raise RoundError("drain: no queue-stat reply from %d (%s)" % (port, s.broken))
            r = json.loads(reply(corr).body)
            if r.get("status") == "ok":
                left = int(r["queue"]["message-count"])
            elif "not found" in r.get("message", "").lower():
                left = 0      # an auto-created queue goes when empty
            else:
                raise RoundError("drain: queue-stat: %s" % r)
            if left == 0:
                break
            want = got() + left
            s.wait(lambda: got() >= want or s.broken, 1.0)
        return [m.body for m in s.messages if m.headers.get("subscription") == "q"]
    finally:
        s.close()


# ---- the schedule ----------------------------------------------------------------

KINDS = [("kill-live", 2), ("kill-backup", 1), ("stop-live", 1.5), ("stop-backup", 2),
         ("restart", 1.5), ("synckill-live", 1), ("synckill-backup", 1)]


# events a fault may wait for (on either node, since the previous fault)
ANCHOR_EVENTS = ["replication.lost", "failover", "failover.refused", "replication.sync.started",
                 "backup.announced", "replication.fence"]
OTHER = {"live": "backup", "backup": "live"}


def make_schedule(seed, rnd_no):
    """1..4 faults, each after an anchor: "+Nms" (a delay), "+Krc" (K more
    receipts; RC_WAIT_S at most, not while both nodes are dead) or
    "@EVENT+Krc" (the next EVENT on either node, EVENT_WAIT_S at most, then
    K receipts).  After a SIGSTOP, 60 % of the time the next fault kills the
    other node once the live has dropped the paused one (or the backup has
    lost the paused live) and K receipts more: the paths of issue "HA
    safety" defect 2.  The same seed:round always gives the same list."""
    rng = random.Random("%s:%d" % (seed, rnd_no))
    out = []
    for _ in range(rng.randint(1, 4)):
        prev = out[-1][1] if out else ""
        if prev.startswith("stop-") and rng.random() < 0.6:
            out.append((("ev", "replication.lost", rng.randint(0, 150)),
                        "kill-" + OTHER[prev[5:]], None))
            continue
        kind = rng.choices([k for k, _ in KINDS], [w for _, w in KINDS])[0]
        x = rng.random()
        if x < 0.4:
            anchor = ("ms", rng.randint(0, 2000))
        elif x < 0.8:
            anchor = ("rc", rng.randint(1, 300))
        else:
            anchor = ("ev", rng.choice(ANCHOR_EVENTS), rng.randint(0, 100))
        arg = None
        if kind.startswith("stop-"):
            arg = rng.randint(int(0.2 * TTL_MS), 3 * TTL_MS)
        elif kind.startswith("synckill-"):
            arg = rng.randint(0, 40)
        out.append((anchor, kind, arg))
    return out


def schedule_text(sched):
    parts = []
    for anchor, kind, arg in sched:
        if anchor[0] == "ev":
            s = "@%s+%drc %s" % (anchor[1], anchor[2], kind)
        else:
            s = "+%d%s %s" % (anchor[1], anchor[0], kind)
        if kind.startswith("stop-"):
            s += " %dms" % arg
        elif kind.startswith("synckill-"):
            s += " +%dms" % arg
        parts.append(s)
    return "; ".join(parts)


def parse_schedule(text):
    """The inverse of schedule_text (for --schedule)."""
    out = []
    for part in text.split(";"):
        words = part.split()
        if len(words) not in (2, 3) or words[1] not in [k for k, _ in KINDS]:
            raise ValueError("bad fault %r" % part)
        a, kind = words[0], words[1]
        if a.startswith("@"):
            etype, _, k = a[1:].partition("+")
            anchor = ("ev", etype, int(k[:-2]) if k else 0)
        elif a.endswith("ms"):
            anchor = ("ms", int(a[1:-2]))
        elif a.endswith("rc"):
            anchor = ("rc", int(a[1:-2]))
        else:
            raise ValueError("bad anchor %r" % a)
        arg = None
        if kind.startswith("stop-") or kind.startswith("synckill-"):
            arg = int(words[2].strip("+").rstrip("ms"))
        out.append((anchor, kind, arg))
    if schedule_text(out) != "; ".join(" ".join(p.split()) for p in text.split(";")):
        raise ValueError("schedule %r does not read back as itself: %r" % (text, schedule_text(out)))
    return out


# ---- one round -------------------------------------------------------------------

class Round:
    def __init__(self, seed, no, ports):
        self.seed = seed
        self.no = no
        self.name = "%s:%d" % (seed, no)
        self.dir = os.path.join(A.dir, "r%d" % no)
        sp, sb, rp, rb = ports
        self.p = Node("primary", "primary", self.dir, sp, rp, rb)
        self.b = Node("backup", "backup", self.dir, sb, rb, rp)
        self.nodes = (self.p, self.b)
        self.t0 = now_ns()
        self.actions = []         # what was done, with times (printed on failure)
        self.anomalies = []       # unexpected exits, failed stops
        self.producer = None
        self.marks = {}           # node -> index of its first event since the last fault

    def note(self, msg):
        self.actions.append("%8.3f s  %s" % ((now_ns() - self.t0) / 1e9, msg))
        if A.verbose:
            log("    " + self.actions[-1])

    # -- waiting
    def tick(self):
        t = now_ns()
        for n in self.nodes:
            if n.paused_until is not None and t >= n.paused_until:
                n.resume()
                self.note("SIGCONT %s" % n.name)
            if n.proc is not None and not n.expected_exit and n.proc.poll() is not None:
                n.expected_exit = True
                n.incs[-1][1:] = [t, "exit %d" % n.proc.returncode]
                n.paused_until = None
                self.anomalies.append("%s exited by itself (status %d)" % (n.name, n.proc.returncode))
                self.note("%s exited by itself (status %d)" % (n.name, n.proc.returncode))

    def wait_for(self, pred, within_s):
        deadline = time.monotonic() + within_s
        while True:
            self.tick()
            r = pred()
            if r:
                return r
            if time.monotonic() >= deadline:
                return None
            time.sleep(POLL_S)

    # -- who is who now
    def live(self):
        for n in self.nodes:
            if n.state() in LIVE_STATES + ("ACTIVATING",):
                return n
        return None

    def other(self, n):
        return self.b if n is self.p else self.p

    def backup_node(self):
        lv = self.live()
        if lv is not None:
            o = self.other(lv)
            return o if o.alive() else None
        alive = [n for n in self.nodes if n.alive()]
        if len(alive) == 2:
            syncing = [n for n in alive if (n.state() or "").startswith("BACKUP_")]
            return syncing[0] if len(syncing) == 1 else self.b
        return alive[0] if alive else None

    def dead(self):
        """Dead nodes, the one dead longest first."""
        d = [n for n in self.nodes if not n.alive()]
        return sorted(d, key=lambda n: n.incs[-1][1] or 0)

    # -- faults
    def kill(self, n, why):
        if n is None or not n.alive():
            self.note("%s: nothing to kill" % why)
            return
        was = n.state()
        n.kill9()
        self.note("kill -9 %s (%s, was %s)" % (n.name, why, was))

    def restart(self, n):
        n.start()
        self.note("restart %s" % n.name)

    def fault(self, kind, arg):
        if kind == "kill-live":
            self.kill(self.live(), kind)
        elif kind == "kill-backup":
            self.kill(self.backup_node(), kind)
        elif kind.startswith("stop-"):
            n = self.live() if kind == "stop-live" else self.backup_node()
            if n is None or not n.alive():
                self.note("%s: no such node" % kind)
                return
            n.pause(arg)
            self.note("SIGSTOP %s for %d ms (%s)" % (n.name, arg, kind))
        elif kind == "restart":
            d = self.dead()
            if not d:
                self.note("restart: nothing dead")
                return
            self.restart(d[0])
        elif kind.startswith("synckill-"):
            self.synckill(kind, arg)

    def synckill(self, kind, delay_ms):
        """Make a sync happen (restart the dead node, or kill -9 and restart
        the backup), then kill one side delay_ms after the backup's
        replication.sync.started."""
        marks = {n: n.mark() for n in self.nodes}
        d = self.dead()
        if d:
            self.restart(d[0])
        else:
            lv = self.live()
            bk = self.backup_node()
            if lv is None or bk is None:
                self.note("%s: no live and backup to resync" % kind)
                return
            self.kill(bk, kind + " (force a resync)")
            self.restart(bk)
        syncing = self.wait_for(lambda: next((n for n in self.nodes if n.alive() and
                                              n.find("replication.sync.started", marks[n])), None), 10)
        if syncing is None:
            self.note("%s: no replication.sync.started within 10 s" % kind)
            return
        self.note("%s replication.sync.started" % syncing.name)
        self.wait_for(lambda: False, delay_ms / 1000)
        self.kill(syncing if kind == "synckill-backup" else self.other(syncing), kind)

    def receipts(self, k):
        base = self.producer.receipts()
        if not self.wait_for(lambda: self.producer.receipts() >= base + k or
                             not any(n.alive() for n in self.nodes), RC_WAIT_S):
            self.note("only %d of %d receipts within %g s" %
                      (self.producer.receipts() - base, k, RC_WAIT_S))

    def anchor(self, anchor):
        """Wait for a fault's anchor (self.marks: the events before the
        previous fault)."""
        if anchor[0] == "ms":
            self.wait_for(lambda: False, anchor[1] / 1000)
        elif anchor[0] == "rc":
            self.receipts(anchor[1])
        else:
            _, etype, k = anchor
            n = self.wait_for(lambda: next((n for n in self.nodes
                                            if n.find(etype, self.marks[n])), None), EVENT_WAIT_S)
            self.note("%s %s" % (n.name, etype) if n else
                      "no %s within %g s" % (etype, EVENT_WAIT_S))
            if k:
                self.receipts(k)

    # -- the end of a round
    def converged(self):
        """One node LIVE, the other BACKUP_SYNCED and announced since, and
        no failback on its way (the live is the primary, or a failback
        timed out after the primary announced itself)."""
        lv = [n for n in self.nodes if n.state() == "LIVE"]
        if len(lv) != 1:
            return None
        lv = lv[0]
        bk = self.other(lv)
        if bk.state() != "BACKUP_SYNCED" or not bk.after_last_state("backup.announced"):
            return None
        if lv is self.b:
            ann = bk.ev[bk.last_index("backup.announced")]["mono_ns"]
            ft = lv.last_index("failback.timeout")
            if ft < 0 or lv.ev[ft]["mono_ns"] < ann:
                return None
        return lv

    def waiting(self, n):
        return n.alive() and n.state() not in LIVE_STATES + ("ACTIVATING",) and \
            n.after_last_state("failover.refused")

    def settle(self):
        # scheduled SIGCONTs first (at most 3 x ttl away)
        self.wait_for(lambda: all(n.paused_until is None for n in self.nodes), 3 * TTL_MS / 1000 + 1)
        for n in self.nodes:
            if n.paused_until is not None:
                n.resume()
        # a node alone: let it go live or say it waits before the operator acts
        if self.dead() and any(n.alive() for n in self.nodes):
            r = self.wait_for(lambda: self.live() or next((n for n in self.nodes if self.waiting(n)),
                                                          None), 4 * TTL_MS / 1000)
            self.note("alone: %s" % ("%s %s" % (r.name, r.state()) if r else "neither live nor waiting"))
        for n in self.dead():
            self.restart(n)
        restarts = 0
        while True:
            lv = self.wait_for(lambda: self.converged() or (self.dead() and "dead"), 30)
            if lv == "dead" and restarts < 3:
                restarts += 1
                for n in self.dead():
                    self.restart(n)
                continue
            break
        if not isinstance(lv, Node):
            raise RoundError("no single LIVE with an announced backup within 30 s (%s: %s, %s: %s)"
                             % (self.p.name, self.p.state(), self.b.name, self.b.state()))
        self.note("settled: %s LIVE, %s announced" % (lv.name, self.other(lv).name))
        return lv

    def overlaps(self, t_end):
        out = []
        for s1, e1 in self.p.live_spans(t_end):
            for s2, e2 in self.b.live_spans(t_end):
                o = min(e1, e2) - max(s1, s2)
                if o > 0:
                    out.append((max(s1, s2), o))
        return out

    def run(self, sched):
        res = {"receipted": 0, "lost": [], "dups": 0, "overlaps": [], "error": None}
        try:
            self.p.start()
            if not self.wait_for(lambda: self.p.state() == "LIVE", 15):
                raise RoundError("primary not LIVE within 15 s")
            self.b.start()
            if not self.wait_for(lambda: self.b.find("backup.announced"), 30):
                raise RoundError("backup not announced within 30 s")
            self.producer = Producer([self.p.port, self.b.port], self.name, A.max_msgs, A.rate)
            self.producer.start()
            if not self.wait_for(lambda: self.producer.receipts() > 0, 10):
                raise RoundError("no receipt within 10 s of a healthy pair")
            self.note("pair up, producing")
            self.marks = {n: n.mark() for n in self.nodes}
            for anchor, kind, arg in sched:
                self.anchor(anchor)
                self.fault(kind, arg)
                self.marks = {n: n.mark() for n in self.nodes}
            lv = self.settle()
            self.producer.stop()
            pr = self.producer
            self.note("producer stopped: %d receipted, %d not, %d sends, %d connects, drops %s"
                      % (len(pr.receipted), len(pr.unreceipted), pr.sends, pr.connects,
                         dict(pr.drops)))
            if not self.wait_for(self.converged, 10):
                raise RoundError("the pair did not stay settled")
            lv = self.converged()
            bodies = drain(lv.port)
            seen = collections.Counter(bodies)
            res["receipted"] = len(pr.receipted)
            res["lost"] = sorted((b for b in pr.receipted.values() if b not in seen),
                                 key=lambda b: int(b.rsplit(":", 1)[1]))
            res["dups"] = sum(1 for c in seen.values() if c > 1)
            self.note("drained %d messages from %s (%d distinct)" % (len(bodies), lv.name, len(seen)))
        except RoundError as e:
            res["error"] = str(e)
        finally:
            if self.producer is not None and self.producer.is_alive():
                try:
                    self.producer.stop()
                except RoundError as e:
                    res["error"] = res["error"] or str(e)
            if self.producer is not None:
                res["receipted"] = len(self.producer.receipted)
            t_end = now_ns()
            lv = self.live()
            for n in sorted(self.nodes, key=lambda n: n is lv):   # the live last: no failover
                bad = n.stop()
                if bad:
                    self.anomalies.append(bad)
            res["overlaps"] = self.overlaps(t_end)
        return res

    def evidence(self):
        out = ["  actions (s since the round began):"]
        out += ["    " + a for a in self.actions]
        for n in self.nodes:
            out.append(n.diag())
        return "\n".join(out)


# ---- the campaign ----------------------------------------------------------------

def cleanup():
    for p in PROCS:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGCONT)
            except OSError:
                pass
            p.kill()
            p.wait()


def main():
    global A
    ap = argparse.ArgumentParser(description="seeded random fault campaign against keel-broker pairs")
    ap.add_argument("--broker", required=True)
    ap.add_argument("--dir", required=True, help="where the rounds' data go")
    ap.add_argument("--pids-file", required=True)
    ap.add_argument("--seed", help="default: from the time (printed)")
    ap.add_argument("--rounds", type=int, default=500)
    ap.add_argument("--round", type=int, help="run only this round of the seed (same schedule)")
    ap.add_argument("--first-round", type=int, default=0)
    ap.add_argument("--schedule", help='every round runs this schedule instead of a drawn one, '
                    'written as the rounds print it, e.g. "+200rc stop-backup 2500ms; '
                    '@replication.lost+50rc kill-live"')
    ap.add_argument("--old-rules", action="store_true",
                    help="failover-may-lose-data: true in both configs (the rules before leases)")
    ap.add_argument("--keep", metavar="DIR", help="copy the data of failed rounds under DIR")
    ap.add_argument("--max-msgs", type=int, default=4000, help="distinct messages per round")
    ap.add_argument("--rate", type=float, default=300, help="new messages per second")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every action")
    A = ap.parse_args()
    logging.getLogger("stomp.py").setLevel(logging.CRITICAL)   # refused connects are expected
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    seed = A.seed if A.seed is not None else str(time.time_ns() % 10**9)
    rounds = [A.round] if A.round is not None else range(A.first_round, A.first_round + A.rounds)
    tot = collections.Counter()
    failing, errors = [], []
    t_start = time.monotonic()
    try:
        ports = pick_ports(4)   # STOMP primary, STOMP backup, repl primary, repl backup
        log("ha-campaign: seed %s, %d round(s)%s, rules %s; ports STOMP %d/%d, replication "
            "%d/%d; data under %s" % (seed, len(rounds),
                                      " (round %d only)" % A.round if A.round is not None else "",
                                      "OLD (failover-may-lose-data: true)" if A.old_rules else
                                      "default", *ports, A.dir))
        log("ha: %s" % ", ".join("%s %s" % kv for kv in TIMINGS.items()))
        for no in rounds:
            if not all(keelpair.port_free(p) for p in ports):
                ports = pick_ports(4)
                log("ports taken, now STOMP %d/%d, replication %d/%d" % tuple(ports))
            sched = parse_schedule(A.schedule) if A.schedule else make_schedule(seed, no)
            rd = Round(seed, no, ports)
            t = time.monotonic()
            res = rd.run(sched)
            secs = time.monotonic() - t
            lost, ov = len(res["lost"]), len(res["overlaps"])
            bad = lost or ov
            status = "FAIL" if bad else ("ERROR" if res["error"] else "ok")
            log("%s [%s] receipted %d lost %d dups %d overlaps %d %.1fs %s%s" % (
                rd.name, schedule_text(sched), res["receipted"], lost, res["dups"], ov, secs,
                status, ("  (" + res["error"] + ")") if res["error"] else ""))
            tot["rounds"] += 1
            tot["receipted"] += res["receipted"]
            tot["lost"] += lost
            tot["dups"] += res["dups"]
            tot["overlaps"] += ov
            tot["lossy rounds"] += 1 if lost else 0
            tot["overlap rounds"] += 1 if ov else 0
            for a in rd.anomalies:
                log("  anomaly: %s" % a)
                tot["anomalies"] += 1
            if bad:
                failing.append(rd.name)
            if res["error"]:
                errors.append(rd.name)
            if bad or res["error"]:
                if lost:
                    log("  lost (%d): %s%s" % (lost, " ".join(res["lost"][:20]),
                                               " ..." if lost > 20 else ""))
                for t_ov, o in res["overlaps"]:
                    log("  overlap: both LIVE for %.3f ms from %.3f s" % (o / 1e6, (t_ov - rd.t0) / 1e9))
                log(rd.evidence())
                if A.keep:
                    dst = os.path.join(A.keep, "%s-%d" % (seed, no))
                    shutil.rmtree(dst, ignore_errors=True)
                    shutil.copytree(rd.dir, dst)
                    log("  kept in %s" % dst)
            shutil.rmtree(rd.dir, ignore_errors=True)
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        cleanup()
    log("")
    log("ha-campaign summary: seed %s, rules %s, %.0f s" %
        (seed, "OLD" if A.old_rules else "default", time.monotonic() - t_start))
    log("  rounds %d, receipted %d, lost %d (in %d rounds), duplicates %d, overlapping lives %d "
        "(in %d rounds), rounds not checked %d, anomalies %d" %
        (tot["rounds"], tot["receipted"], tot["lost"], tot["lossy rounds"], tot["dups"],
         tot["overlaps"], tot["overlap rounds"], len(errors), tot["anomalies"]))
    if failing:
        log("  failing rounds (loss or overlap): " + " ".join(failing))
    if errors:
        log("  rounds not checked (the pair did not settle, or a harness error): " + " ".join(errors))
    return 1 if failing or errors else 0


if __name__ == "__main__":
    sys.exit(main())
