"""``encode_node_into``: the same bytes as ``encode_node`` (and Kneron's, and the per-element
reference), written into a caller's buffer; every byte of the node written; buffer checks;
several threads at once. The fast int8 paths (roundf, kneron_round) are also compared with
the implementations they replaced (``test_layouts_perf_equivalence``) on adversarial values;
``KP_LAYOUTS_EXHAUSTIVE=1`` adds all 2**32 float32 inputs (about two minutes)."""

from __future__ import annotations

import array
import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from _shared import SHARED_DIR, require_shared, shared_params
from hypothesis import given
from hypothesis import strategies as st
from test_layouts_perf_equivalence import VALUES, old_quantize_roundf, old_scatter_i8
from test_layouts_properties import ENCODABLE, SETTINGS, _float_inputs, _kwargs, _qaxis, nodes

from kp_backend.layouts import (
    encode_node,
    encode_node_into,
    encode_output_node,
    layout_plan,
    node_buffer_size,
    normalize_image,
)
from kp_backend.layouts import encode as encode_module
from kp_backend.layouts.quant import element_factors, quantize

GOLDEN = "golden/layouts"
DIRT = 0xA5


def _into(x, extra: int = 7, **kw) -> bytes:
    """``encode_node_into`` on a dirty buffer ``extra`` bytes too long; checks the return
    value and that the bytes after the node are untouched."""
    size = node_buffer_size(chip=kw["chip"], layout=kw["layout"], shape=kw["shape"],
                            strides=kw.get("strides"))
    buf = bytearray([DIRT]) * (size + extra)
    assert encode_node_into(buf, x, **kw) == size
    assert buf[size:] == bytearray([DIRT]) * extra
    return bytes(buf[:size])


# --- golden vectors (Kneron's own code) ------------------------------------------------------


def _input_cases() -> list:
    index = SHARED_DIR / GOLDEN / "index.json"
    if not index.is_file():
        return shared_params(GOLDEN, "index.json")
    cases = json.loads(index.read_text())["cases"]
    return [pytest.param(c, id=c["file"].removesuffix(".npz")) for c in cases
            if c["family"] in ("in_v1", "in_v2")]


@pytest.mark.parametrize("case", _input_cases())
def test_golden_inputs(case) -> None:
    if not isinstance(case, dict):
        require_shared(GOLDEN, "index.json")
    arrays = np.load(require_shared(GOLDEN, case["file"]))
    if case["family"] == "in_v2":
        kw = dict(chip="KL730", layout=case["layout"], shape=case["shape"], radix=case["radix"],
                  scale=case["scale"], strides=case["stride_npu"],
                  quantized_axis=case["quantized_axis"])
        if case.get("status", 0) != 0:
            with pytest.raises(ValueError):
                encode_node_into(bytearray(1 << 16), arrays["float_in"], **kw)
            return
        assert _into(arrays["float_in"], **kw) == arrays["npu_out"].tobytes()
        assert _into(arrays["float_in"], rounding="roundf", **kw) == encode_node(
            arrays["float_in"], rounding="roundf", **kw)
        return
    shape = tuple(case["model_shape_nchw"])
    kw = dict(chip=case["chip"], layout=case["layout"], shape=shape, radix=case["radix"],
              scale=case["scale"])
    x = normalize_image(arrays["rgba_in"], shape[1])
    assert _into(x.astype(np.float32), **kw) == arrays["npu_out"].tobytes()
    if "npu_out_python_example" in arrays.files:
        assert _into(x, rounding="numpy", **kw) == arrays["npu_out_python_example"].tobytes()


# --- property tests against encode_node and the per-element reference ------------------------


@SETTINGS
@given(node=nodes(ENCODABLE), data=st.data(),
       rounding=st.sampled_from([None, "kneron_round", "roundf", "numpy"]))
