"""``NodeEncoder`` / ``NodeDecoder`` (planned once, used per inference) give exactly the bytes
and values of ``encode_node`` / ``decode_node``; ``decode_record`` keeps its decoder cache
bounded."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from kp_backend.layouts import (
    NodeDecoder, NodeEncoder, build_result_payload, decode_node, encode_node, encode_output_node,
    node_buffer_size, parse_result_nodes)
from kp_backend.layouts.result import decode_record
from kp_backend.protocol.wire import ResultHeader

CASES = [("KL520", "4W4C8B", (1, 3, 8, 5), 7, 1.0), ("KL720", "1W16C8B", (1, 20, 3, 4), 5, 0.75),
         ("KL720", "16W1C8B", (1, 4, 5, 19), 3, 1.5), ("KL720", "8W1C16B", (1, 2, 3, 9), 12, 1.0),
         ("KL720", "RAW_FLOAT", (1, 2, 2, 3), 0, 1.0)]


@pytest.mark.parametrize("chip,layout,shape,radix,scale", CASES)
def test_node_encoder_matches_encode_node(chip, layout, shape, radix, scale):
    rng = np.random.default_rng(1)
    enc = NodeEncoder(chip=chip, layout=layout, shape=shape, radix=radix, scale=scale)
    assert enc.nbytes == node_buffer_size(chip=chip, layout=layout, shape=shape)
    out = bytearray(b"\xAA" * (enc.nbytes + 3))
    for _ in range(3):
        x = rng.uniform(-3, 3, shape).astype(np.float32)
        x.flat[0], x.flat[1] = np.nan, np.float32(0.5) / np.float32(2.0 ** radix * scale)
        assert enc.encode_into(out, x) == enc.nbytes
        want = encode_node(x, chip=chip, layout=layout, shape=shape, radix=radix, scale=scale)
        assert bytes(out[:enc.nbytes]) == want
        assert out[enc.nbytes:] == b"\xAA" * 3


def test_node_encoder_checks_parameters_once_and_inputs_each_time():
    with pytest.raises(ValueError, match="radix"):
        NodeEncoder(chip="KL520", layout="4W4C8B", shape=(1, 3, 4, 4), radix=1.5, scale=1.0)
    enc = NodeEncoder(chip="KL520", layout="4W4C8B", shape=(1, 3, 4, 4), radix=7, scale=1.0)
    with pytest.raises(ValueError, match="shape"):
        enc.encode_into(bytearray(enc.nbytes), np.zeros((1, 3, 4, 5), np.float32))
    with pytest.raises(ValueError, match="needs"):
        enc.encode_into(bytearray(enc.nbytes - 1), np.zeros((1, 3, 4, 4), np.float32))


@pytest.mark.parametrize("chip,layout,shape,radix,scale",
                         [c for c in CASES if c[1] != "RAW_FLOAT"])
@pytest.mark.parametrize("ordering", ["DEFAULT", "CHW", "HWC"])
def test_node_decoder_matches_decode_node(chip, layout, shape, radix, scale, ordering):
    rng = np.random.default_rng(2)
    size = node_buffer_size(chip=chip, layout=layout, shape=shape, output=True)
    dec = NodeDecoder(chip=chip, layout=layout, shape=shape, ordering=ordering)
    assert dec.nbytes == size
    for r, s in ((radix, scale), (radix + 1, 0.5), (-2, 0.25)):
        raw = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        for as_float in (True, False):
            want = decode_node(raw, chip=chip, layout=layout, shape=shape, radix=r, scale=s,
                               ordering=ordering, as_float=as_float)
            got = dec.decode(raw, r, s, as_float)
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))  # bits
    with pytest.raises(ValueError, match="bytes"):
        dec.decode(raw[:-1], radix, scale)


@pytest.mark.parametrize("chip,layout,shape,radix,scale",
                         [c for c in CASES if c[1] != "RAW_FLOAT"])
@pytest.mark.parametrize("ordering", ["DEFAULT", "HWC"])
def test_decode_at_reads_the_node_in_place(chip, layout, shape, radix, scale, ordering):
    """``decode_at`` on a node inside a longer message: the same bits as ``decode_node`` of
    the sliced node, for Python and numpy numbers, -0.0 apart from 0.0, and bounds refused."""
    rng = np.random.default_rng(3)
    dec = NodeDecoder(chip=chip, layout=layout, shape=shape, ordering=ordering)
    start = 13
    message = rng.integers(0, 256, start + dec.nbytes + 7, dtype=np.uint8).tobytes()
    node = message[start:start + dec.nbytes]
    cases = ((radix, scale), (radix, 0.0), (radix, -0.0), (-3, 2),
             (np.int32(radix), np.float32(scale)))
    for (r, s), as_float in itertools.product(cases, (True, False)):
        with np.errstate(divide="ignore", invalid="ignore"):  # scale 0: +-inf and NaN
            want = decode_node(node, chip=chip, layout=layout, shape=shape, radix=r, scale=s,
                               ordering=ordering, as_float=as_float)
            for buf in (message, bytearray(message), memoryview(message)):
                got = dec.decode_at(buf, start, r, s, as_float)
                assert got.dtype == want.dtype and got.shape == want.shape
                assert got.flags.c_contiguous == want.flags.c_contiguous
                np.testing.assert_array_equal(np.ascontiguousarray(got).view(np.uint8),
                                              np.ascontiguousarray(want).view(np.uint8))
    for bad in (-1, len(message) - dec.nbytes + 1):
        with pytest.raises(ValueError, match="message"):
            dec.decode_at(message, bad, radix, scale)
    for r in range(-40, 41):  # every radix a device may report: the cached factor is right
        got = dec.decode_at(message, start, r, scale)
        want = decode_node(node, chip=chip, layout=layout, shape=shape, radix=r, scale=scale,
                           ordering=ordering)
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8))


def _kl520_result(shape, seed):
    x = np.random.default_rng(seed).uniform(-4, 4, shape).astype(np.float32)
    raw = encode_output_node(x, chip="KL520", layout="16W1C8B", shape=shape, radix=4, scale=1.0)
    payload = build_result_payload("KL520", [("16W1C8B", shape, 4, 1.0, raw)], len(raw))
    header = ResultHeader(total_size=344 + len(payload), job_id=17, status_code=0,
                          product_id=0x100, inf_number=1).pack()
    return header + payload


def test_decode_record_cache_gives_the_same_values_and_stays_bounded():
    decoders: dict = {}
    for i in range(70):  # more geometries than the cache keeps
        shape = (1, 2 + i, 1, 3)
        msg = _kl520_result(shape, i)
        node = parse_result_nodes(msg)[0]
        want = decode_record(msg, node)
        np.testing.assert_array_equal(decode_record(msg, node, decoders=decoders), want)
        np.testing.assert_array_equal(decode_record(msg, node, decoders=decoders), want)
        assert 1 <= len(decoders) <= 64
