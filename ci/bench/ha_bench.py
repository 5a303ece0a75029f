#!/usr/bin/env python3
# ci/bench/ha_bench.py - the replication figures of ci/bench/ha-bench.sh
# (which builds, makes the data directory and calls this).  Owns the
# keel-broker processes it starts: each pid goes into --pids-file as it is
# spawned (the shell's exit trap kills what is left) and every one is
# killed here on exit as well.  Every wait is on a broker event (or a
# child's exit) with a deadline; the only sleeps are the 5 ms poll steps of
# those waits.  Times: CLOCK_MONOTONIC on both sides (time.monotonic_ns()
# here, `mono_ns` in the brokers' events).  Python 3 standard library only.
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

import keelpair
from keelpair import EventReader, log, now_ns

POLL_S = 0.005
RETRY_INTERVAL_MS = 100   # ha: retry-interval of every pair (as the scenarios)
A = None          # parsed arguments
PROCS = []        # every Popen started, for the final cleanup
FAILURES = []     # (figure, problem) for the summary and the exit status
ROWS = []         # (figure, value) printed at the end


class BenchError(Exception):
    pass


def pick_ports(n):
    return keelpair.pick_ports(n, BenchError)


# ---- brokers ---------------------------------------------------------------------

class Node(EventReader):
    """One keel-broker: its config, data directory, events file, process."""

    def __init__(self, name, stomp_port, ha=None, journal_file_size=None):
        self.name = name
        self.port = stomp_port
        self.dir = os.path.join(A.dir, name)
        self.data = os.path.join(self.dir, "data")
        self.events_init(os.path.join(self.dir, "events.jsonl"))
        self.stderr = os.path.join(self.dir, "stderr.log")
        self.cfg = os.path.join(self.dir, "broker.yaml")
        self.proc = None
        os.makedirs(self.dir, exist_ok=True)
        with open(self.cfg, "w") as f:
            if journal_file_size:
                f.write("journal-file-size: %s\n" % journal_file_size)
            if ha:
                f.write("ha:\n")
                for k, v in ha.items():
                    f.write("  %s: %s\n" % (k, json.dumps(v) if isinstance(v, str) else v))

    def start(self):
        """Spawn the broker; returns CLOCK_MONOTONIC ns just before the spawn."""
        assert self.proc is None or self.proc.poll() is not None
        err = open(self.stderr, "ab")
        t = now_ns()
        self.proc = subprocess.Popen(
            [A.broker, "-c", self.cfg, "-l", "127.0.0.1:%d" % self.port, "-d", self.data,
             "-e", self.events, "-n", self.name, "-L", getattr(A, "log_level", "warn")],
            stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        err.close()
        PROCS.append(self.proc)
        with open(A.pids_file, "a") as f:
            f.write("%d\n" % self.proc.pid)
        return t

    def wait(self, etype, within_s, since=0, **fields):
        """The first event of etype (with fields) at or after index since."""
        deadline = time.monotonic() + within_s
        while True:
            e = self.find(etype, since, **fields)
            if e is not None:
                return e
            if not self.alive():
                self.read()
                e = self.find(etype, since, **fields)
                if e is not None:
                    return e
                raise BenchError("%s exited (status %s) before %s %s\n%s" %
                                 (self.name, self.proc.returncode if self.proc else None,
                                  etype, fields or "", self.diag()))
            if time.monotonic() > deadline:
                raise BenchError("%s: no %s %s within %g s\n%s" %
                                 (self.name, etype, fields or "", within_s, self.diag()))
            time.sleep(POLL_S)

    def diag(self, n=15):
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

    def kill9(self):
        """SIGKILL; returns CLOCK_MONOTONIC ns just before the kill."""
        t = now_ns()
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        return t

    def stop(self, within_s=30):
        """SIGTERM and reap (a broker that does not stop in time is a finding)."""
        if not self.alive():
            return
        self.proc.terminate()
        try:
            rc = self.proc.wait(within_s)
        except subprocess.TimeoutExpired:
            msg = "%s did not stop within %g s of SIGTERM\n%s" % (self.name, within_s, self.diag())
            self.proc.kill()
            self.proc.wait()
            raise BenchError(msg)
        if rc != 0:
            raise BenchError("%s exited with status %d on SIGTERM\n%s" % (self.name, rc, self.diag()))


def ha_conf(role, listen, peer):
    return {"role": role, "listen": "127.0.0.1:%d" % listen, "peer": "127.0.0.1:%d" % peer,
            "check-period": 1000, "connection-ttl": 5000, "retry-interval": RETRY_INTERVAL_MS,
            "failback-wait": 30000}


def make_pair(tag, journal_file_size=None):
    """A fresh primary/backup pair (not started) on the bench's ports."""
    sp, sb, rp, rb = A.ports
    prim = Node("%s-primary" % tag, sp, ha_conf("primary", rp, rb), journal_file_size)
    back = Node("%s-backup" % tag, sb, ha_conf("backup", rb, rp), journal_file_size)
    return prim, back


def start_pair(tag, journal_file_size=None):
    """Start primary (wait LIVE), then backup (wait backup.announced)."""
    prim, back = make_pair(tag, journal_file_size)
    prim.start()
    prim.wait("state", 15, state="LIVE")
    back.start()
    back.wait("backup.announced", 30)
    prim.wait("replication.sync.done", 10)
    return prim, back


def stop_all(*nodes):
    err = None
    for n in nodes:
        try:
            n.stop()
        except BenchError as e:
            err = err or e
    if err:
        raise err


# ---- clients ---------------------------------------------------------------------

def run(cmd, timeout_s):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise BenchError("client timed out after %g s: %s" % (timeout_s, " ".join(cmd)))
    if r.returncode != 0:
        raise BenchError("client failed (%d): %s\n%s%s" % (r.returncode, " ".join(cmd),
                                                             r.stdout[-2000:], r.stderr[-2000:]))
    return r.stdout


def fill(port, dest, count, size, every):
    """count persistent messages of size bytes, a receipt every `every`, no consumer."""
    out = run([A.keelctl, "--port", str(port), "perf", "--producers", "1", "--consumers", "0",
               "--persistent", "--receipt-every", str(every), "--size", str(size),
               "--count", str(count), "--destination", dest, "--timeout-s", "300", "--json"], 330)
    return json.loads(out)


def perf(port, dest, count, every):
    """issue3.sh runs 1-2: 1 producer / 1 consumer, 1 KiB persistent."""
    out = run([A.keelctl, "--port", str(port), "perf", "--persistent", "--receipt-every",
               str(every), "--size", "1024", "--count", str(count), "--destination", dest,
               "--json"], 300)
    return json.loads(out)["msgs_per_s"]


def flow_sync(port, count):
    """issue3.sh run 3: one producer, each RECEIPT waited for."""
    out = run([A.flowbench, "sync", str(port), str(count)], 300)
    for ln in out.splitlines():
        if ln.startswith("result:"):
            kv = dict(x.split("=", 1) for x in ln.split()[1:])
            return float(kv["msgps"]), float(kv["p50_ms"])
    raise BenchError("flowbench sync printed no result line:\n" + out)


# ---- figures ---------------------------------------------------------------------

def ms(ns):
    return ns / 1e6


def mmm(vals, fmt="%.1f"):
    v = sorted(vals)
    return "median %s, min %s, max %s (n=%d)" % (fmt % statistics.median(v), fmt % v[0],
                                                 fmt % v[-1], len(v))


def row(figure, value):
    ROWS.append((figure, value))
    log("  -> %s: %s" % (figure, value))


def bench_failover(size=None):
    """size: journal-file-size (None: the default, 10 MiB).  Activation must
    cost in proportion to the live data, not to the segments' size."""
    label = "" if size is None else ", journal-file-size %s" % size
    log("== 1. failover: kill -9 of the primary -> backup LIVE (%d runs, %d x 1 KiB "
        "persistent in the journal%s) ==" % (A.failover_runs, A.failover_msgs, label))
    tot, detect, load = [], [], []
    for i in range(A.failover_runs):
        # fresh data directories per section too (a reused one holds the
        # previous section's failover)
        prim, back = start_pair("fo%s%02d" % ("" if size is None else size, i), size)
        try:
            fill(prim.port, "/queue/ha.fo", A.failover_msgs, 1024, 100)
            m = back.mark()
            t_kill = prim.kill9()
            live = back.wait("state", 30, since=m, state="LIVE")
            fo = back.find("failover", m)
            jl = back.find("journal.loaded", m)
            if jl is None or jl.get("messages") != A.failover_msgs:
                raise BenchError("run %d: the backup loaded %s messages, %d were receipted\n%s"
                                 % (i, jl and jl.get("messages"), A.failover_msgs, back.diag()))
            tot.append(ms(live["mono_ns"] - t_kill))
            detect.append(ms(fo["mono_ns"] - t_kill))
            load.append(ms(jl["mono_ns"] - fo["mono_ns"]))
            log("  run %2d: kill -> LIVE %.1f ms (kill -> failover %.1f ms, failover -> "
                "journal.loaded %.1f ms)" % (i + 1, tot[-1], detect[-1], load[-1]))
        finally:
            stop_all(prim, back)
    row("failover%s, kill -9 -> backup LIVE (ms)" % label, mmm(tot))
    row("  of which kill -> failover event (ms)", mmm(detect))
    row("  of which failover -> journal.loaded (ms)", mmm(load))
    # After a closed link the backup first reconnects to check the live is
    # gone; when that connect lands in the dying primary's listen backlog it
    # is reset, and the next try waits for retry-interval (100 ms here).
    slow = sum(1 for d in detect if d >= RETRY_INTERVAL_MS)
    row("  runs where kill -> failover >= retry-interval (%d ms)" % RETRY_INTERVAL_MS,
        "%d of %d" % (slow, len(detect)))


def bench_failback():
    log("== 2. failback with %d x 1 KiB persistent in the journal (%d cycles on one pair) =="
        % (A.failback_msgs, A.failback_runs))
    prim, back = start_pair("fb")
    done, cycle, plive = [], [], []
    try:
        fill(prim.port, "/queue/ha.fb", A.failback_msgs, 1024, 100)
        for i in range(A.failback_runs):
            mb = back.mark()
            prim.kill9()
            back.wait("state", 30, since=mb, state="LIVE")
            jl = back.find("journal.loaded", mb)
            if jl is None or jl.get("messages") != A.failback_msgs:
                raise BenchError("cycle %d: the backup loaded %s messages, expected %d\n%s"
                                 % (i, jl and jl.get("messages"), A.failback_msgs, back.diag()))
            mb = back.mark()
            mp = prim.mark()
            t0 = prim.start()
            fd = back.wait("failback.done", 60, since=mb)
            ba = back.wait("backup.announced", 60, since=mb)
            pl = prim.wait("state", 10, since=mp, state="LIVE")
            pjl = prim.find("journal.loaded", mp)
            if pjl is None or pjl.get("messages") != A.failback_msgs:
                raise BenchError("cycle %d: the primary loaded %s messages, expected %d\n%s"
                                 % (i, pjl and pjl.get("messages"), A.failback_msgs, prim.diag()))
            done.append(ms(fd["mono_ns"] - t0))
            cycle.append(ms(ba["mono_ns"] - t0))
            plive.append(ms(pl["mono_ns"] - t0))
            log("  cycle %d: spawn -> primary LIVE %.1f ms, -> failback.done %.1f ms, -> "
                "backup.announced %.1f ms" % (i + 1, plive[-1], done[-1], cycle[-1]))
    finally:
        stop_all(prim, back)
    row("failback, primary spawn -> ex-backup failback.done (ms)", mmm(done))
    row("failback, primary spawn -> ex-backup backup.announced (ms)", mmm(cycle))
    row("  primary spawn -> primary LIVE (ms)", mmm(plive))


def bench_sync(tag, count, size, every):
    log("== 3. initial sync: %d x %d B persistent on the live, then the backup starts "
        "(%d runs) ==" % (count, size, A.sync_runs))
    rates, secs_all, st = [], [], None
    for i in range(A.sync_runs):
        st, secs = sync_run("sync%d-%s" % (i, "large" if size >= (1 << 20) else "small"),
                            count, size, every)
        rates.append(st["bytes"] / 1e6 / secs)
        secs_all.append(secs)
    row("initial sync, %s (%d files, %.0f MB): MB/s (10^6 B/s)" % (tag, st["files"], st["bytes"] / 1e6),
        mmm(rates) + "; %.3f s median" % statistics.median(secs_all))


def sync_run(name, count, size, every):
    prim, back = make_pair(name)
    try:
        prim.start()
        prim.wait("state", 15, state="LIVE")
        t = now_ns()
        fill(prim.port, "/queue/ha.sync", count, size, every)
        fill_s = (now_ns() - t) / 1e9
        back.start()
        st = back.wait("replication.sync.started", 60)
        dn = back.wait("replication.sync.done", 300)
        back.wait("backup.announced", 30)
        secs = (dn["mono_ns"] - st["mono_ns"]) / 1e9
        mb = st["bytes"] / 1e6
        log("  filled in %.1f s (%.1f MB/s with receipts); snapshot %d files, %.1f MB, "
            "synced in %.3f s: %.1f MB/s" % (fill_s, count * size / 1e6 / fill_s, st["files"], mb,
                                            secs, mb / secs))
    finally:
        stop_all(prim, back)
    for n in (prim, back):   # ~1 GB a run: do not keep it past the run
        shutil.rmtree(n.data, ignore_errors=True)
    return st, secs


def tp_run(mode, i):
    """One fresh broker (or pair): the three client methods in turn."""
    if mode == "ha":
        prim, back = start_pair("tp%d" % i)
        nodes = (prim, back)
    else:
        prim = Node("tp%d-standalone" % i, A.ports[0])
        prim.start()
        prim.wait("state", 15, state="LIVE")
        nodes = (prim,)
    try:
        r = [perf(prim.port, "/queue/bench.j100", A.tp_count, 100),
             perf(prim.port, "/queue/bench.j1", A.tp_count, 1)]
        r += list(flow_sync(prim.port, A.sync_count)) if A.flowbench else [None, None]
        if mode == "ha" and back.find("replication.lost") is not None:
            raise BenchError("the backup was lost during the run\n" + back.diag())
        if mode == "ha" and not back.alive():
            raise BenchError("the backup died during the run\n" + back.diag())
    finally:
        stop_all(*nodes)
    log("  %-10s run %d: every 100 %.0f msg/s, every 1 %.0f msg/s%s" %
        (mode, i + 1, r[0], r[1],
         ", sync %.0f msg/s (p50 %.3f ms)" % (r[2], r[3]) if r[2] is not None else ""))
    return r


def bench_throughput():
    log("== 4. persistent receipted throughput, 1 KiB: live with a synced backup vs "
        "standalone (%d runs each, interleaved, %d messages per perf run) =="
        % (A.tp_runs, A.tp_count))
    res = {"standalone": [[], [], [], []], "ha": [[], [], [], []]}
    for i in range(A.tp_runs):
        # alternate which goes first, so neither always runs on a warmer disk
        for mode in (("standalone", "ha") if i % 2 == 0 else ("ha", "standalone")):
            for k, v in enumerate(tp_run(mode, i)):
                if v is not None:
                    res[mode][k].append(v)
    labels = ("receipt every 100 (keelctl perf)", "receipt every message, pipelined (keelctl perf)",
              "each receipt waited for (flowbench sync)")
    for k, label in enumerate(labels):
        if not res["ha"][k]:
            continue
        s, h = statistics.median(res["standalone"][k]), statistics.median(res["ha"][k])
        row("1 KiB persistent, %s: standalone (msg/s)" % label, mmm(res["standalone"][k], "%.0f"))
        row("1 KiB persistent, %s: live + synced backup (msg/s)" % label,
            mmm(res["ha"][k], "%.0f") + "; %.0f%% of standalone" % (100 * h / s))
    if res["ha"][3]:
        row("  receipt latency p50, standalone / with backup (ms, medians)", "%.3f / %.3f" %
            (statistics.median(res["standalone"][3]), statistics.median(res["ha"][3])))


def section(name, fn, *args):
    if name not in A.only:
        return
    try:
        fn(*args)
    except BenchError as e:
        FAILURES.append((name, str(e)))
        log("ha-bench: %s FAILED: %s" % (name, e))


def cleanup():
    for p in PROCS:
        if p.poll() is None:
            p.kill()
            p.wait()


def main():
    global A
    ap = argparse.ArgumentParser()
    ap.add_argument("--broker", required=True)
    ap.add_argument("--keelctl", required=True)
    ap.add_argument("--flowbench", default="")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--pids-file", required=True)
    ap.add_argument("--only", default="failover failover-1g failback sync throughput")
    ap.add_argument("--failover-runs", type=int, default=20)
    ap.add_argument("--failover-msgs", type=int, default=1000)
    ap.add_argument("--failback-runs", type=int, default=5)
    ap.add_argument("--failback-msgs", type=int, default=10000)
    ap.add_argument("--large-count", type=int, default=500)
    ap.add_argument("--small-mib", type=int, default=100)
    ap.add_argument("--sync-runs", type=int, default=3)
    ap.add_argument("--tp-runs", type=int, default=3)
    ap.add_argument("--tp-count", type=int, default=200000)
    ap.add_argument("--sync-count", type=int, default=5000)
    A = ap.parse_args()
    A.only = A.only.split()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        A.ports = pick_ports(4)   # STOMP primary, STOMP backup, repl primary, repl backup
        log("ports: STOMP %d/%d, replication %d/%d; data under %s" % (*A.ports, A.dir))
        section("failover", bench_failover)
        section("failover-1g", bench_failover, "1GiB")
        section("failback", bench_failback)
        section("sync", bench_sync, "large messages (1 MiB files)", A.large_count, 1 << 20, 10)
        section("sync", bench_sync, "journal segments (4 KiB messages)",
                A.small_mib * 256, 4096, 100)
        section("throughput", bench_throughput)
    finally:
        cleanup()
    print()
    print("replication figures:")
    for f, v in ROWS:
        print("  %-70s %s" % (f, v))
    for name, e in FAILURES:
        print("  FAILED %s: %s" % (name, e.splitlines()[0]))
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
