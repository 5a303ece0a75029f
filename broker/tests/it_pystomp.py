#!/usr/bin/python3
"""it_pystomp.py - Debian's python3-stomp (8.0) against a real keel-broker.

A client this project did not write, run with /usr/bin/python3 (the
interpreter Debian packages python3-stomp for).  Starts the broker given as
argv[1] on 127.0.0.1:0 with its events on a pipe, waits for `state LIVE`
(with a deadline), then runs each case over STOMP 1.0/1.1/1.2 and prints
TAP.  Every wait is a condition with a timeout; nothing sleeps.
KEEL_BROKER_WRAPPER (e.g. "valgrind ...") prefixes the broker's command.
Exit status: 0 all passed, 1 a case failed, 2 usage or the broker failed.
"""
import ctypes
import json
import os
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback

import stomp


def scaled(seconds):
    """A deadline in seconds, scaled like itutil's it_ms()."""
    scale = os.environ.get("KEEL_IT_TIMEOUT_SCALE")
    if scale:
        factor = max(1, int(scale))
    elif os.environ.get("KEEL_BROKER_WRAPPER"):
        factor = 20
    else:
        factor = 1
    return seconds * factor


T = scaled(5.0)      # positive waits
NEG = scaled(0.3)    # "nothing arrives" waits


