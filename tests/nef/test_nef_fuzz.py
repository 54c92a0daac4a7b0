"""Property-based fuzzing of the NEF reader: random bytes, bit flips, truncations and
length-field edits of the real files and of writer fixtures. Whatever the input,
``read_nef`` returns a NefFile or raises NefError, and never allocates much more than
the file.

CI runs a bounded number of examples (a few seconds per test). For a long run set
``KP_NEF_FUZZ_EXAMPLES`` (examples per test), e.g.
``KP_NEF_FUZZ_EXAMPLES=100000 python -m pytest tests/nef/test_nef_fuzz.py``.
"""

from __future__ import annotations

import os
import struct
import tracemalloc
import zlib
from functools import lru_cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nef_fixtures import FIXTURES, build

from _shared import SHARED_DIR
from kp_backend.nef import NefError, NefFile, read_nef
from kp_backend.nef.container import parse_container

_LONG = int(os.environ.get("KP_NEF_FUZZ_EXAMPLES", "0"))


def _settings(default: int):
    return settings(max_examples=_LONG or default, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _fix_crc(data: bytes) -> bytes:
    if len(data) < 4:
        return data
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]))


def _check(data: bytes) -> None:
    """Both with the trailer CRC repaired (so parsing goes deep) and with the CRC unchecked."""
    for blob, verify in ((_fix_crc(data), True), (data, False)):
        try:
            result = read_nef(blob, verify_crc=verify)
        except NefError as exc:
            assert exc.field and isinstance(exc.offset, (int, type(None)))
        else:
            assert isinstance(result, NefFile)


_EDGE_U32 = [0, 1, 2, 3, 4, 7, 8, 16, 56, 0xFF, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000,
             0xFFFFFFF0, 0xFFFFFFFC, 0xFFFFFFFF]


def _mutation(size: int):
    pos = st.integers(0, max(size - 1, 0))
    return st.one_of(
        st.tuples(st.just("flip"), pos, st.integers(0, 7)),
        st.tuples(st.just("truncate"), st.integers(0, size), st.just(0)),
        st.tuples(st.just("u32"), pos, st.sampled_from(_EDGE_U32) | st.integers(0, 2**32 - 1)),
        st.tuples(st.just("u16"), pos, st.sampled_from([0, 1, 2, 3, 4, 5, 0xFFFF]) | st.integers(0, 0xFFFF)),
        st.tuples(st.just("byte"), pos, st.integers(0, 255)),
    )


def _apply(data: bytes, ops) -> bytes:
    buf = bytearray(data)
    for op, pos, value in ops:
        if op == "truncate":
            del buf[pos:]
        elif pos >= len(buf):
            continue
        elif op == "flip":
            buf[pos] ^= 1 << value
        elif op == "byte":
            buf[pos] = value
        else:
            fmt = "<I" if op == "u32" else "<H"
            pos = min(pos, len(buf) - struct.calcsize(fmt))
            if pos >= 0:
                struct.pack_into(fmt, buf, pos, value)
    return bytes(buf)


@lru_cache(maxsize=None)
def _fixture(name: str) -> bytes:
    return build(name)[3]


@_settings(300)
@given(st.binary(max_size=600))
def test_random_bytes(data):
    _check(data)


@_settings(400)
@given(st.data())
def test_mutated_fixtures(data):
    name = data.draw(st.sampled_from(sorted(FIXTURES)), label="fixture")
    blob = _fixture(name)
    ops = data.draw(st.lists(_mutation(len(blob)), min_size=1, max_size=4), label="ops")
    mutated = _apply(blob, ops)
    tracemalloc.start()
    try:
        _check(mutated)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Generous for Python objects, yet far below what a trusted length field could demand.
    assert peak < 1_000_000 + 200 * len(mutated), peak


REAL = sorted((SHARED_DIR / "models/nef").glob("*/*.nef")) if SHARED_DIR.is_dir() else []


@lru_cache(maxsize=None)
def _real(path) -> tuple[bytes, list[tuple[int, int]]]:
    """The file and its structural regions: everything but command and weight bytes."""
    data = path.read_bytes()
    nef = read_nef(data)
    c = parse_container(memoryview(data))
    start = c.all_models_offset
    regions = [(0, start), (start + len(c.all_models), len(data))]
    base = nef.models[0].fw_info.cmd_mem_addr
    for m in nef.models:
        off = start + m.fw_info.setup_mem_addr - base
        regions.append((off, off + m.fw_info.setup_mem_len))
    return data, regions


@pytest.mark.skipif(not REAL, reason="../shared/models/nef is absent")
@_settings(150)
@given(st.data())
def test_mutated_real_files(data):
    path = data.draw(st.sampled_from(REAL), label="file")
    blob, regions = _real(path)
    ops = []
    for _ in range(data.draw(st.integers(1, 3), label="n_ops")):
        lo, hi = data.draw(st.sampled_from(regions), label="region")
        op = data.draw(_mutation(hi - lo), label="op")
        ops.append((op[0], lo + op[1], op[2]))
    _check(_apply(blob, ops))