def test_matches_encode_node_and_reference(ref, node, data, rounding) -> None:
    kw = _kwargs(node) | _qaxis(node)
    x = _float_inputs(data, node[2], edges=True)
    if rounding == "numpy" or (rounding is None and node[0] != "KL730"):
        x = np.nan_to_num(x, posinf=1e9, neginf=-1e9)  # the reference's NaN is undefined there
    got = _into(x, rounding=rounding, **kw)
    assert got == encode_node(x, rounding=rounding, **kw)
    assert got == ref.ref_encode(x, rounding=rounding, **kw)


@SETTINGS
@given(node=nodes(ENCODABLE, per_channel=False), data=st.data(),
       dtype=st.sampled_from([np.float64, np.float16, np.int32, np.int8]))
def test_other_input_dtypes(ref, node, data, dtype) -> None:
    kw = _kwargs(node)
    x = _float_inputs(data, node[2], edges=False)
    with np.errstate(all="ignore"):
        x = np.clip(x, -100, 100).astype(dtype)
    for rounding in ("roundf", None):
        got = _into(x, rounding=rounding, **kw)
        assert got == encode_node(x, rounding=rounding, **kw)
        assert got == ref.ref_encode(x.astype(np.float32), rounding=rounding, **kw)


# --- the fast roundf / int8 path on adversarial values ---------------------------------------

PIXEL_WORD_NODES = [
    ("KL520", (1, 3, 224, 224)),  # the benchmark: no padding at all
    ("KL520", (1, 3, 5, 7)),  # row padding (W aligned to 16)
    ("KL520", (1, 1, 2, 16)),
    ("KL720", (1, 2, 3, 6)),
    ("KL720", (1, 4, 4, 9)),
    ("KL630", (1, 3, 7, 8)),
    ("KL730", (1, 3, 5, 7)),
    ("KL730", (1, 4, 2, 4)),
]


def _adversarial(shape, factor: float, seed: int) -> np.ndarray:
    """Values whose products are ties, their float32 neighbours, +-0, NaN, +-inf, the
    saturation edges and kneron_round's +-2**31, mixed with random bit patterns."""
    n = int(np.prod(shape))
    rng = np.random.default_rng(seed)
    f32 = np.float32
    edges = np.array([127.5, 127.49999, -128.5, -128.49998, 128.0, -129.0, 0.5, -0.5, 1.5,
                      -2.5, 2.5, 3.5, -3.5, 0.49999997, -0.49999997, 0.0, -0.0, 1e30, -1e30,
                      2.0 ** 31, -(2.0 ** 31), 2147483520.0, -2147483520.0], dtype=f32)
    products = np.concatenate([edges, np.nextafter(edges, f32(np.inf)),
                               np.nextafter(edges, f32(-np.inf))])
    special = np.array([np.nan, np.inf, -np.inf, 1e-45, -1e-45], dtype=f32)
    pool = np.concatenate([(products / f32(factor)).astype(f32), special, VALUES[-4096:]])
    x = rng.choice(pool, n).astype(f32)
    plain = rng.random(n) < 0.5
    x[plain] = rng.uniform(-1.2, 1.2, int(plain.sum())).astype(f32)
    return x.reshape(shape)


def _oracle(x, chip, shape, radix, scale) -> bytes:
    """The implementation the fast path replaced (quantise, then pack)."""
    plan = layout_plan(chip=chip, layout="4W4C8B", shape=shape)
    factors = element_factors(radix, scale, shape, per_channel=False)
    return old_scatter_i8(old_quantize_roundf(x.reshape(-1), factors, 8), plan)


@pytest.mark.parametrize("chip,shape", PIXEL_WORD_NODES)
@pytest.mark.parametrize("radix,scale", [(7, 1.0), (8, 1.0), (0, 1.0), (6, 0.9), (-2, 3.7),
                                         (30, 1.0), (-20, 0.5), (3, 0.25)])
