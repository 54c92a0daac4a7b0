"""Properties of the pass/fail rule and of the reported minimum tolerances, on arbitrary outputs."""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import kp_runtime
from kp_runtime.compare import compare, random_feeds
from kp_runtime.testing import assert_outputs_close

from .models import linear, weights

_values = st.floats(-100, 100, allow_nan=False, width=32)
_pairs = st.integers(1, 30).flatmap(
    lambda n: st.tuples(hnp.arrays(np.float32, n, elements=_values), hnp.arrays(np.float32, n, elements=_values))
)


@settings(max_examples=60, deadline=None)
@given(_pairs, st.sampled_from([0.0, 1e-5, 1e-2, 0.5]))
def test_min_atol_is_the_exact_threshold(pair, rtol) -> None:
    a, b = pair
    report = assert_outputs_close(a, b, atol=math.inf, rtol=rtol)
    need = report.min_atol
    assert assert_outputs_close(a, b, atol=need, rtol=rtol).passed
    if need > 0:
        with pytest.raises(AssertionError):
            assert_outputs_close(a, b, atol=np.nextafter(need, 0), rtol=rtol)


@settings(max_examples=60, deadline=None)
@given(_pairs, st.sampled_from([0.0, 1e-3, 0.1, 1.0]))
def test_min_rtol_is_the_exact_threshold(pair, atol) -> None:
    a, b = pair
    report = assert_outputs_close(a, b, atol=atol, rtol=math.inf)
    need = report["output"].min_rtol
    assume(math.isfinite(need))
    assert assert_outputs_close(a, b, atol=atol, rtol=need).passed
    if need > 0:
        with pytest.raises(AssertionError):
            assert_outputs_close(a, b, atol=atol, rtol=np.nextafter(need, 0))


@settings(max_examples=40, deadline=None)
@given(_pairs)
def test_swapping_sides_keeps_absolute_errors_and_cosine(pair) -> None:
    a, b = pair
    ab = assert_outputs_close(a, b, atol=math.inf)["output"]
    ba = assert_outputs_close(b, a, atol=math.inf)["output"]
    assert ab.abs_error.max == ba.abs_error.max and ab.abs_error.median == ba.abs_error.median
    assert ab.cosine_min == pytest.approx(ba.cosine_min, abs=1e-12)


def test_kp_runtime_cpu_session_matches_onnxruntime() -> None:
    """Our CPU reference (onnx.reference) against onnxruntime on the same model: float parity."""
    model = linear(weights(), relu=True).SerializeToString()
    ours = kp_runtime.InferenceSession(model, providers=["cpu"])
    theirs = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    report = compare(ours, theirs, random_feeds(theirs, 5, value_range=(-1, 1), shapes={"x": (4, 6)}))
    assert report.passed, str(report)
    assert report.a.label == "CPUExecutionProvider" and report["act"].elements == 5 * 4 * 5
