#!/usr/bin/env python3
"""gen_journal_corpus.py - seeds for fuzz_journal (broker/fuzz/corpus_journal).

An encoder written from the layout documented in broker/README.md
("Journal", Format), independent of the C code: records with their
CRC32C, grouped into the target's input (flag byte, then u16-length
segments).  Run from anywhere: python3 gen_journal_corpus.py OUTDIR
"""
import os
import struct
import sys

POLY = 0x82F63B78
TABLE = []
for i in range(256):
    c = i
    for _ in range(8):
        c = (c >> 1) ^ POLY if c & 1 else c >> 1
    TABLE.append(c)


def crc32c(b):
    c = 0xFFFFFFFF
    for x in b:
        c = TABLE[(c ^ x) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def rec(rtype, payload, tx=0):
    rest = struct.pack('<IBBHQ', len(payload), rtype, 1 if tx else 0, 0, tx) + payload
    return struct.pack('<I', crc32c(rest)) + rest


def s16(text):
    b = text.encode()
    return struct.pack('<H', len(b)) + b


def address_add(oid, name):
    return rec(1, struct.pack('<QBB', oid, 1, 0) + s16(name))


def queue_add(oid, name, address):
    return rec(3, struct.pack('<QBBi', oid, 1, 0, -1) + s16(name) + s16(address))


def message(mid, address, body, tx=0):
    hdrs = [(b'color', b'blue')]
    p = struct.pack('<QqqBB', mid, 1700000000000, 0, 4, 0) + s16(address)
    p += struct.pack('<I', len(hdrs))
    for k, v in hdrs:
        p += struct.pack('<I', len(k)) + k + struct.pack('<I', len(v)) + v
    p += struct.pack('<Q', len(body)) + body
    return rec(5, p, tx)


def ref(rtype, qid, mid, tx=0):
    return rec(rtype, struct.pack('<QQ', qid, mid), tx)


def txmark(rtype, tx):
    return rec(rtype, b'', tx)


def seeds():
    base = address_add(1, 'q') + queue_add(2, 'q', 'q')
    msgs = b''.join(message(m, 'q', b'body-%d' % m) + ref(6, 2, m) for m in range(1, 4))
    seg2 = ref(7, 2, 1) + message(4, 'q', b'four') + ref(6, 2, 4)
    tx = txmark(8, 9) + message(5, 'q', b'tx', 9) + ref(6, 2, 5, 9) + txmark(9, 9)
    orphan = ref(6, 2, 77)
    yield 'two-segments', 1 | 2 | 8, [base + msgs, seg2]
    yield 'two-segments-salvage', 1 | 2 | 4 | 8, [base + msgs, seg2]
    yield 'transaction', 1 | 2 | 8, [base + tx]
    yield 'orphan-salvage', 1 | 2 | 4 | 8, [base + orphan + msgs]
    flipped = bytearray(base + msgs)
    flipped[len(base) + 30] ^= 8
    yield 'flipped-salvage', 1 | 2 | 4 | 8, [bytes(flipped), seg2]
    torn = (base + msgs)[:-20]
    yield 'torn-tail', 1 | 2 | 8, [base, torn]
    yield 'unchained', 1 | 2, [base + msgs, seg2, tx]
    yield 'raw-bad-header', 2, [b'KEELJRN\0' + b'\x01' * 56 + msgs]


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__),
                                                             'corpus_journal')
    os.makedirs(out, exist_ok=True)
    for name, flags, segs in seeds():
        data = bytes([flags]) + b''.join(struct.pack('<H', len(s)) + s for s in segs)
        with open(os.path.join(out, name), 'wb') as f:
            f.write(data)


if __name__ == '__main__':
    main()
