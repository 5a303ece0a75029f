#!/usr/bin/env python3
"""Writes the seed corpus of fuzz_repl into corpus_repl/ (README.md).

Independent of the C encoder on purpose: the frames are built from the
documented layout (README.md "Replication (HA)"), so a seed that the
decoder rejects points at a disagreement between the two.  Each file is
one byte of split pattern followed by the frames.
"""
import os
import struct
import sys


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def frame(mtype, payload, version=1, reserved=0):
    head = struct.pack("<IBBH", len(payload), mtype, version, reserved)
    return head + struct.pack("<I", crc32c(payload, crc32c(head))) + payload


def s(b):
    return struct.pack("<H", len(b)) + b


NODE = bytes(range(1, 17))


def ident(seq=5, inc=2, flags=1):
    return NODE + struct.pack("<QQB", seq, inc, flags)


REGISTER, OK, REFUSED, SYNC_START, CHUNK, SYNC_DONE, SYNC_DONE_ACK, OP, OP_ACK, \
    PING, PONG, ANNOUNCE, HANDOVER, LIVE_STARTED, GOODBYE = range(1, 16)

FRAMES = {
    "register": frame(REGISTER, bytes([1, 1]) + ident() + s(b"cluster") + s(b"secret")),
    "register_backup": frame(REGISTER, bytes([2, 0]) + bytes(16) + struct.pack("<QQB", 0, 1, 0)
                             + s(b"") + s(b"")),
    # a live's probe (flag 2) carries its split-brain count (u64) at the end
    "register_probe": frame(REGISTER, bytes([1, 2]) + ident() + s(b"") + s(b"")
                            + struct.pack("<Q", 310)),
    "register_ok": frame(OK, ident(7, 3, 3)),
    # live-too (reason 10): the other live's count after the text
    "refused_live_too": frame(REFUSED, bytes([10]) + ident(9, 1, 1) + s(b"live-too")
                              + struct.pack("<Q", 50)),
    "refused": frame(REFUSED, bytes([1]) + ident(9, 1, 1) + s(b"not live")),
    "sync_start": frame(SYNC_START, struct.pack("<QQ", 3, 30 << 20)),
    "chunk": frame(CHUNK, struct.pack("<IBQ", 1, 0, 0) + s(b"keel-000000000001.jnl")
                   + struct.pack("<I", 5) + b"hello"),
    "chunk_last": frame(CHUNK, struct.pack("<IBQ", 2, 1, 65536) + s(b"42.msg")
                        + struct.pack("<I", 0)),
    "sync_done": frame(SYNC_DONE, ident()),
    "sync_done_ack": frame(SYNC_DONE_ACK, ident()),
    "op": frame(OP, struct.pack("<QI", 11, 4) + b"\x01\x02\x03\x04"),
    "op_ack": frame(OP_ACK, struct.pack("<Q", 11)),
    "ping": frame(PING, struct.pack("<Q", 1)),
    "pong": frame(PONG, struct.pack("<Q", 1)),
    "announce": frame(ANNOUNCE, ident()),
    "handover": frame(HANDOVER, ident()),
    "live_started": frame(LIVE_STARTED, ident(6)),
    "goodbye": frame(GOODBYE, bytes([7]) + s(b"initial sync timed out")),
}

BAD = {
    "bad_crc": FRAMES["op_ack"][:-1] + bytes([FRAMES["op_ack"][-1] ^ 0xFF]),
    "bad_version": frame(OP_ACK, struct.pack("<Q", 1), version=2),
    "bad_reserved": frame(OP_ACK, struct.pack("<Q", 1), reserved=1),
    "bad_type": frame(99, b""),
    "huge_length": struct.pack("<IBBH", 0x7FFFFFFF, OP, 1, 0) + b"\x00" * 8,
    "truncated": FRAMES["register"][:-3],
    "trailing": frame(OP_ACK, struct.pack("<Q", 1) + b"x"),
    "bad_name": frame(CHUNK, struct.pack("<IBQ", 1, 0, 0) + s(b"../etc") + struct.pack("<I", 0)),
    "big_chunk": frame(CHUNK, struct.pack("<IBQ", 1, 0, 0) + s(b"a") + struct.pack("<I", 1 << 20)),
    "bad_reason": frame(GOODBYE, bytes([200]) + s(b"")),
}


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__),
                                                               "corpus_repl")
    os.makedirs(out, exist_ok=True)
    n = 0
    for i, (name, f) in enumerate(sorted({**FRAMES, **BAD}.items())):
        with open(os.path.join(out, "seed_" + name), "wb") as fh:
            fh.write(bytes([i % 16]) + f)
        n += 1
    stream = b"".join(FRAMES[k] for k in sorted(FRAMES))
    for p in (0, 1, 5):
        with open(os.path.join(out, "seed_stream_%d" % p), "wb") as fh:
            fh.write(bytes([p]) + stream)
        n += 1
    print("wrote %d seeds to %s" % (n, out))


if __name__ == "__main__":
    main()