def test_pixel_words_match_the_replaced_implementation(chip, shape, radix, scale) -> None:
    factor = float(element_factors(radix, scale, shape, per_channel=False))
    kw = dict(chip=chip, layout="4W4C8B", shape=shape, radix=radix, scale=scale,
              rounding="roundf")
    for seed, nan in ((1, False), (2, True)):
        x = _adversarial(shape, factor, seed + abs(radix))
        if not nan:
            x = np.nan_to_num(x, nan=0.25)
        with np.errstate(all="ignore"):
            expected = _oracle(x, chip, shape, radix, scale)
            assert _into(x, **kw) == expected
            assert encode_node(x, **kw) == expected


@pytest.mark.parametrize("chip,layout,shape", [
    ("KL730", "4W4C8B", (1, 3, 5, 7)),
    ("KL730", "4W4C8B", (1, 4, 2, 4)),
    ("KL730", "16W1C8B", (1, 3, 2, 5)),
    ("KL730", "1W16C8B", (1, 18, 2, 3)),
    ("KL730", "RAW_8B", (2, 3, 5)),
    ("KL720", "4W4C8B", (1, 3, 4, 5)),
])
@pytest.mark.parametrize("radix,scale", [(7, 1.0), (0, 1.0), (-3, 0.7), (30, 1.0)])
def test_kneron_round_int8_matches_the_general_path(chip, layout, shape, radix, scale) -> None:
    """kneron_round's fast path (rint, cast, integer clip) against the unchanged quantiser
    and the replaced scatter, including the products of exactly +-2**31 (x86 quirks)."""
    plan = layout_plan(chip=chip, layout=layout, shape=shape)
    factors = element_factors(radix, scale, shape, per_channel=False)
    kw = dict(chip=chip, layout=layout, shape=shape, radix=radix, scale=scale,
              rounding="kneron_round")
    for seed in (1, 2):
        x = _adversarial(shape, float(factors), seed)
        with np.errstate(all="ignore"):
            values = quantize(x.reshape(-1), factors, kind_bits=8, mode="kneron_round")
            assert _into(x, **kw) == old_scatter_i8(values, plan)


@pytest.mark.parametrize("layout", ["16W1C8B", "1W16C8B", "RAW_8B", "4W4C8B"])
def test_other_int8_layouts_on_adversarial_values(ref, layout) -> None:
    shape = (1, 5 if layout != "4W4C8B" else 4, 3, 11)
    x = _adversarial(shape, 16.0, 3)
    kw = dict(chip="KL720", layout=layout, shape=shape, radix=4, scale=1.0)
    with np.errstate(all="ignore"):
        assert _into(x, **kw) == ref.ref_encode(np.nan_to_num(x, nan=0.0), **kw)


@pytest.mark.parametrize("scale", [0.0, float("inf"), float("nan")])
def test_degenerate_factors(ref, scale) -> None:
    """inf * 0 and NaN factors make NaN products: the fast path hands them to the general
    one (NaN -> 0)."""
    shape = (1, 3, 2, 5)
    x = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 3.0, 0.5, -0.5] * 3,
                 dtype=np.float32).reshape(shape)
    kw = dict(chip="KL520", layout="4W4C8B", shape=shape, radix=2, scale=scale)
    with np.errstate(all="ignore"):
        assert _into(x, **kw) == encode_node(x, **kw) == _oracle(x, "KL520", shape, 2, scale)


@pytest.mark.parametrize("chip,layout", [("KL720", "4W4C8B"), ("KL720", "16W1C8B"),
                                          ("KL730", "4W4C8B")])
