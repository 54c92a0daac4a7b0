"""Node tables of a whole v1 inference result message (LAYOUTS.md §3, PROTOCOL.md §6.2/§6.3,
KP_PYTHON_API.md §8.1): parse them, retrieve one node, and build them for the emulator.

A result message is the 344-byte header followed by a chip-specific payload:

* KL520 (product id 0x100): u32 node count N, N x 24-byte records (H, C, W, radix, scale,
  device code), then node data back to back, each ``H*C*ceil16(W)`` bytes.
* KL720 (0x720): u32 total_raw_len, i32 N, a fixed table of 40 x 56-byte entries, then the
  data area; node i starts at ``start_offset(i)`` inside it.
* KL630 (0x630): like KL720 with 40 x 52-byte entries (read only; the emulator serves
  KL520/KL720).

The KL730 (magic 0x11FF22AB) message is not handled here: its nodes carry the stride model
and are decoded with :func:`~kp_backend.layouts.decode.decode_node` and explicit strides.

Header numbers come from :mod:`kp_backend.protocol`; the KL630 table sizes, which the
protocol package does not cover, are defined here.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kp_backend.layouts.decode import NodeDecoder
from kp_backend.layouts.plans import node_buffer_size
from kp_backend.npu_types import Chip, DataLayout, code_from_layout, layout_from_code, parse_chip
from kp_backend.protocol.constants import (
    KL520_NODE_RECORD_SIZE,
    KL720_NODE_ENTRY_SIZE,
    KL720_NODE_TABLE_ENTRIES,
    KL720_NODE_TABLE_SIZE,
    MAGIC_INFERENCE,
    MAGIC_INFERENCE_V2,
    RESULT_HEADER_SIZE,
)
from kp_backend.protocol.wire import RESULT_TAIL_OFFSET

__all__ = [
    "NodeRecord",
    "parse_result_nodes",
    "retrieve_node",
    "decode_record",
    "build_result_payload",
    "result_payload_size",
    "KL630_NODE_ENTRY_SIZE",
    "KL630_NODE_TABLE_SIZE",
]

PRODUCT_ID_OFFSET = RESULT_TAIL_OFFSET  # u32 product id at byte 328 of the result header
# Kneron's retrieve functions dispatch on these exact product ids (KP_PYTHON_API.md §8.1).
_CHIP_BY_RESULT_PID = {0x100: Chip.KL520, 0x720: Chip.KL720, 0x630: Chip.KL630}
_PID_BY_CHIP = {chip: pid for pid, chip in _CHIP_BY_RESULT_PID.items()}

KL630_NODE_TABLE_ENTRIES = 40
KL630_NODE_ENTRY_SIZE = 52
KL630_NODE_TABLE_SIZE = 8 + KL630_NODE_TABLE_ENTRIES * KL630_NODE_ENTRY_SIZE  # 2088

_U32 = struct.Struct("<I")
_TABLE_HEAD = struct.Struct("<Ii")  # total_raw_len, total_nodes
_KL520_RECORD = struct.Struct("<3IifI")  # H, C, W, radix, scale, device code
# start, buf_len, node_id, supernum, format, row/col/ch start, H, W, C, output_index, radix, scale
_KL720_ENTRY = struct.Struct("<12Iif")
# idx, fmt, batch, C, H, W, buf_addr, buf_len, scale, radix, start, buf_aligned_len, quant_vect_len
_KL630_ENTRY = struct.Struct("<8Ifi3I")
assert _KL520_RECORD.size == KL520_NODE_RECORD_SIZE
assert _KL720_ENTRY.size == KL720_NODE_ENTRY_SIZE
assert _KL630_ENTRY.size == KL630_NODE_ENTRY_SIZE


@dataclass(frozen=True)
class NodeRecord:
    """One output node of a result message. ``offset`` is the absolute byte offset of its
    data in the message and ``data`` a view of the bytes the device declared (clipped to the
    message end). ``layout`` is ``UNKNOWN`` for a code the chip does not define."""

    index: int
    channel: int
    height: int
    width: int
    radix: int
    scale: float
    layout: DataLayout
    code: int
    offset: int
    data: memoryview
    chip: Chip
    batch: int = 1

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """``(1, C, H, W)``, the node shape the decoder takes."""
        return (1, self.channel, self.height, self.width)


def _message_chip(buf: memoryview) -> Chip:
    if len(buf) < RESULT_HEADER_SIZE:
        raise ValueError(
            f"result message has {len(buf)} bytes; expected at least the "
            f"{RESULT_HEADER_SIZE}-byte result header"
        )
    magic = _U32.unpack_from(buf, 0)[0]
    if magic == MAGIC_INFERENCE_V2:
        raise ValueError("KL730 (magic 0x11FF22AB) result messages are not parsed here; "
                         "expected a KL520/KL720/KL630 result (magic 0x11FF22AA)")
    if magic != MAGIC_INFERENCE:
        raise ValueError(f"result magic 0x{magic:08X}; expected 0x{MAGIC_INFERENCE:08X}")
    pid = _U32.unpack_from(buf, PRODUCT_ID_OFFSET)[0]
    try:
        return _CHIP_BY_RESULT_PID[pid]
    except KeyError:
        raise ValueError(
            f"result product id 0x{pid:X}; expected 0x100 (KL520), 0x720 (KL720) or 0x630 (KL630)"
        ) from None


def _need(buf: memoryview, end: int, what: str) -> None:
    if end > len(buf):
        raise ValueError(f"result message has {len(buf)} bytes; {what} needs {end}")


def _record(buf, chip, i, c, h, w, radix, scale, code, offset, length, batch=1) -> NodeRecord:
    end = min(len(buf), offset + max(length, 0))
    return NodeRecord(i, c, h, w, radix, scale, layout_from_code(chip, code), code, offset,
                      buf[offset:end], chip, batch)


def parse_result_nodes(raw_result) -> list[NodeRecord]:
    """The node table of a KL520/KL720/KL630 result message, without trusting any count or
    offset: every field that points into the message is checked against its length."""
    buf = memoryview(raw_result).cast("B")
    chip = _message_chip(buf)
    base = RESULT_HEADER_SIZE
    nodes: list[NodeRecord] = []
    if chip is Chip.KL520:
        _need(buf, base + 4, "the KL520 node count")
        count = _U32.unpack_from(buf, base)[0]
        data = base + 4 + count * KL520_NODE_RECORD_SIZE
        _need(buf, data, f"the table of {count} KL520 node records")
        for i in range(count):
            h, c, w, radix, scale, code = _KL520_RECORD.unpack_from(
                buf, base + 4 + i * KL520_NODE_RECORD_SIZE)
            # The host assumes every KL520 node is 16W1C8B-sized (§3).
            size = h * c * -(-w // 16) * 16
            nodes.append(_record(buf, chip, i, c, h, w, radix, scale, code, data, size))
            data += size
        return nodes
    table = KL720_NODE_TABLE_SIZE if chip is Chip.KL720 else KL630_NODE_TABLE_SIZE
    _need(buf, base + table, f"the {chip.name} node table")
    _, count = _TABLE_HEAD.unpack_from(buf, base)
    if not 0 <= count <= KL720_NODE_TABLE_ENTRIES:
        raise ValueError(f"{chip.name} result declares {count} nodes; expected 0..40")
    data = base + table
    for i in range(count):
        if chip is Chip.KL720:
            (start, length, _nid, _sup, code, _r0, _c0, _ch0, h, w, c, _oi, radix,
             scale) = _KL720_ENTRY.unpack_from(buf, base + 8 + i * KL720_NODE_ENTRY_SIZE)
            batch = 1
        else:
            (_idx, code, batch, c, h, w, _addr, length, scale, radix, start, _al,
             _qv) = _KL630_ENTRY.unpack_from(buf, base + 8 + i * KL630_NODE_ENTRY_SIZE)
        nodes.append(_record(buf, chip, i, c, h, w, radix, scale, code, data + start, length,
                             max(batch, 1)))
    return nodes


def retrieve_node(raw_result, node_idx: int, ordering="DEFAULT", as_float: bool = True) -> np.ndarray:
    """Decode node ``node_idx`` of a result message like
    ``kp_generic_inference_retrieve_{float,fixed}_node``.

    A device code the chip does not define goes through Kneron's generic 8-bit (16W1C8B)
    branch, as the v1 parser does. Where Kneron returns NULL (bad index, unknown product id,
    unsupported layout/ordering) this raises ``ValueError``.
    """
    nodes = parse_result_nodes(raw_result)
    if not 0 <= int(node_idx) < len(nodes):
        raise ValueError(f"node index {node_idx} out of range; the result has {len(nodes)} nodes")
    return decode_record(raw_result, nodes[int(node_idx)], ordering, as_float)


def decode_record(raw_result, node: NodeRecord, ordering="DEFAULT", as_float: bool = True,
                  decoders: dict | None = None) -> np.ndarray:
    """Decode one node of ``raw_result`` from its record (``parse_result_nodes``), as
    :func:`retrieve_node` does; for callers that parse a message once for all its nodes.
    ``decoders`` (a dict the caller keeps) caches the :class:`NodeDecoder` of each node
    geometry between calls."""
    layout = DataLayout.L16W1C8B if node.layout is DataLayout.UNKNOWN else node.layout
    shape = (node.batch,) + node.shape[1:]
    buf = memoryview(raw_result).cast("B")
    node_idx = node.index
    # Every layout stores at least one byte per value: refuse a node table that declares
    # more values than the message holds before a layout plan is sized from it (a hostile
    # or corrupt H/C/W would otherwise allocate gigabytes of indices).
    values = node.batch * node.channel * node.height * node.width
    if node.offset > len(buf):
        raise ValueError(f"node {node_idx}: its data offset {node.offset} is past the end of "
                         f"the {len(buf)}-byte message")
    if values > len(buf) - node.offset:
        raise ValueError(f"node {node_idx} declares {node.batch}x{node.channel}x{node.height}x"
                         f"{node.width} values; the message has {len(buf) - node.offset} bytes "
                         f"after its data offset {node.offset}")
    key = (node.chip, layout, shape, ordering)
    decoder = decoders.get(key) if decoders is not None else None
    if decoder is None:
        decoder = NodeDecoder(chip=node.chip, layout=layout, shape=shape, ordering=ordering)
        if decoders is not None:
            if len(decoders) >= 64:  # geometries come from the device: keep the cache bounded
                decoders.clear()
            decoders[key] = decoder
    size = decoder.nbytes
    _need(buf, node.offset + size, f"node {node_idx} ({size} bytes at {node.offset})")
    return decoder.decode_at(raw_result, node.offset, node.radix, node.scale, as_float)


def result_payload_size(chip, node_count: int, output_mem_len: int) -> int:
    """Bytes after the 344-byte header: ``4 + 24*N + output_mem_len`` on KL520,
    ``2248 + output_mem_len`` on KL720 (PROTOCOL.md §6.2/§6.3), ``2088 + ...`` on KL630."""
    chip = parse_chip(chip)
    if chip is Chip.KL520:
        return 4 + KL520_NODE_RECORD_SIZE * node_count + output_mem_len
    if chip is Chip.KL720:
        return KL720_NODE_TABLE_SIZE + output_mem_len
    if chip is Chip.KL630:
        return KL630_NODE_TABLE_SIZE + output_mem_len
    raise ValueError(f"no v1 result payload for {chip.name}; expected KL520, KL720 or KL630")


def _scalar(value, name: str, node: int):
    if np.ndim(value) != 0:
        values = np.asarray(value).ravel()
        if values.size != 1:
            raise ValueError(f"node {node}: {name} must be one number on v1 chips, got {value!r}")
        value = values[0]
    return value


def build_result_payload(chip, nodes: Sequence[tuple], output_mem_len: int) -> bytes:
    """The payload that follows the 344-byte result header, as the firmware writes it.

    ``nodes`` are ``(layout, shape, radix, scale, raw)`` with ``shape = (1, C, H, W)`` and
    ``raw`` exactly the node's output buffer (:func:`node_buffer_size` with ``output=True``,
    e.g. from :func:`~kp_backend.layouts.encode.encode_output_node`). Nodes are packed back to
    back at the start of an ``output_mem_len``-byte data area (zero-filled after them); on
    KL720 ``total_raw_len = output_mem_len`` and ``output_index`` is the node's position
    (inferred, PROTOCOL.md §6.3), other unused fields are 0.
    """
    chip = parse_chip(chip)
    if chip not in (Chip.KL520, Chip.KL720, Chip.KL630):
        raise ValueError(f"no v1 result payload for {chip.name}; expected KL520, KL720 or KL630")
    if chip is not Chip.KL520 and len(nodes) > KL720_NODE_TABLE_ENTRIES:
        raise ValueError(f"{len(nodes)} output nodes; the {chip.name} table holds at most 40")
    blobs: list[bytes] = []
    entries: list[tuple] = []
    offset = 0
    for i, node in enumerate(nodes):
        try:
            layout, shape, radix, scale, raw = node
        except (TypeError, ValueError):
            raise ValueError(
                f"node {i} must be (layout, shape, radix, scale, raw); got {node!r:.80}"
            ) from None
        n, c, h, w = (int(d) for d in shape)
        size = node_buffer_size(chip=chip, layout=layout, shape=(n, c, h, w), output=True)
        blob = bytes(memoryview(raw).cast("B"))
        if len(blob) != size:
            raise ValueError(f"node {i} has {len(blob)} bytes; expected {size} for {layout} {tuple(shape)}")
        radix = int(_scalar(radix, "radix", i))
        scale = float(np.float32(_scalar(scale, "scale", i)))
        entries.append((c, h, w, radix, scale, code_from_layout(chip, layout), offset, size))
        blobs.append(blob)
        offset += size
    if offset > output_mem_len:
        raise ValueError(
            f"the nodes need {offset} bytes; output_mem_len is {output_mem_len}"
        )
    data = b"".join(blobs) + bytes(output_mem_len - offset)
    if chip is Chip.KL520:
        table = _U32.pack(len(nodes)) + b"".join(
            _KL520_RECORD.pack(h, c, w, radix, scale, code)
            for c, h, w, radix, scale, code, _, _ in entries
        )
        return table + data
    slots = []
    for i, (c, h, w, radix, scale, code, start, size) in enumerate(entries):
        if chip is Chip.KL720:
            slots.append(_KL720_ENTRY.pack(start, size, 0, 0, code, 0, 0, 0, h, w, c, i,
                                           radix, scale))
        else:
            slots.append(_KL630_ENTRY.pack(i, code, 1, c, h, w, 0, size, scale, radix, start,
                                           size, 0))
    entry_size = KL720_NODE_ENTRY_SIZE if chip is Chip.KL720 else KL630_NODE_ENTRY_SIZE
    empty = bytes(entry_size) * (KL720_NODE_TABLE_ENTRIES - len(entries))
    return _TABLE_HEAD.pack(output_mem_len, len(nodes)) + b"".join(slots) + empty + data
