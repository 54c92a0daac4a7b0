"""The worked examples of LAYOUTS.md, and the errors bad arguments must raise."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from kp_backend.layouts import (
    ChannelOrdering,
    decode_node,
    default_strides,
    encode_node,
    encode_output_node,
    image_to_npu,
    node_buffer_size,
    parse_ordering,
)
from kp_backend.npu_types import Chip, DataLayout


def _position(chip, layout, shape, index, **kw) -> int:
    """Byte where a one-hot input lands (the first nonzero byte of its encoding)."""
    x = np.zeros(shape, dtype=np.float32)
    x[index] = 1.0
    raw = np.frombuffer(encode_node(x, chip=chip, layout=layout, shape=shape, radix=0, scale=1.0,
                                    **kw), np.uint8)
    return int(np.flatnonzero(raw)[0])


@pytest.mark.parametrize(
    "chip, layout, shape, index, offset, size",
    [
        ("KL720", "16W1C8B", (1, 17, 3, 15), (0, 1, 2, 3), 83, 816),  # §2.1
        ("KL520", "16W1C8B", (1, 17, 3, 15), (0, 1, 2, 3), 563, 816),
        ("KL720", "8W1C16B", (1, 5, 2, 9), (0, 4, 1, 8), 304, 320),  # §2.2
        ("KL720", "1W16C8B", (1, 20, 3, 3), (0, 17, 1, 2), 225, 288),  # §2.3
        ("KL520", "4W4C8B", (1, 3, 5, 7), (0, 2, 4, 6), 282, 320),  # §2.5
        ("KL720", "4W4C8B", (1, 3, 5, 7), (0, 2, 4, 6), 154, 160),
    ],
)
def test_worked_offsets(chip, layout, shape, index, offset, size) -> None:
    assert node_buffer_size(chip=chip, layout=layout, shape=shape) == size
    assert _position(chip, layout, shape, index) == offset


def test_kl520_output_size_is_hcw_padded() -> None:
    # KL520 node data: H * C * ceil16(W), whatever the code says (§3)
    assert node_buffer_size(chip="KL520", layout="4W4C8B", shape=(1, 3, 5, 7), output=True) == 240
    assert node_buffer_size(chip=Chip.KL520, layout=DataLayout.L16W1C8B, shape=(1, 2, 3, 17)) == 192


def test_hl_example() -> None:
    # §2.6: v = -12345 -> low 0x63, high 0xCF, decodes to -12346 (LSB lost)
    shape = (1, 1, 1, 1)
    kw = dict(chip="KL730", layout="16W1C8BHL", shape=shape, radix=0, scale=1.0)
    raw = encode_node(np.full(shape, -12345.0, np.float32), **kw)
    assert raw[0] == 0x63 and raw[16] == 0xCF
    assert decode_node(raw, as_float=False, **kw).item() == -12346


def test_float_example_bits() -> None:
    # §4.1: fixed -77, radix 5, scale 0.8125 -> factor 26 -> bits 0xC03D89D9
    raw = bytes([(-77) & 0xFF]) + bytes(15)
    out = decode_node(raw, chip="KL720", layout="16W1C8B", shape=(1, 1, 1, 1), radix=5,
                      scale=0.8125)
    assert struct.pack("<f", out.item()) == struct.pack("<I", 0xC03D89D9)


def test_division_not_reciprocal() -> None:
    # §4.1: for scale 0.731, radix 3, 46 of the 256 int8 values differ from a reciprocal multiply
    raw = np.arange(-128, 128, dtype=np.int8).view(np.uint8).tobytes()
    out = decode_node(raw, chip="KL720", layout="16W1C8B", shape=(1, 16, 1, 16), radix=3,
                      scale=0.731)
    factor = np.float32(0.731) * np.float32(8)
    by_reciprocal = np.arange(-128, 128, dtype=np.float32) * (np.float32(1) / factor)
    assert np.count_nonzero(out.reshape(-1) != by_reciprocal) == 46


def test_kneron_round_edges() -> None:
    # §6: half to even, 2**31 -> minimum, 16-bit clip at 32766, LSB dropped
    x = np.array([[2.5, 3.5, -2.5, 2147483648.0, 3e9, 32767.0, np.nan, -np.inf]], np.float32)
    raw = encode_node(x, chip="KL730", layout="RAW_16B", shape=x.shape, radix=0, scale=1.0)
    assert np.frombuffer(raw, "<i2").tolist() == [2, 4, -2, -32768, 32766, 32766, -32768, -32768]


def test_c_and_python_examples_differ_on_ties() -> None:
    # §6 worked example: radix 7, pixel 129 -> C example 1, Python example 0
    img = np.full((1, 1, 4), 129, np.uint8)
    kw = dict(chip="KL720", layout="4W4C8B", shape=(1, 3, 1, 1), radix=7, scale=1.0)
    assert image_to_npu(img, **kw)[:3] == b"\x01\x01\x01"
    assert image_to_npu(img, rounding="numpy", **kw)[:3] == b"\x00\x00\x00"


def test_default_strides_match_the_spec_table() -> None:
    L = DataLayout
    assert default_strides(L.L16W1C8B, (1, 3, 5, 7)) == (240, 80, 16, 1)
    assert default_strides(L.L1W16C8B, (1, 17, 3, 15)) == (720, 1, 240, 16)
    assert default_strides(L.L1W16C8B_CH_COMPACT, (1, 33, 2, 1)) == (96, 1, 48, 48)
    assert default_strides(L.L4W4C8B, (1, 4, 2, 9)) == (96, 1, 48, 4)
    assert default_strides(L.RAW_16B, (2, 3, 5)) == (15, 5, 1)


def test_orderings_parse() -> None:
    assert parse_ordering("KP_CHANNEL_ORDERING_HWC") is ChannelOrdering.HWC
    assert parse_ordering(1) is ChannelOrdering.CHW
    with pytest.raises(ValueError, match="channel ordering"):
        parse_ordering("WHC")


RAW = bytes(240)
GOOD = dict(chip="KL720", layout="16W1C8B", shape=(1, 3, 5, 7), radix=1, scale=1.0)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"chip": "KL540"}, "not supported"),
        ({"chip": "KL999"}, "unknown chip"),
        ({"layout": "17W1C8B"}, "unknown data layout"),
        ({"layout": "UNKNOWN"}, "UNKNOWN"),
        ({"chip": "KL520", "layout": "1W16C8B"}, "no format code on KL520"),
        ({"layout": "1W16C8B_CH_COMPACT"}, "no format code on KL720"),
        ({"layout": "1W16C8BHL"}, "uninitialised"),
        ({"layout": "RAW_FLOAT"}, "cannot be retrieved"),
        ({"shape": (1, 3, 5)}, "4 dimensions"),
        ({"shape": (2, 3, 5, 7)}, "expected N = 1"),
        ({"shape": (1, 0, 5, 7)}, "dimension < 1"),
        ({"strides": (1, 2, 3, 4)}, "only the KL730"),
        ({"radix": [1, 2, 3], "scale": [1.0, 1.0, 1.0]}, "only on KL730"),
        ({"radix": [1, 2], "scale": [1.0]}, "equal counts"),
        ({"radix": 99}, "out of range"),
        ({"ordering": "XYZ"}, "channel ordering"),
    ],
)
def test_decode_errors(changes, match) -> None:
    with pytest.raises(ValueError, match=match):
        decode_node(RAW, **(GOOD | changes))


@pytest.mark.parametrize("size", [239, 241, 0])
def test_decode_wrong_buffer_size(size) -> None:
    with pytest.raises(ValueError, match="expected 240"):
        decode_node(bytes(size), **GOOD)


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(ValueError, match="uint8"):
        decode_node(np.zeros(240, np.int16), **GOOD)
    with pytest.raises(ValueError, match="bytes"):
        decode_node([0] * 240, **GOOD)


@pytest.mark.parametrize(
    "changes, match",
    [
        ({"ordering": "HCW"}, "only ordering DEFAULT"),
        ({"ordering": "HWC"}, "only ordering DEFAULT"),
        ({"layout": "RAW_FLOAT"}, "RAW_FLOAT"),
        ({"strides": (1, 2)}, "one per axis"),
        ({"strides": (1, 1, 1, 1)}, "beyond the node"),
        ({"radix": [1, 1], "scale": [1.0, 1.0]}, "at least 3"),
        ({"quantized_axis": 7, "radix": [1] * 3, "scale": [1.0] * 3}, "quantized_axis"),
    ],
)
def test_kl730_decode_errors(changes, match) -> None:
    kw = dict(chip="KL730", layout="16W1C8B", shape=(1, 3, 5, 7), radix=1, scale=1.0) | changes
    with pytest.raises(ValueError, match=match):
        decode_node(RAW, **kw)


def test_encode_errors() -> None:
    x = np.zeros((1, 3, 5, 7), np.float32)
    with pytest.raises(ValueError, match=r"expected \(1, 3, 5, 7\)"):
        encode_node(x[0], **GOOD)
    with pytest.raises(ValueError, match="rounding"):
        encode_node(x, rounding="bankers", **GOOD)
    with pytest.raises(ValueError, match="dtype"):
        encode_node(x.astype(complex), **GOOD)
    kl730 = dict(chip="KL730", layout="16W1C8B", shape=(1, 3, 5, 7))
    with pytest.raises(ValueError, match="exactly 3"):
        encode_node(x, radix=[1] * 4, scale=[1.0] * 4, **kl730)
    with pytest.raises(ValueError, match="C <= 4"):
        encode_node(np.zeros((1, 5, 2, 2)), chip="KL730", layout="4W4C8B", shape=(1, 5, 2, 2),
                    radix=0, scale=1.0)
    with pytest.raises(ValueError, match="RAW_FLOAT"):
        encode_output_node(x, chip="KL730", layout="RAW_FLOAT", shape=(1, 3, 5, 7), radix=0,
                           scale=1.0)


def test_image_errors() -> None:
    kw = dict(chip="KL720", layout="4W4C8B", shape=(1, 3, 4, 4), radix=7, scale=1.0)
    with pytest.raises(ValueError, match="does not resize"):
        image_to_npu(np.zeros((5, 4, 4), np.uint8), **kw)
    with pytest.raises(ValueError, match="uint8"):
        image_to_npu(np.zeros((4, 4, 4), np.float32), **kw)
    with pytest.raises(ValueError, match="needs 3"):
        image_to_npu(np.zeros((4, 4), np.uint8), **kw)
    with pytest.raises(ValueError, match="normalisation"):
        image_to_npu(np.zeros((4, 4, 4), np.uint8), normalize="CUSTOMIZED_DIV2", **kw)


def test_image_normalisations() -> None:
    img = np.arange(16, dtype=np.uint8).reshape(4, 4) * 16 + 15
    kw = dict(chip="KL720", layout="16W1C8B", shape=(1, 1, 4, 4), radix=7, scale=1.0)
    p = img.astype(np.int64)

    def codes(mode):
        raw = np.frombuffer(image_to_npu(img, normalize=mode, **kw), np.int8)
        return raw.reshape(4, 16)[:, :4].astype(np.int64)

    # at radix 7 the host forms reproduce the hardware's integer results (§7.4)
    assert np.array_equal(codes("TENSOR_FLOW"), p - 128)
    assert np.array_equal(codes(3), p // 2)
    half = (p - 128) / 2  # every value is a tie here: roundf goes away from zero
    assert np.array_equal(codes("kneron"), np.sign(half) * np.floor(np.abs(half) + 0.5))
    assert np.array_equal(codes(lambda q: q / 255.0), np.minimum(np.floor(p / 255 * 128 + 0.5), 127))


def test_kl730_accepts_a_longer_buffer() -> None:
    kw = dict(chip="KL730", layout="8W1C16B", shape=(1, 3, 2, 5), radix=2, scale=1.0)
    raw = np.random.default_rng(3).integers(0, 256, 96, dtype=np.uint8).tobytes()
    assert np.array_equal(decode_node(raw + b"\xff" * 32, **kw), decode_node(raw, **kw))
    with pytest.raises(ValueError, match="at least 96"):
        decode_node(raw[:-2], **kw)
