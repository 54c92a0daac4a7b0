from __future__ import annotations

import numpy as np
import pytest

from kp_runtime.quantization import TensorQuantization
from kp_runtime.testing import assert_outputs_close, assert_sessions_close

from .models import linear, session, weights


def test_close_outputs_pass_and_return_the_report() -> None:
    a = np.array([[0.1, 0.2, 0.7]], np.float32)
    report = assert_outputs_close(a, a + 1e-6)
    assert report.passed and report["output"].abs_error.max < 1e-5


def test_failure_message_names_output_location_and_metrics() -> None:
    expected = np.zeros((2, 4), np.float32)
    expected[1, 3] = 1.0
    actual = expected.copy()
    actual[1, 2] = 1.5
    with pytest.raises(AssertionError) as info:
        assert_outputs_close([actual, expected], [expected, expected], names=["probs", "same"], atol=0.1)
    text = str(info.value)
    assert "1 of 2 failed" in text
    assert "output 'probs': FAILED" in text
    assert "1 of 8 elements exceed atol 0.1" in text
    assert "worst element at index [1, 2]: got 1.5, expected 0" in text
    assert "max abs 1.5" in text and "cosine" in text and "SNR" in text and "top-1 50.0%" in text
    assert "smallest passing atol 1.5" in text
    assert "passed: ['same']" in text
    assert "'same': FAILED" not in text


def test_dicts_lists_and_tolerance_kinds() -> None:
    a = {"y": np.array([1.0, 2.0, 3.0])}
    assert_outputs_close(a, {"y": [1.0, 2.0, 3.05]}, rtol=0.02)
    with pytest.raises(AssertionError, match="cosine similarity"):
        assert_outputs_close(a, {"y": np.array([3.0, 2.0, 1.0])}, atol=np.inf, min_cosine=0.99)
    with pytest.raises(AssertionError, match="missing from session b"):
        assert_outputs_close(a, {"z": np.array([1.0])})
    with pytest.raises(AssertionError, match=r"shapes: actual \(3,\), expected \(1, 3\)"):
        assert_outputs_close(a, {"y": np.array([[1.0, 2.0, 3.0]])})
    with pytest.raises(ValueError, match="2 names"):
        assert_outputs_close([a["y"]], [a["y"]], names=["p", "q"])
    with pytest.raises(TypeError, match="actual must be"):
        assert_outputs_close(3.0, a)


def test_quantisation_gives_the_default_tolerance() -> None:
    ref = np.linspace(-1, 1, 11)
    quantised = np.rint(ref / 0.125) * 0.125
    with pytest.raises(AssertionError):
        assert_outputs_close(quantised, ref)
    q = {"outputs": {"output": TensorQuantization("output", 0.125)}}
    report = assert_outputs_close(quantised, ref, quantization=q)
    assert report["output"].tolerance.source == "quantization"


def test_assert_sessions_close() -> None:
    w = weights()
    feeds = [{"x": np.full((1, 6), 0.5, np.float32)}]
    assert assert_sessions_close(session(linear(w)), session(linear(w)), feeds).passed
    with pytest.raises(AssertionError, match=r"CPUExecutionProvider is not close .* over 1 feed\(s\)") as info:
        assert_sessions_close(session(linear(w * 1.1)), session(linear(w)), feeds)
    assert "worst element at feed 0, index [0, " in str(info.value)
