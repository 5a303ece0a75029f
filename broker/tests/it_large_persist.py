#!/usr/bin/python3
"""it_large_persist.py - a receipted persistent large message survives kill -9.

Run with Debian's /usr/bin/python3 (python3-stomp).  Starts keel-broker on
127.0.0.1:0 with events on a pipe, sends a 256000-byte persistent message
(above min-large-message-size, so its body streams to a file) with a
receipt, kills the broker with SIGKILL, restarts it on the same data
directory and checks journal.loaded counts the message and that it comes
back byte for byte.  Every wait has a deadline.
"""
import json, os, select, signal, subprocess, sys, tempfile, threading, time
import stomp

DEADLINE_S = 20


def start(broker, data):
    r, w = os.pipe()
    p = subprocess.Popen([broker, "--listen", "127.0.0.1:0", "--data-dir", data,
                          "--events", "fd:%d" % w, "--name", "it-large"],
                         pass_fds=(w,), stderr=subprocess.DEVNULL)
    os.close(w)
    events, port, buf = [], None, b""
    end = time.monotonic() + DEADLINE_S
    while True:
        left = end - time.monotonic()
        if left <= 0 or not select.select([r], [], [], left)[0]:
            p.kill()
            raise SystemExit("no LIVE within %ds; events: %s" % (DEADLINE_S, events))
        chunk = os.read(r, 65536)
        if not chunk:
            raise SystemExit("broker exited before LIVE: %s" % events)
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            e = json.loads(line)
            events.append(e)
            if e["type"] == "acceptor.listening":
                port = e["port"]
            if e["type"] == "state" and e["state"] == "LIVE":
                os.close(r)
                return p, port, events


class Listener(stomp.ConnectionListener):
    def __init__(self):
        self.receipt = threading.Event()
        self.message = threading.Event()
        self.bodies = []

    def on_receipt(self, frame):
        self.receipt.set()

    def on_message(self, frame):
        self.bodies.append(frame.body)
        self.message.set()


def connect(port):
    c = stomp.Connection12([("127.0.0.1", port)], auto_decode=False)
    lst = Listener()
    c.set_listener("", lst)
    c.connect(wait=True)
    return c, lst


def main():
    broker = sys.argv[1]
    body = bytes(range(256)) * 1000
    with tempfile.TemporaryDirectory(prefix="keel-it-large-") as data:
        p, port, _ = start(broker, data)
        try:
            c, lst = connect(port)
            c.send("/queue/it.large", body, headers={"persistent": "true", "receipt": "r1"})
            if not lst.receipt.wait(DEADLINE_S):
                raise SystemExit("not ok - no RECEIPT for the large persistent SEND")
            print("ok 1 - large persistent SEND receipted")
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
        # An orphan body (a crash between a delete's record and its file's
        # unlink, or a backup's copy of a body consumed on its live): no
        # journaled message refers to it, so the start removes it.
        ldir = os.path.join(data, "large-messages")
        orphan = os.path.join(ldir, "987654321.msg")
        with open(orphan, "wb") as f:
            f.write(b"x" * 1000)
        kept = [n for n in os.listdir(ldir) if n.endswith(".msg") and n != "987654321.msg"]
        p, port, events = start(broker, data)
        try:
            loaded = [e for e in events if e["type"] == "journal.loaded"]
            if not loaded or loaded[0]["messages"] != 1:
                raise SystemExit("not ok - journal.loaded after kill -9: %s" % loaded)
            print("ok 2 - journal.loaded counts the message")
            if os.path.exists(orphan):
                raise SystemExit("not ok - the orphan body file was not removed")
            if len(kept) != 1 or not os.path.exists(os.path.join(ldir, kept[0])):
                raise SystemExit("not ok - the message's own body file: %s" % kept)
            print("ok 3 - an unreferenced body file removed, the message's kept")
            c, lst = connect(port)
            c.subscribe("/queue/it.large", id="1", ack="auto")
            if not lst.message.wait(DEADLINE_S):
                raise SystemExit("not ok - the large message did not come back")
            if lst.bodies[0] != body:
                raise SystemExit("not ok - body differs (%d bytes)" % len(lst.bodies[0]))
            print("ok 4 - the body came back byte for byte")
            c.disconnect()
        finally:
            p.send_signal(signal.SIGTERM)
            rc = p.wait(timeout=DEADLINE_S)
        if rc != 0:
            raise SystemExit("not ok - broker exit status %d on SIGTERM" % rc)
        print("ok 5 - clean stop")
    print("1..5")


if __name__ == "__main__":
    main()
