"""Property tests: the vectorised codecs against the per-element reference, round trips,
and padding independence. Bounded (small shapes, few examples); set
``KP_LAYOUTS_FUZZ=<n>`` to run n examples per property instead."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kp_backend.layouts import (
    decode_node,
    decode_plan,
    encode_node,
    encode_output_node,
    node_buffer_size,
)
from kp_backend.layouts.params import quant_factors

EXAMPLES = int(os.environ.get("KP_LAYOUTS_FUZZ", "40"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

# Layouts each chip's retrieve functions can decode, and the layouts an input may have.
DECODABLE = {
    "KL520": ["16W1C8B", "4W4C8B"],
    "KL720": ["16W1C8B", "8W1C16B", "1W16C8B", "4W4C8B", "RAW_8B"],
    "KL630": ["16W1C8B", "8W1C16B", "1W16C8B", "4W4C8B", "RAW_8B"],
    "KL730": ["16W1C8B", "8W1C16B", "1W16C8B", "4W4C8B", "RAW_8B", "RAW_16B", "4W4C8BHL",
              "16W1C8BHL", "1W16C8BHL", "1W16C8B_CH_COMPACT", "1W16C8BHL_CH_COMPACT"],
}
ENCODABLE = {
    "KL520": ["16W1C8B", "4W4C8B"],
    "KL720": ["16W1C8B", "8W1C16B", "1W16C8B", "4W4C8B", "RAW_8B", "RAW_16B", "RAW_FLOAT",
              "1W16C8BHL"],
    "KL630": ["16W1C8B", "8W1C16B", "1W16C8B", "4W4C8B", "RAW_8B", "RAW_16B", "RAW_FLOAT",
              "1W16C8BHL", "4W4C8BHL", "16W1C8BHL"],
    "KL730": DECODABLE["KL730"] + ["RAW_FLOAT"],
}
# Layouts whose input form is also what the host reads back as an output.
ROUND_TRIP = {
    "KL520": ["16W1C8B"],
    "KL720": ["16W1C8B", "8W1C16B", "1W16C8B"],
    "KL630": ["16W1C8B", "8W1C16B", "1W16C8B"],
    "KL730": DECODABLE["KL730"],
}
SIXTEEN_BIT = {"8W1C16B", "RAW_16B", "4W4C8BHL", "16W1C8BHL", "1W16C8BHL", "1W16C8BHL_CH_COMPACT"}
EDGE_VALUES = [0.5, -0.5, 1.5, -2.5, 127.5, -128.5, 1e9, -1e9, np.inf, -np.inf, 0.0, -0.0,
               0.49999997, 32766.5, 2147483648.0]


@st.composite
def nodes(draw, table: dict, per_channel: bool = True):
    """(chip, layout, shape, radix, scale, quantized_axis) of a small node."""
    chip = draw(st.sampled_from(sorted(table)))
    layout = draw(st.sampled_from(table[chip]))
    c = draw(st.integers(1, 4 if "4W4C8B" in layout and chip == "KL730" else 36))
    h = draw(st.integers(1, 5))
    w = draw(st.integers(1, 35))
    shape = (1, c, h, w)
    if chip == "KL730" and layout.startswith("RAW") and draw(st.booleans()):
        shape = tuple(draw(st.lists(st.integers(1, 7), min_size=1, max_size=4)))
    qaxis = 1 if len(shape) > 1 else 0
    radix_range = (6, 14) if layout in SIXTEEN_BIT else (-3, 7)
    count = 1
    if chip == "KL730" and per_channel and draw(st.booleans()):
        qaxis = draw(st.integers(0, len(shape) - 1))
        count = shape[qaxis]
    radix = draw(st.lists(st.integers(*radix_range), min_size=count, max_size=count))
    scale = draw(st.lists(st.floats(0.25, 3.0, width=32), min_size=count, max_size=count))
    if count == 1:
        radix, scale = radix[0], scale[0]
    return chip, layout, shape, radix, scale, qaxis


def _kwargs(node) -> dict:
    chip, layout, shape, radix, scale, qaxis = node
    return dict(chip=chip, layout=layout, shape=shape, radix=radix, scale=scale)


def _qaxis(node) -> dict:
    return {"quantized_axis": node[5]} if node[0] == "KL730" else {}


def _same(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape and a.dtype == b.dtype
    assert a.tobytes() == b.tobytes()


@SETTINGS
@given(node=nodes(DECODABLE), data=st.data())
def test_decode_matches_reference(ref, node, data) -> None:
    kw = _kwargs(node) | _qaxis(node)
    orderings = ["DEFAULT", "CHW"] if node[0] == "KL730" else ["DEFAULT", "CHW", "HCW", "HWC"]
    ordering = data.draw(st.sampled_from(orderings))
    size = node_buffer_size(chip=node[0], layout=node[1], shape=node[2], output=True)
    raw = data.draw(st.binary(min_size=size, max_size=size))
    for as_float in (False, True):
        got = decode_node(raw, ordering=ordering, as_float=as_float, **kw)
        expected = ref.ref_decode(raw, ordering=ordering, as_float=as_float, **kw)
        _same(got, expected)


def _float_inputs(data, shape, edges: bool) -> np.ndarray:
    n = int(np.prod(shape))
    values = data.draw(st.lists(
        st.floats(-300.0, 300.0, width=32) | st.sampled_from(EDGE_VALUES if edges else [0.0]),
        min_size=n, max_size=n))
    return np.array(values, dtype=np.float32).reshape(shape)


@SETTINGS
@given(node=nodes(ENCODABLE), data=st.data(),
       rounding=st.sampled_from([None, "kneron_round", "roundf", "numpy"]))
def test_encode_matches_reference(ref, node, data, rounding) -> None:
    kw = _kwargs(node) | _qaxis(node)
    x = _float_inputs(data, node[2], edges=True)
    if rounding == "numpy" or (rounding is None and node[0] != "KL730"):
        x = np.nan_to_num(x, posinf=1e9, neginf=-1e9)
    got = encode_node(x, rounding=rounding, **kw)
    assert got == ref.ref_encode(x, rounding=rounding, **kw)


@SETTINGS
@given(node=nodes(DECODABLE), data=st.data())
def test_encode_output_matches_reference(ref, node, data) -> None:
    kw = _kwargs(node) | _qaxis(node)
    x = _float_inputs(data, node[2], edges=True)
    got = encode_output_node(x, **kw)
    assert got == ref.ref_encode(x, rounding="roundf", output=True, **kw)


def _representable(data, node) -> np.ndarray:
    """Floats inside the saturation range of the node's element type."""
    chip, layout, shape, radix, scale, qaxis = node
    factors = quant_factors(radix, scale).astype(np.float64)
    if factors.size > 1:
        stride = int(np.prod(shape)) // shape[qaxis]
        factors = np.repeat(factors, stride)
    lo, hi = (-32760.0, 32760.0) if layout in SIXTEEN_BIT else (-127.0, 126.0)
    n = int(np.prod(shape))
    q = np.array(data.draw(st.lists(st.floats(lo, hi), min_size=n, max_size=n)))
    return (q / factors).astype(np.float32).reshape(shape), np.broadcast_to(factors, (n,))


