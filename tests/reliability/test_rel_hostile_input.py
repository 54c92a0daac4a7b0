"""Hostile input: malformed ``input_feed``s on the Kneron and CPU sessions, and hostile
result messages from a device (the decoders never read past the message nor allocate from
an untrusted count). NEF fuzzing is ``tests/nef/test_nef_fuzz.py`` (long run documented in
``docs/reliability.md``)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kp_runtime as ort
from kp_backend.layouts import parse_result_nodes, retrieve_node
from kp_backend.provider import codec
from kp_runtime.errors import DeviceError, DeviceProtocolError, InvalidArgument

from rel_helpers import DIGITS, LONG, digits_data

NEF = DIGITS / "digits_cnn.nef"
ONNX = DIGITS / "digits_cnn.onnx"
BAD_FEED = (InvalidArgument, ValueError, TypeError, RuntimeError, DeviceError)


@pytest.fixture(scope="module")
def x():
    images, _ = digits_data.load_test_set()
    return digits_data.to_model_input(images)[:4]


@pytest.fixture(params=["kneron", "cpu"])
def session(request, virtual):
    if request.param == "kneron":
        s = ort.InferenceSession(str(NEF), providers=[("kneron", {"device": virtual()})])
    else:
        s = ort.InferenceSession(str(ONNX), providers=["cpu"])
    with s:
        yield s


def _huge(shape, dtype=np.float32):
    """A zero-stride view: any shape, no memory."""
    return np.broadcast_to(np.zeros((), dtype=dtype), shape)


@pytest.mark.parametrize("feed, match", [
    ({"input": "not an array"}, "Unable to handle"),
    ({"input": None}, "Unable to handle"),
    ({}, "missing"),
    ({"input": np.zeros((1, 1, 8, 8)), "extra": np.zeros(1)}, "Invalid input name|data type"),
    ({"input": np.zeros((1, 1, 8, 8), np.float64)}, "tensor\\(double\\)"),
    ({"input": np.zeros((1, 1, 8, 8), np.int8)}, "tensor\\(int8\\)"),
    # uint8 is an image for the Kneron provider (input_mode auto): refused as one
    ({"input": np.zeros((1, 1, 8, 8), np.uint8)}, "tensor\\(uint8\\)|8 channels"),
    ({"input": np.zeros((1, 1, 8, 8), np.complex64)}, "complex|data type"),
    ({"input": np.zeros((1, 1, 8, 8), object)}, "object|data type"),
    ({"input": np.zeros((1, 8, 8), np.float32)}, "Invalid rank"),
    ({"input": np.zeros((1, 1, 8, 9), np.float32)}, "invalid dimensions"),
    ({"input": np.zeros((2, 1, 8, 8), np.float32)}, "invalid dimensions"),
    ({"input": np.zeros((0, 1, 8, 8), np.float32)}, "invalid dimensions"),
    ({"input": np.float32(1.0)}, "Invalid rank"),
    # Kneron: a list becomes a 1x2 RAW8 image, which the dongle refuses (status 22)
    ({"input": [[1.0, 2.0]]}, "Invalid rank|status 22"),
    ({"input": [["a"]]}, "Could not create tensor|Invalid rank"),
    ({"input": _huge((1, 1, 100_000, 100_000))}, "invalid dimensions"),
    ({"input": _huge((1, 1, 8, 8, 10**6))}, "Invalid rank"),
    ({"input": _huge((10**9, 1, 8, 8), ">f4")}, "invalid dimensions"),
])
def test_bad_feed_is_a_clear_error(session, feed, match):
    tracemalloc.start()
    try:
        with pytest.raises(BAD_FEED, match=match):
            session.run(None, feed)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 * 2**20, f"refusing the feed allocated {peak} bytes"


def test_unusual_but_valid_arrays_give_the_normal_result(session, x):
    want = session.run(None, {"input": x[0]})[0]
    variants = {
        "big-endian": x[0].astype(">f4"),
        "non-contiguous": np.ascontiguousarray(np.swapaxes(x[0], 2, 3)).swapaxes(2, 3),
        "fortran": np.asfortranarray(x[0]),
        "read-only": np.frombuffer(x[0].tobytes(), np.float32).reshape(x[0].shape),
        "strided": np.repeat(x[0], 2, axis=3)[..., ::2],
        "list": x[0].tolist(),
    }
    for name, value in variants.items():
        np.testing.assert_array_equal(session.run(None, {"input": value})[0], want,
                                      err_msg=name)


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # CPU: inf*0
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 1e30, -1e30, 5e-45])
def test_nan_inf_and_extremes_never_crash(session, x, value):
    feed = x[1].copy()
    feed[0, 0, 3, :4] = value
    (out,) = session.run(None, {"input": feed})
    assert out.shape == (1, 10) and out.dtype == np.float32
    if session.get_providers() == ["KneronExecutionProvider"]:
        # int8 NPU: NaN quantises to 0 and +-inf / huge values saturate; outputs are finite
        assert np.isfinite(out).all()


def test_output_names_are_checked(session, x):
    with pytest.raises(InvalidArgument, match="Invalid output name"):
        session.run(["nope"], {"input": x[0]})
    with pytest.raises(TypeError):
        session.run("logits", {"input": x[0]})


# -- hostile result messages --------------------------------------------------------------------
@pytest.fixture(scope="module")
def good_result(x):
    """A real result message of the digits model from the virtual dongle."""
    from kp_backend import emulator

    spec = "KL520:fast:kn=5E2FFFFF"
    try:
        with ort.InferenceSession(str(NEF), providers=[("kneron", {"device": "virtual:" + spec})]) as s:
            ps = s._psess
            handle = ps._handles[0][0]
            request, _ = ps._request({"input": x[0]})
            raw = handle.worker.submit(request).result(10)
            return raw, ps.signature.outputs
    finally:
        emulator.get_shared_virtual_backend(spec).close()


_mutation = st.one_of(
    st.tuples(st.just("cut"), st.integers(0, 2000)),
    st.tuples(st.just("word"), st.integers(0, 500), st.sampled_from(
        [0, 1, 2, 3, 16, 255, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF])),
    st.tuples(st.just("grow"), st.integers(1, 5000)),
)


@settings(max_examples=20_000 if LONG else 150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(_mutation, min_size=1, max_size=4))
def test_mutated_result_never_reads_past_its_buffer(good_result, mutations):
    raw, outputs = good_result
    msg = bytearray(raw)
    for m in mutations:
        if m[0] == "cut":
            del msg[m[1]:]
        elif m[0] == "grow":
            msg += bytes(m[1])
        else:
            offset = (m[1] * 4) % max(len(msg), 4)
            if offset + 4 <= len(msg):
                msg[offset:offset + 4] = m[2].to_bytes(4, "little")
    data = bytes(msg)
    tracemalloc.start()
    try:
        try:
            values = codec.decode_outputs(data, outputs, [0], None, "dev")
        except DeviceProtocolError:
            pass
        else:
            assert values[0].shape == (1, 10)
        for i in range(3):
            try:
                nodes = parse_result_nodes(data)
                node = retrieve_node(data, i, "CHW")
            except ValueError:
                continue
            assert node.size <= len(data)
            assert all(n.offset + len(n.data) <= len(data) for n in nodes)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"decoding a {len(data)}-byte message allocated {peak} bytes"