def test_without_the_cast_flag(monkeypatch, chip, layout) -> None:
    """Where the platform's casts do not report NaN, roundf finds it by a max reduction and
    kneron_round takes the general path; the bytes are the same."""
    shape = (1, 3, 4, 4)
    x = np.full(shape, 0.75, np.float32)
    x[0, 0, 2, 3] = np.nan
    x[0, 2, 0, 0] = 2.0 ** 24
    results = {}
    for rounding in ("roundf", "kneron_round"):
        kw = dict(chip=chip, layout=layout, shape=shape, radix=7, scale=1.0, rounding=rounding)
        results[rounding] = _into(x, **kw)
        with monkeypatch.context() as patch:
            patch.setattr(encode_module, "_CAST_RAISES", False)
            assert _into(x, **kw) == results[rounding]
    if layout == "4W4C8B" and chip == "KL720":  # NaN in channel 0 of word 11
        word = np.frombuffer(results["roundf"], np.uint8)[(2 * 4 + 3) * 4:][:4]
        assert word.tolist() == [0, 96, 96, 0]  # our decision: NaN -> 0
        word = np.frombuffer(results["kneron_round"], np.uint8)[(2 * 4 + 3) * 4:][:4]
        assert word.tolist() == [128, 96, 96, 0]  # the KL730 helper's x86 INT_MIN: -128


def test_the_platform_probe_agrees_with_the_cast() -> None:
    """If the probe says casts report NaN, a hot-path-sized cast must raise."""
    if not encode_module._CAST_RAISES:
        pytest.skip("this platform's casts do not report NaN; the max reduction is used")
    src = np.zeros(150528, np.float32)
    src[-1] = np.nan
    with pytest.raises(FloatingPointError), np.errstate(invalid="raise"):
        np.copyto(np.empty(src.size, np.int32), src, casting="unsafe")


# --- the output buffer -----------------------------------------------------------------------


@pytest.mark.parametrize("chip,layout,shape", [
    ("KL520", "4W4C8B", (1, 3, 5, 7)),
    ("KL720", "4W4C8B", (1, 3, 4, 8)),  # no padding: the words are the node
    ("KL720", "16W1C8B", (1, 2, 3, 5)),
    ("KL720", "8W1C16B", (1, 2, 3, 5)),
    ("KL720", "1W16C8BHL", (1, 3, 2, 2)),
    ("KL720", "RAW_FLOAT", (1, 2, 2, 3)),
    ("KL730", "1W16C8B_CH_COMPACT", (1, 5, 2, 3)),
])
def test_dirty_buffer_is_fully_overwritten(ref, chip, layout, shape) -> None:
    x = np.random.default_rng(5).uniform(-2, 2, shape).astype(np.float32)
    kw = dict(chip=chip, layout=layout, shape=shape, radix=5, scale=1.0)
    size = node_buffer_size(chip=chip, layout=layout, shape=shape)
    for fill in (0x00, 0xFF, DIRT):
        buf = bytearray([fill]) * size
        encode_node_into(buf, x, **kw)
        assert bytes(buf) == encode_node(x, **kw) == ref.ref_encode(x, **kw)


