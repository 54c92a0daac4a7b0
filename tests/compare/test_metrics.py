from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kp_runtime.compare import metrics


def test_errors_follow_polygraphy_conventions() -> None:
    a = np.array([1.0, 0.5, np.nan, np.nan, np.inf, np.inf, 2.0], dtype=np.float32)
    b = np.array([1.5, 0.0, np.nan, 1.0, np.inf, 1.0, np.inf], dtype=np.float32)
    abs_err, rel_err = metrics.abs_rel_errors(a, b)
    assert abs_err.dtype == np.float64
    assert abs_err[0] == 0.5 and rel_err[0] == pytest.approx(1 / 3)
    # a zero reference is replaced by float64 eps before dividing
    assert rel_err[1] == pytest.approx(0.5 / metrics.ZERO_EPS)
    assert abs_err[2] == 0 and rel_err[2] == 0  # NaN in both: equal
    assert math.isnan(abs_err[3])  # NaN on one side: a mismatch
    assert abs_err[4] == 0  # the same infinity
    assert math.isinf(abs_err[5]) and math.isinf(rel_err[5])
    assert math.isinf(rel_err[6])  # finite against an infinite reference must not read as 0
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.abs_rel_errors(a, b[:3])


def test_an_element_fails_only_when_both_tolerances_are_exceeded() -> None:
    abs_err = np.array([0.2, 0.2, 0.01, np.nan])
    rel_err = np.array([0.5, 0.001, 0.5, np.nan])
    mask = metrics.failing_mask(abs_err, rel_err, atol=0.1, rtol=0.01)
    assert mask.tolist() == [True, False, False, True]
    per_channel = metrics.failing_mask(abs_err[:3], rel_err[:3], atol=np.array([0.3, 0.1, 0.0]), rtol=0.01)
    assert per_channel.tolist() == [False, False, True]


def test_cosine_similarity() -> None:
    assert metrics.cosine_similarity(np.array([1.0, 0.0]), np.array([0.0, 2.0])) == 0.0
    assert metrics.cosine_similarity(np.array([3.0, 4.0]), np.array([6.0, 8.0])) == pytest.approx(1.0)
    assert metrics.cosine_similarity(np.array([1.0, 1.0]), np.array([-1.0, -1.0])) == pytest.approx(-1.0)
    assert metrics.cosine_similarity(np.zeros(3), np.zeros(3)) == 1.0
    assert metrics.cosine_similarity(np.zeros(3), np.ones(3)) == 0.0
    assert math.isnan(metrics.cosine_similarity(np.array([np.nan, 1.0]), np.ones(2)))


def test_snr() -> None:
    assert metrics.snr_db(100.0, 1.0) == pytest.approx(20.0)
    assert metrics.snr_db(1.0, 0.0) == math.inf
    assert metrics.snr_db(0.0, 1.0) == -math.inf


@pytest.mark.parametrize(
    ("shape", "dtype", "view"),
    [
        ((10,), np.float32, (1, 10)),
        ((4, 10), np.float32, (4, 10)),
        ((2, 10, 1, 1), np.float32, (2, 10)),
        ((1, 1, 7), np.float16, (1, 7)),
        ((1, 3, 8, 8), np.float32, None),
        ((4, 1), np.float32, None),
        ((1,), np.float32, None),
        ((), np.float32, None),
        ((4, 10), np.int64, None),
    ],
)
def test_class_scores_shape_rule(shape, dtype, view) -> None:
    scores = metrics.class_scores(np.zeros(shape, dtype=dtype))
    assert (None if scores is None else scores.shape) == view


def test_reference_rank_counts_ties_for_the_candidate() -> None:
    b = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.2], [0.1, 0.2, 0.7]])
    # row 0: candidate ties classes 0 and 1 (a quantised output), reference picks 1 -> agrees
    # row 1: candidate prefers class 2 -> reference's class 0 is second (rank 1)
    # row 2: candidate ranks reference's class 2 last (rank 2)
    a = np.array([[0.5, 0.5, 0.0], [0.5, 0.1, 0.6], [0.3, 0.4, 0.1]])
    assert metrics.reference_rank(a, b).tolist() == [0, 1, 2]


def test_reservoir_is_exact_up_to_capacity() -> None:
    values = np.random.default_rng(0).standard_normal(1000)
    r = metrics.Reservoir(capacity=1000)
    r.add(values[:300])
    r.add(values[300:])
    assert r.exact and r.seen == 1000
    assert r.quantile(0.5) == pytest.approx(np.median(values))
    assert r.quantile(0.99) == pytest.approx(np.quantile(values, 0.99))


def test_reservoir_samples_beyond_capacity() -> None:
    values = np.random.default_rng(1).uniform(size=200_000)
    r = metrics.Reservoir(capacity=5_000, seed=3)
    for chunk in np.array_split(values, 7):
        r.add(chunk)
    assert not r.exact and r.seen == values.size and r.values().size == 5_000
    assert r.quantile(0.5) == pytest.approx(0.5, abs=0.03)
    assert r.quantile(0.99) == pytest.approx(0.99, abs=0.01)


def test_reservoir_quantiles_ignore_nan_and_keep_infinity() -> None:
    r = metrics.Reservoir()
    r.add(np.array([np.nan, 1.0, np.inf, np.inf]))
    assert r.quantile(0.0) == 1.0 and r.quantile(0.99) == math.inf
    assert math.isnan(metrics.Reservoir().quantile(0.5))
    with pytest.raises(ValueError):
        metrics.Reservoir(capacity=0)


_finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float32, st.integers(1, 40), elements=_finite),
    hnp.arrays(np.float32, st.integers(1, 40), elements=_finite),
    st.floats(0, 1),
)
def test_failing_mask_matches_the_definition(a, b, rtol) -> None:
    n = min(a.size, b.size)
    a, b = a[:n], b[:n]
    abs_err, rel_err = metrics.abs_rel_errors(a, b)
    atol = float(np.median(abs_err))
    mask = metrics.failing_mask(abs_err, rel_err, atol, rtol)
    for i in range(n):
        diff = abs(float(a[i]) - float(b[i]))
        ref = abs(float(b[i])) or metrics.ZERO_EPS
        assert mask[i] == (diff > atol and diff / ref > rtol)