class Broker:
    """A keel-broker child with its events pipe; dies with us."""

    def __init__(self, exe):
        self.dir = tempfile.mkdtemp(prefix="keel-it-py-")
        rfd, wfd = os.pipe()
        self.rfd = rfd
        self.buf = b""
        self.events = []
        argv = shlex.split(os.environ.get("KEEL_BROKER_WRAPPER", ""))
        argv += [exe, "--listen", "127.0.0.1:0", "--data-dir",
                 os.path.join(self.dir, "data"), "--events", "fd:%d" % wfd,
                 "--name", "it-py"]
        libc = ctypes.CDLL(None, use_errno=True)

        def die_with_parent():
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, pass_fds=(wfd,),
                                     preexec_fn=die_with_parent)
        os.close(wfd)
        live = self.wait_event(lambda e: e.get("type") == "state" and e.get("state") == "LIVE",
                               scaled(15.0))
        if live is None:
            raise RuntimeError("broker did not become LIVE")
        listening = [e for e in self.events if e.get("type") == "acceptor.listening"]
        if not listening:
            raise RuntimeError("no acceptor.listening event before LIVE")
        self.port = int(listening[0]["port"])

    def read_events(self, timeout):
        """Read what comes within timeout; False at EOF."""
        ready, _, _ = select.select([self.rfd], [], [], max(0.0, timeout))
        if not ready:
            return True
        chunk = os.read(self.rfd, 4096)
        if not chunk:
            return False
        self.buf += chunk
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            if line.strip():
                self.events.append(json.loads(line))
        return True

    def wait_event(self, pred, timeout):
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for e in self.events[seen:]:
                if pred(e):
                    return e
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0 or not self.read_events(left):
                return None

    def stop(self, timeout):
        """SIGTERM, wait for exit (draining events); the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.read_events(max(0.0, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                break
        try:
            return self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.rfd)
        shutil.rmtree(self.dir, ignore_errors=True)


class Listener(stomp.ConnectionListener):
    """Collects what the connection receives; waits are conditions."""

    def __init__(self):
        self.cond = threading.Condition()
        self.connected = False
        self.disconnected = False
        self.messages = []
        self.receipts = set()
        self.errors = []

    def _update(self, fn):
        with self.cond:
            fn()
            self.cond.notify_all()

    def on_connected(self, frame):
        self._update(lambda: setattr(self, "connected", True))

    def on_disconnected(self):
        self._update(lambda: setattr(self, "disconnected", True))

    def on_message(self, frame):
        self._update(lambda: self.messages.append(frame))

    def on_receipt(self, frame):
        self._update(lambda: self.receipts.add(frame.headers.get("receipt-id")))

    def on_error(self, frame):
        self._update(lambda: self.errors.append(frame))

    def wait(self, pred, timeout):
        with self.cond:
            return self.cond.wait_for(pred, timeout)

    def message(self, timeout=None):
        if not self.wait(lambda: self.messages or self.errors, T if timeout is None else timeout):
            raise AssertionError("no MESSAGE within %.1fs" % (T if timeout is None else timeout))
        if self.errors:
            raise AssertionError("ERROR: %s" % self.errors[0].headers.get("message"))
        with self.cond:
            return self.messages.pop(0)

    def none(self):
        if self.wait(lambda: self.messages, NEG):
            raise AssertionError("unexpected MESSAGE: %r" % (self.messages[0].body,))

    def receipt(self, rid):
        if not self.wait(lambda: rid in self.receipts or self.errors, T):
            raise AssertionError("no RECEIPT %s" % rid)
        if self.errors:
            raise AssertionError("ERROR: %s" % self.errors[0].headers.get("message"))


CLASSES = {"1.0": stomp.Connection10, "1.1": stomp.Connection11, "1.2": stomp.Connection12}
_receipt_seq = [0]


def rid():
    _receipt_seq[0] += 1
    return "r%d" % _receipt_seq[0]


def open_conn(broker, version="1.2", binary=False):
    conn = CLASSES[version]([("127.0.0.1", broker.port)], auto_decode=not binary,
                            reconnect_attempts_max=1)
    lst = Listener()
    conn.set_listener("it", lst)
    conn.connect(wait=False)
    if not lst.wait(lambda: lst.connected or lst.errors or lst.disconnected, T) or not lst.connected:
        raise AssertionError("no CONNECTED (%s)" % version)
    return conn, lst


def close_conn(conn, lst):
    conn.disconnect(receipt=rid())
    lst.wait(lambda: lst.disconnected, T)


def send(conn, lst, dest, body, **headers):
    r = rid()
    conn.send(dest, body, headers=dict(headers, receipt=r))
    lst.receipt(r)


def subscribe(conn, lst, version, dest, sid, ack="auto", **headers):
    r = rid()
    if version == "1.0":
        conn.subscribe(dest, id=sid, ack=ack, headers=dict(headers, receipt=r))
    else:
        conn.subscribe(dest, sid, ack=ack, headers=dict(headers, receipt=r))
    lst.receipt(r)


def ack(conn, version, msg, sid, transaction=None):
    h = msg.headers
    if version == "1.2":
        conn.ack(h["ack"], transaction=transaction)
    elif version == "1.1":
        conn.ack(h["message-id"], sid, transaction=transaction)
    else:
        conn.ack(h["message-id"], transaction=transaction)


def check(cond, what):
    if not cond:
        raise AssertionError(what)


# ---- cases --------------------------------------------------------------

def case_text_each_version(b):
    for v in ("1.0", "1.1", "1.2"):
        conn, lst = open_conn(b, v)
        dest = "/queue/py.text.%s" % v
        subscribe(conn, lst, v, dest, "s-" + v)
        send(conn, lst, dest, "hello %s" % v, colour="blue")
        m = lst.message()
        check(m.body == "hello %s" % v, "body %r" % m.body)
        check(m.headers.get("colour") == "blue", "user header lost: %r" % m.headers)
        check(m.headers.get("destination") == dest, "destination %r" % m.headers.get("destination"))
        check("message-id" in m.headers, "no message-id")
        close_conn(conn, lst)


def case_binary_body(b):
    body = b"\x00bin\x00ary\x00\xff\x01" * 100
    conn, lst = open_conn(b, "1.2", binary=True)
    subscribe(conn, lst, "1.2", "/queue/py.bin", "s")
    send(conn, lst, "/queue/py.bin", body)
    m = lst.message()
    check(m.body == body, "binary body changed (%d bytes back)" % len(m.body))
    check(m.headers.get("content-length") == str(len(body)),
          "content-length %r" % m.headers.get("content-length"))
    close_conn(conn, lst)


def case_topic_and_unsubscribe(b):
    conn, lst = open_conn(b, "1.2")
    subscribe(conn, lst, "1.2", "/topic/py.t", "t")
    send(conn, lst, "/topic/py.t", "first")
    check(lst.message().body == "first", "topic message")
    r = rid()
    conn.unsubscribe("t", headers={"receipt": r})
    lst.receipt(r)
    send(conn, lst, "/topic/py.t", "after-unsubscribe")
    lst.none()
    close_conn(conn, lst)


def case_queue_keeps_after_unsubscribe(b):
    conn, lst = open_conn(b, "1.2")
    subscribe(conn, lst, "1.2", "/queue/py.unsub", "q")
    r = rid()
    conn.unsubscribe("q", headers={"receipt": r})
    lst.receipt(r)
    send(conn, lst, "/queue/py.unsub", "kept")
    lst.none()
    subscribe(conn, lst, "1.2", "/queue/py.unsub", "q2")
    m = lst.message()
    check(m.body == "kept" and m.headers.get("subscription") == "q2", "queued message")
    close_conn(conn, lst)


def case_client_individual(b):
    for v in ("1.1", "1.2"):
        dest = "/queue/py.ci.%s" % v
        conn, lst = open_conn(b, v)
        send(conn, lst, dest, "one")
        send(conn, lst, dest, "two")
        subscribe(conn, lst, v, dest, "s", ack="client-individual")
        m1, m2 = lst.message(), lst.message()
        check((m1.body, m2.body) == ("one", "two"), "order")
        ack(conn, v, m2, "s")
        close_conn(conn, lst)
        conn, lst = open_conn(b, v)
        subscribe(conn, lst, v, dest, "s", ack="client-individual")
        m = lst.message()
        check(m.body == "one", "unacked message back: %r" % m.body)
        check(m.headers.get("redelivered") == "true", "redelivered %r" % m.headers.get("redelivered"))
        ack(conn, v, m, "s")
        lst.none()
        close_conn(conn, lst)


def case_nack(b):
    conn, lst = open_conn(b, "1.2")
    subscribe(conn, lst, "1.2", "/queue/py.nack", "s", ack="client-individual")
    send(conn, lst, "/queue/py.nack", "n")
    m = lst.message()
    conn.nack(m.headers["ack"])
    m = lst.message()
    check(m.headers.get("redelivered") == "true", "nacked message redelivered")
    ack(conn, "1.2", m, "s")
    close_conn(conn, lst)


def case_transactions(b):
    conn, lst = open_conn(b, "1.2")
    subscribe(conn, lst, "1.2", "/queue/py.tx", "s")
    tx = conn.begin()
    conn.send("/queue/py.tx", "in-tx", headers={"transaction": tx})
    lst.none()
    r = rid()
    conn.commit(tx, headers={"receipt": r})
    lst.receipt(r)
    check(lst.message().body == "in-tx", "committed send")
    tx = conn.begin()
    conn.send("/queue/py.tx", "aborted", headers={"transaction": tx})
    r = rid()
    conn.abort(tx, headers={"receipt": r})
    lst.receipt(r)
    send(conn, lst, "/queue/py.tx", "marker")
    check(lst.message().body == "marker", "aborted send was delivered")
    lst.none()
    close_conn(conn, lst)


CASES = [
    case_text_each_version,
    case_binary_body,
    case_topic_and_unsubscribe,
    case_queue_keeps_after_unsubscribe,
    case_client_individual,
    case_nack,
    case_transactions,
]


def main():
    if len(sys.argv) != 2:
        print("usage: it_pystomp.py KEEL-BROKER", file=sys.stderr)
        return 2
    print("# python %s, stomp.py %s" % (sys.version.split()[0],
                                       ".".join(map(str, stomp.__version__))))
    try:
        broker = Broker(sys.argv[1])
    except Exception as e:
        print("Bail out! %s" % e)
        return 2
    failed = 0
    print("1..%d" % (len(CASES) + 1))
    try:
        for i, case in enumerate(CASES, 1):
            name = case.__name__[5:]
            try:
                case(broker)
                print("ok %d - %s" % (i, name))
            except Exception as e:
                failed += 1
                print("not ok %d - %s: %s" % (i, name, e))
                for line in traceback.format_exc().splitlines():
                    print("#   " + line)
        code = broker.stop(scaled(10.0))
        stopped = any(e.get("type") == "state" and e.get("state") == "STOPPED"
                      for e in broker.events)
        n = len(CASES) + 1
        if code == 0 and stopped:
            print("ok %d - stop: exit 0 after STOPPED" % n)
        else:
            failed += 1
            print("not ok %d - stop: exit %r, STOPPED seen: %s" % (n, code, stopped))
    finally:
        broker.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