def _buffers(size: int) -> dict:
    raw = bytearray(size + 8)
    return {
        "bytearray": bytearray(size),
        "array B": array.array("B", bytes(size)),
        "array I": array.array("I", bytes(-(-size // 4) * 4)),
        "numpy uint8": np.zeros(size, np.uint8),
        "numpy 2-D": np.zeros((2, -(-size // 2)), np.uint8),
        "numpy float32": np.zeros(-(-size // 4), np.float32),
        "memoryview at odd offset": memoryview(raw)[3:3 + size],
    }


@pytest.mark.parametrize("kind", list(_buffers(8)))
@pytest.mark.parametrize("chip,shape", [("KL520", (1, 3, 16, 16)), ("KL520", (1, 3, 5, 7)),
                                        ("KL720", (1, 2, 3, 4))])
def test_buffer_kinds(kind, chip, shape) -> None:
    kw = dict(chip=chip, layout="4W4C8B", shape=shape, radix=7, scale=1.0)
    x = np.random.default_rng(6).uniform(-1, 1, shape).astype(np.float32)
    expected = encode_node(x, **kw)
    out = _buffers(len(expected))[kind]
    assert encode_node_into(out, x, **kw) == len(expected)
    assert memoryview(out).cast("B")[:len(expected)].tobytes() == expected


def test_buffer_errors() -> None:
    shape = (1, 3, 5, 7)
    kw = dict(chip="KL520", layout="4W4C8B", shape=shape, radix=7, scale=1.0)
    x = np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match=r"319 bytes.*needs 320"):
        encode_node_into(bytearray(319), x, **kw)
    frozen = np.zeros(320, np.uint8)
    frozen.flags.writeable = False
    for read_only in (bytes(320), frozen, memoryview(bytearray(320)).toreadonly()):
        with pytest.raises(TypeError, match="read-only"):
            encode_node_into(read_only, x, **kw)
    with pytest.raises(TypeError, match="buffer protocol"):
        encode_node_into([0] * 320, x, **kw)
    with pytest.raises(ValueError, match="not contiguous"):
        encode_node_into(np.zeros(640, np.uint8)[::2], x, **kw)
    buf = bytearray([DIRT]) * 320
    with pytest.raises(ValueError, match="shape"):  # bad input: the buffer stays as it was
        encode_node_into(buf, np.zeros((1, 3, 5, 6), np.float32), **kw)
    assert buf == bytearray([DIRT]) * 320


def test_large_nodes_use_fresh_work_buffers(monkeypatch) -> None:
    monkeypatch.setattr(encode_module, "_KEEP_ELEMENTS", 50)
    shape = (1, 3, 6, 9)
    x = np.random.default_rng(7).uniform(-1, 1, shape).astype(np.float32)
    kw = dict(chip="KL720", layout="4W4C8B", shape=shape, radix=7, scale=1.0)
    assert _into(x, **kw) == _oracle(x, "KL720", shape, 7, 1.0)


def test_output_nodes_still_match(ref) -> None:
    shape = (1, 3, 4, 5)
    x = _adversarial(shape, 128.0, 9)
    for chip, layout in (("KL520", "4W4C8B"), ("KL720", "16W1C8B"), ("KL730", "4W4C8B")):
        kw = dict(chip=chip, layout=layout, shape=shape, radix=7, scale=1.0)
        with np.errstate(all="ignore"):
            expected = ref.ref_encode(np.nan_to_num(x, nan=0.0), rounding="roundf",
                                      output=True, **kw)
            assert encode_output_node(x, **kw) == expected


# --- threads ---------------------------------------------------------------------------------


def test_concurrent_calls_from_threads() -> None:
    """Threads with different node sizes (so work buffers grow) and inputs at once."""
    jobs = []
    rng = np.random.default_rng(8)
    for i in range(48):
        chip, shape = PIXEL_WORD_NODES[i % len(PIXEL_WORD_NODES)]
        if i % 3 == 0:
            shape = (1, 3, 32 + i, 40)
        x = rng.uniform(-1.1, 1.1, shape).astype(np.float32)
        kw = dict(chip=chip, layout="4W4C8B", shape=shape, radix=7, scale=1.0)
        jobs.append((x, kw, encode_node(x, **kw)))
    barrier = threading.Barrier(4)

    def work(k: int) -> list[bool]:
        barrier.wait()
        results = []
        for x, kw, expected in jobs[k::4] * 3:
            buf = bytearray(len(expected))
            encode_node_into(buf, x, **kw)
            results.append(bytes(buf) == expected and encode_node(x, **kw) == expected)
        return results

    with ThreadPoolExecutor(4) as pool:
        outcomes = [ok for part in pool.map(work, range(4)) for ok in part]
    assert len(outcomes) == 144 and all(outcomes)


@pytest.mark.skipif(os.environ.get("KP_LAYOUTS_EXHAUSTIVE") != "1",
                    reason="set KP_LAYOUTS_EXHAUSTIVE=1 for all 2**32 float32 inputs")
@pytest.mark.parametrize("rounding", ["roundf", "kneron_round"])
def test_fast_int8_path_on_every_float32(rounding) -> None:
    """The fast path (direct int8 cast, KL730 RAW_8B) against the general quantiser on all
    2**32 float32 inputs, factor 1 (chunks with NaN take the general path anyway)."""
    step = 1 << 24
    kw = dict(chip="KL730", layout="RAW_8B", shape=(step,), radix=0, scale=1.0,
              rounding=rounding)
    buf = bytearray(step)
    one = np.float32(1)
    with np.errstate(all="ignore"):
        for start in range(0, 1 << 32, step):
            x = np.arange(start, start + step, dtype=np.uint32).view(np.float32)
            encode_node_into(buf, x, **kw)
            expected = quantize(x, one, kind_bits=8, mode=rounding)
            assert buf == expected.tobytes(), hex(start)


@pytest.mark.skipif(os.environ.get("KP_LAYOUTS_EXHAUSTIVE") != "1",
                    reason="set KP_LAYOUTS_EXHAUSTIVE=1 for all 2**32 float32 inputs")
def test_pixel_words_on_every_float32() -> None:
    """roundf pixel words summed in float32 (KL520 4W4C8B, C = 3, the benchmark's node)
    against the general quantiser and the int8 packer on all 2**32 float32 inputs, factor
    1; the planes rotate from chunk to chunk so each value range meets every channel."""
    plane = 1 << 22
    shape = (1, 3, 2048, 2048)
    kw = dict(chip="KL520", layout="4W4C8B", shape=shape, radix=0, scale=1.0,
              rounding="roundf")
    plan = layout_plan(chip="KL520", layout="4W4C8B", shape=shape)
    buf = bytearray(plan.nbytes)
    one = np.float32(1)
    with np.errstate(all="ignore"):
        for k, start in enumerate(range(0, 1 << 32, 3 * plane)):
            bits = (np.arange(start, start + 3 * plane, dtype=np.uint64) & 0xFFFFFFFF)
            x = np.roll(bits.astype(np.uint32).view(np.float32), (k % 3) * plane)
            encode_node_into(buf, x.reshape(shape), **kw)
            values = quantize(x, one, kind_bits=8, mode="roundf")
            expected = np.empty(plan.nbytes, np.uint8)
            encode_module.scatter_into(values, plan, expected)
            assert buf == expected.tobytes(), hex(start)


@pytest.mark.parametrize("factor,exact", [
    (1.0, True), (128.0, True), (2.0 ** -3, True), (2.0 ** 100, True), (2.0 ** -100, True),
    (2.0 ** -140, False),  # subnormal factor: -128 / f overflows
    (2.0 ** 127, True),
    (0.9 * 128, False), (3.0, False), (-128.0, False), (0.0, False), (float("inf"), False),
    (float("nan"), False),
])
def test_saturation_moves_onto_x_only_where_exact(factor, exact) -> None:
    """Clipping x before the multiply (power-of-two factors) saturates exactly like clipping
    the product; other factors keep the product clip."""
    f = np.float32(factor)
    bounds = encode_module._x_domain_bounds(f, -128, 127)
    assert (bounds is not None) == exact
    if bounds is None:
        return
    lo, hi = bounds
    probes = np.concatenate([np.array([lo, hi], np.float32),
                             np.nextafter(np.array([lo, hi], np.float32), np.float32(np.inf)),
                             np.nextafter(np.array([lo, hi], np.float32), np.float32(-np.inf)),
                             np.array([np.inf, -np.inf, 0.0, -0.0], np.float32)])
    with np.errstate(over="ignore"):
        want = np.clip(probes * f, np.float32(-128), np.float32(127))
        got = np.clip(probes, lo, hi) * f
    np.testing.assert_array_equal(got, want)
