"""The transport's one-allocation bulk read: the buffer handed to pyusb has exactly the
requested length (the replay backend fails otherwise), and every read comes back as
immutable ``bytes`` of what arrived: full, short, empty, multi-piece and after a reused
size, with nothing left over from an earlier read."""

from __future__ import annotations

from test_transport import open_transport, scripted

from kp_backend.protocol.constants import CHUNK_SIZE


def test_reads_return_exact_immutable_bytes(tmp_path):
    first = bytes(range(200)) * 80  # 16,000 bytes
    b = scripted(tmp_path, [
        {"kind": "in", "data": first + b"\x07" * 372, "length": 16372},  # full
        {"kind": "in", "data": b"\x01\x02\x03", "length": 16372},  # short, same size
        {"kind": "in", "data": b"", "length": 100},  # empty
        {"kind": "in", "data": b"\x05" * 4, "length": 4},
    ])
    t = open_transport(b)
    full = t.read(16372, 100)
    short = t.read(16372, 100)
    empty = t.read(100, 100)
    four = t.read(4, 100)
    assert [type(v) for v in (full, short, empty, four)] == [bytes] * 4
    assert full == first + b"\x07" * 372
    assert short == b"\x01\x02\x03"  # not padded with the earlier read's bytes
    assert empty == b"" and four == b"\x05" * 4
    b.verify()


def test_a_read_larger_than_one_piece_is_joined(tmp_path):
    data = bytes(range(251)) * (CHUNK_SIZE // 251 + 1)
    head, tail = data[:CHUNK_SIZE], data[CHUNK_SIZE:CHUNK_SIZE + 10]
    b = scripted(tmp_path, [
        {"kind": "in", "data": head, "length": CHUNK_SIZE},
        {"kind": "in", "data": tail, "length": 1000},  # short: ends the read
    ])
    t = open_transport(b)
    got = t.read(CHUNK_SIZE + 1000, 100)
    assert type(got) is bytes and got == head + tail
    b.verify()
