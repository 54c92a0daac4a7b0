"""Concurrency: many threads on one session; every result equals the serial result of its
own input. CI: 8 x 100 runs; ``KP_LONG=1``: 8 x 1000 (docs/reliability.md)."""

from __future__ import annotations

import concurrent.futures

import numpy as np
import pytest

import kp_runtime as ort

from rel_helpers import DIGITS, digits_data, run_threads, scaled

THREADS = 8
RUNS = scaled(100, 1000)
BUDGET_S = scaled(60, 1200)


@pytest.fixture(scope="module")
def x():
    images, _ = digits_data.load_test_set()
    return digits_data.to_model_input(images)


def _serial(session, x):
    return [session.run(None, {"input": v})[0] for v in x]


def _hammer(session, x, serial, t):
    for k in range(RUNS):
        i = (t * 7919 + k * 31) % len(x)  # each thread its own mix of inputs
        (out,) = session.run(None, {"input": x[i]})
        np.testing.assert_array_equal(out, serial[i], err_msg=f"thread {t} run {k} input {i}")
    return RUNS


@pytest.mark.parametrize("provider", ["kneron", "cpu"])
def test_threads_share_one_session(virtual, x, provider):
    if provider == "kneron":
        session = ort.InferenceSession(str(DIGITS / "digits_cnn.nef"),
                                       providers=[("kneron", {"device": virtual()})])
    else:
        session = ort.InferenceSession(str(DIGITS / "digits_cnn.onnx"), providers=["cpu"])
    with session:
        serial = _serial(session, x)
        done = run_threads(_hammer, [(session, x, serial, t) for t in range(THREADS)], BUDGET_S)
    assert done == [RUNS] * THREADS


def test_submit_from_many_threads_on_two_dongles(virtual, x):
    with ort.InferenceSession(str(DIGITS / "digits_cnn.nef"),
                              providers=[("kneron", {"device": virtual("2xKL520")})]) as s:
        ps = s._psess
        serial = _serial(s, x)

        def submitter(t):
            futures = [(i, ps.submit({"input": x[i]}, None))
                       for i in ((t * 13 + k * 17) % len(x) for k in range(RUNS))]
            for i, f in futures:
                np.testing.assert_array_equal(f.result(BUDGET_S)[0], serial[i])
            return len(futures)

        assert run_threads(submitter, [(t,) for t in range(THREADS)], BUDGET_S) == [RUNS] * THREADS
        counts = sorted(ps.completed.values())
    assert counts[0] > 0 and sum(counts) >= THREADS * RUNS  # both dongles served


def test_run_many_and_run_in_parallel(virtual, x):
    with ort.InferenceSession(str(DIGITS / "digits_cnn.nef"),
                              providers=[("kneron", {"device": virtual()})]) as s:
        serial = _serial(s, x[:50])
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            many = pool.submit(lambda: list(s.run_many([{"input": v} for v in x[:50]])))
            singles = [pool.submit(s.run, None, {"input": x[i]}) for i in range(50)]
            for i, f in enumerate(singles):
                np.testing.assert_array_equal(f.result(BUDGET_S)[0], serial[i])
            for want, have in zip(serial, many.result(BUDGET_S)):
                np.testing.assert_array_equal(have[0], want)
