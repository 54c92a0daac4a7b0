"""Result-message node tables: build (emulator side) -> parse/retrieve (host side)."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from kp_backend.layouts import (
    build_result_payload,
    decode_node,
    encode_output_node,
    node_buffer_size,
    parse_result_nodes,
    result_payload_size,
    retrieve_node,
)
from kp_backend.npu_types import DataLayout, PRODUCT_ID_BY_CHIP, Chip
from kp_backend.protocol.wire import ResultHeader

NODES = {
    "KL520": [("16W1C8B", (1, 3, 4, 5), 2, 0.5), ("16W1C8B", (1, 18, 2, 17), 7, 1.0),
              ("4W4C8B", (1, 3, 5, 7), 1, 2.0)],
    "KL720": [("16W1C8B", (1, 3, 4, 5), 2, 0.5), ("8W1C16B", (1, 5, 2, 9), 11, 1.0),
              ("1W16C8B", (1, 20, 3, 3), 4, 0.9), ("RAW_8B", (1, 2, 3, 4), 5, 1.5)],
    "KL630": [("1W16C8B", (1, 17, 2, 2), 3, 0.75), ("8W1C16B", (1, 2, 2, 2), 10, 1.25)],
}
PID = {"KL520": 0x100, "KL720": 0x720, "KL630": 0x630}


def _message(chip: str, extra: int = 0, seed: int = 0):
    rng = np.random.default_rng(seed)
    nodes, tensors = [], []
    for layout, shape, radix, scale in NODES[chip]:
        x = rng.uniform(-3, 3, size=shape).astype(np.float32)
        raw = encode_output_node(x, chip=chip, layout=layout, shape=shape, radix=radix,
                                 scale=scale)
        nodes.append((layout, shape, radix, scale, raw))
        tensors.append(x)
    mem = sum(len(n[4]) for n in nodes) + extra
    payload = build_result_payload(chip, nodes, mem)
    assert len(payload) == result_payload_size(chip, len(nodes), mem)
    header = ResultHeader(total_size=344 + len(payload), job_id=17, status_code=0,
                          product_id=PID[chip], inf_number=3).pack()
    return header + payload, nodes


@pytest.mark.parametrize("chip", sorted(NODES))
@pytest.mark.parametrize("ordering", ["DEFAULT", "CHW", "HCW", "HWC"])
def test_build_parse_retrieve(chip, ordering) -> None:
    message, nodes = _message(chip, extra=40)
    records = parse_result_nodes(message)
    assert [r.index for r in records] == list(range(len(nodes)))
    for record, (layout, shape, radix, scale, raw) in zip(records, nodes):
        assert record.shape == shape and record.radix == radix
        assert record.scale == pytest.approx(scale, rel=1e-7)
        assert record.chip is Chip[chip]
        assert bytes(record.data) == raw
        for as_float in (False, True):
            got = retrieve_node(message, record.index, ordering, as_float=as_float)
            expected = decode_node(raw, chip=chip, layout=layout, shape=shape, radix=radix,
                                   scale=scale, ordering=ordering, as_float=as_float)
            assert got.tobytes() == expected.tobytes() and got.shape == expected.shape


def test_kl520_node_data_is_back_to_back() -> None:
    message, nodes = _message("KL520")
    records = parse_result_nodes(message)
    assert records[0].offset == 344 + 4 + 24 * 3
    for a, b in zip(records, records[1:]):
        assert b.offset == a.offset + a.height * a.channel * 16 * -(-a.width // 16)


def test_unknown_code_reads_as_16w1c8b() -> None:
    message, _ = _message("KL720")
    patched = bytearray(message)
    struct.pack_into("<I", patched, 344 + 8 + 4 * 4, 77)  # node 0's data_format
    record = parse_result_nodes(bytes(patched))[0]
    assert record.layout is DataLayout.UNKNOWN and record.code == 77
    assert np.array_equal(retrieve_node(bytes(patched), 0), retrieve_node(message, 0))


def _patched(message: bytes, offset: int, fmt: str, value) -> bytes:
    out = bytearray(message)
    struct.pack_into(fmt, out, offset, value)
    return bytes(out)


def test_result_errors() -> None:
    message, _ = _message("KL720")
    cases = [
        (message[:300], "at least the 344-byte"),
        (_patched(message, 0, "<I", 0x12345678), "magic"),
        (_patched(message, 0, "<I", 0x11FF22AB), "KL730"),
        (_patched(message, 328, "<I", PRODUCT_ID_BY_CHIP[Chip.KL730]), "product id"),
        (message[:1000], "node table"),
        (_patched(message, 348, "<i", 41), "expected 0..40"),
        (_patched(message, 348, "<i", -1), "expected 0..40"),
    ]
    for raw, match in cases:
        with pytest.raises(ValueError, match=match):
            retrieve_node(raw, 0)
    with pytest.raises(ValueError, match="out of range"):
        retrieve_node(message, 4)
    with pytest.raises(ValueError, match="node 3"):
        retrieve_node(message[:-10], 3)
    kl520, _ = _message("KL520")
    with pytest.raises(ValueError, match="table of 1000"):
        retrieve_node(_patched(kl520, 344, "<I", 1000), 0)
    with pytest.raises(ValueError, match="node 2"):
        retrieve_node(kl520[:-1], 2)


def test_build_errors() -> None:
    raw = bytes(node_buffer_size(chip="KL720", layout="16W1C8B", shape=(1, 1, 1, 1)))
    node = ("16W1C8B", (1, 1, 1, 1), 0, 1.0, raw)
    with pytest.raises(ValueError, match="at most 40"):
        build_result_payload("KL720", [node] * 41, 41 * 16)
    with pytest.raises(ValueError, match="output_mem_len"):
        build_result_payload("KL720", [node] * 2, 31)
    with pytest.raises(ValueError, match="expected 16"):
        build_result_payload("KL520", [node[:4] + (raw + b"x",)], 64)
    with pytest.raises(ValueError, match="KL730"):
        build_result_payload("KL730", [node], 16)
    with pytest.raises(ValueError, match="one number"):
        build_result_payload("KL720", [("16W1C8B", (1, 1, 1, 1), [1, 2], 1.0, raw)], 16)
    with pytest.raises(ValueError, match="layout, shape"):
        build_result_payload("KL720", [("16W1C8B", raw)], 16)
