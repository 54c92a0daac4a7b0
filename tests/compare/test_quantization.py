from __future__ import annotations

import numpy as np
import pytest

from kp_runtime.quantization import TensorQuantization, session_quantization


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"step": 0.0}, ValueError),
        ({"step": -0.5}, ValueError),
        ({"step": float("nan")}, ValueError),
        ({"step": 0.5, "axis": 1}, ValueError),
        ({"step": [0.5, 0.25]}, ValueError),  # per channel without an axis
        ({"step": [[0.5]], "axis": 0}, ValueError),
        ({"step": [0.5, 0.0], "axis": 0}, ValueError),
        ({"step": "big"}, TypeError),
        ({"step": 0.5, "qmin": -128}, ValueError),
        ({"step": 0.5, "qmin": 5, "qmax": 5}, ValueError),
    ],
)
def test_bad_quantization_is_rejected(kwargs, error) -> None:
    with pytest.raises(error):
        TensorQuantization("t", **kwargs)


def test_name_must_be_text() -> None:
    with pytest.raises(TypeError, match="name"):
        TensorQuantization("", 0.5)


def test_round_trip_rounds_half_to_even_and_saturates() -> None:
    q = TensorQuantization("x", 0.25, qmin=-4, qmax=3)
    values = np.array([0.3, 0.125, 0.375, -2.0, 5.0], dtype=np.float32)
    out = q.quantize_dequantize(values)
    assert out.dtype == np.float32
    # 0.125/0.25 = 0.5 -> 0 (to even), 0.375/0.25 = 1.5 -> 2; -2.0 -> -4 LSB -> -1.0; 5.0 -> 3 LSB -> 0.75
    np.testing.assert_array_equal(out, [0.25, 0.0, 0.5, -1.0, 0.75])


def test_per_channel_steps_broadcast_along_axis() -> None:
    q = TensorQuantization("y", [0.5, 0.25, 0.125], axis=1)
    assert q.per_channel and q.max_step == 0.5
    step = q.step_for((2, 3, 4))
    assert step.shape == (1, 3, 1)
    values = np.full((2, 3, 4), 0.3)
    out = q.quantize_dequantize(values)
    np.testing.assert_allclose(out[:, 0], 0.5)
    np.testing.assert_allclose(out[:, 1], 0.25)
    np.testing.assert_allclose(out[:, 2], 0.25)
    assert TensorQuantization("y", [0.5, 0.25, 0.125], axis=-2).step_for((2, 3, 4)).shape == (1, 3, 1)


def test_per_channel_mismatch_names_the_tensor() -> None:
    q = TensorQuantization("y", [0.5, 0.25], axis=1)
    with pytest.raises(ValueError, match="'y'"):
        q.step_for((1, 3))
    with pytest.raises(ValueError, match="outside"):
        q.step_for((2,))


def test_equality_hash_and_dict_round_trip() -> None:
    a = TensorQuantization("y", np.array([0.5, 0.25]), axis=0, qmin=-128, qmax=127)
    b = TensorQuantization.from_dict(a.to_dict())
    assert a == b and hash(a) == hash(b)
    assert a != TensorQuantization("y", [0.5, 0.5], axis=0, qmin=-128, qmax=127)
    assert a.representable_range((2,))[1].tolist() == [63.5, 31.75]
    with pytest.raises(ValueError, match="lacks"):
        TensorQuantization.from_dict({"step": 1.0})


def test_step_array_is_read_only() -> None:
    q = TensorQuantization("y", [0.5, 0.25], axis=0)
    with pytest.raises(ValueError):
        q.step[0] = 1.0


class _Float:
    def get_inputs(self):
        return []


class _Quant:
    def __init__(self, info):
        self.info = info

    def get_quantization(self):
        return self.info


def test_session_without_the_method_is_float() -> None:
    assert session_quantization(_Float()) == {"inputs": {}, "outputs": {}}
    assert session_quantization(_Quant(None)) == {"inputs": {}, "outputs": {}}
    q = TensorQuantization("y", 0.5)
    assert session_quantization(_Quant({"outputs": {"y": q}})) == {"inputs": {}, "outputs": {"y": q}}


@pytest.mark.parametrize(
    "info", [[1, 2], {"outputs": [1]}, {"outputs": {"y": 0.5}}, {"inputs": {"x": {"step": 1.0}}}]
)
def test_session_with_a_malformed_answer_is_an_error(info) -> None:
    with pytest.raises(TypeError, match="get_quantization"):
        session_quantization(_Quant(info))