def _bound(node, x: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Half a quantisation step, plus the float32 rounding of x and of the decoded value."""
    # KL730 drops the LSB of every 16-bit value (§2.6, §4.3): up to 1 more LSB, toward -inf.
    steps = 1.5 if node[0] == "KL730" and node[1] in SIXTEEN_BIT else 0.5
    eps = float(np.finfo(np.float32).eps)
    return steps / factors + 2 * eps * (np.abs(x.reshape(-1).astype(np.float64)) + 1 / factors)


@SETTINGS
@given(node=nodes(ROUND_TRIP), data=st.data())
def test_round_trip_within_half_a_step(node, data) -> None:
    kw = _kwargs(node) | _qaxis(node)
    x, factors = _representable(data, node)
    bound = _bound(node, x, factors)
    for raw in (encode_node(x, **kw), encode_output_node(x, **kw)):
        back = decode_node(raw, ordering="DEFAULT" if node[0] != "KL520" else "CHW", **kw)
        assert back.shape == x.shape and back.dtype == np.float32
        err = np.abs(back.astype(np.float64) - x.astype(np.float64)).reshape(-1)
        assert np.all(err <= bound), float(np.max(err / bound))


@SETTINGS
@given(node=nodes(DECODABLE), data=st.data())
def test_output_round_trip_every_output_layout(node, data) -> None:
    kw = _kwargs(node) | _qaxis(node)
    x, factors = _representable(data, node)
    raw = encode_output_node(x, **kw)
    back = decode_node(raw, ordering="CHW", **kw)
    err = np.abs(back.astype(np.float64) - x.astype(np.float64)).reshape(-1)
    bound = _bound(node, x, factors)
    assert np.all(err <= bound), (float(np.max(err / bound)), x.reshape(-1)[np.argmax(err / bound)])


@SETTINGS
@given(node=nodes(DECODABLE), data=st.data())
def test_padding_never_changes_the_result(ref, node, data) -> None:
    kw = _kwargs(node) | _qaxis(node)
    size = node_buffer_size(chip=node[0], layout=node[1], shape=node[2], output=True)
    raw = np.frombuffer(data.draw(st.binary(min_size=size, max_size=size)), np.uint8)
    noise = np.frombuffer(data.draw(st.binary(min_size=size, max_size=size)), np.uint8)
    used = ref.used_bytes(chip=node[0], layout=node[1], shape=node[2], output=True)
    other = (raw & used) | (noise & ~used)
    for as_float in (False, True):
        _same(decode_node(raw, as_float=as_float, **kw),
              decode_node(other.tobytes(), as_float=as_float, **kw))


def test_encode_zeroes_padding(ref) -> None:
    for chip, layouts in ENCODABLE.items():
        for layout in layouts:
            shape = (1, 3 if "4W4C8B" in layout else 19, 3, 5)
            x = np.full(shape, -0.75, dtype=np.float32)
            kw = dict(chip=chip, layout=layout, shape=shape, radix=3, scale=1.0)
            raw = np.frombuffer(encode_node(x, **kw), np.uint8)
            used = ref.used_bytes(chip=chip, layout=layout, shape=shape)
            assert raw.size == used.size
            assert not np.any(raw & ~used), (chip, layout)


def test_plans_are_cached() -> None:
    from kp_backend.layouts import plans

    kw = dict(chip="KL720", layout="16W1C8B", shape=(1, 7, 3, 21), radix=4, scale=0.5)
    raw = bytes(node_buffer_size(chip="KL720", layout="16W1C8B", shape=(1, 7, 3, 21)))
    decode_node(raw, **kw)
    before = plans._decode_plan_cached.cache_info()
    for _ in range(5):
        decode_node(raw, **kw)
    after = plans._decode_plan_cached.cache_info()
    assert after.misses == before.misses
    assert after.hits == before.hits + 5
    plan = decode_plan(chip="KL720", layout="16W1C8B", shape=(1, 7, 3, 21))
    assert plan.index is None and plan.affine == (0, (0, 96, 32, 1))  # a strided view
    c, h, w = np.meshgrid(np.arange(7), np.arange(3), np.arange(21), indexing="ij")
    assert np.array_equal(plan.positions(), ((c * 3 + h) * 32 + w).reshape(-1))
    grouped = decode_plan(chip="KL720", layout="1W16C8B", shape=(1, 20, 3, 3))
    assert grouped.affine is None and not grouped.index.flags.writeable
    with pytest.raises(ValueError):
        grouped.index[0] = 1
