"""compare() against real onnxruntime sessions (and their fixed-point twins)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from kp_runtime.compare import CompareReport, SessionRunError, compare, random_feeds
from kp_runtime.quantization import TensorQuantization

from .models import QuantizedSession, linear, session, weights


def _feeds(n: int = 4, batch: int = 3, seed: int = 0) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [{"x": rng.uniform(-1, 1, (batch, 6)).astype(np.float32)} for _ in range(n)]


def test_identical_sessions_pass_with_zero_error() -> None:
    ref = session(linear(weights()))
    report = compare(session(linear(weights())), ref, _feeds())
    assert report.passed and bool(report)
    out = report["logits"]
    assert out.abs_error.max == 0 and out.mismatched == 0 and out.elements == 4 * 3 * 5
    assert out.snr_db_min == math.inf and out.cosine_min == pytest.approx(1.0)
    assert out.top1 == 1.0 and out.k == 5 and out.rows == 12
    assert out.tolerance.source == "default" and out.tolerance.atol == 1e-5
    assert report.a.label == "CPUExecutionProvider" and report.min_atol == 0


def test_metrics_equal_the_numpy_definitions() -> None:
    w = weights()
    delta = np.random.default_rng(5).standard_normal(w.shape).astype(np.float32) * 1e-2
    feeds = _feeds(n=5)
    report = compare(session(linear(w + delta)), session(linear(w)), feeds)
    a = np.concatenate([f["x"] @ (w + delta) for f in feeds]).astype(np.float64)
    b = np.concatenate([f["x"] @ w for f in feeds]).astype(np.float64)
    err = np.abs(a - b)
    out = report["logits"]
    assert out.abs_error.max == pytest.approx(err.max(), rel=1e-4)
    assert out.abs_error.mean == pytest.approx(err.mean(), rel=1e-4)
    assert out.abs_error.median == pytest.approx(np.median(err), rel=1e-4)
    assert out.abs_error.p99 == pytest.approx(np.quantile(err, 0.99), rel=1e-4)
    assert out.rel_error.max == pytest.approx((err / np.abs(b)).max(), rel=1e-3)
    assert out.snr_db == pytest.approx(10 * np.log10(np.sum(b**2) / np.sum(err**2)), rel=1e-3)
    per_feed_cos = [
        float(np.dot(x.ravel(), y.ravel()) / np.linalg.norm(x) / np.linalg.norm(y))
        for x, y in zip(np.split(a, 5), np.split(b, 5))
    ]
    assert out.cosine_min == pytest.approx(min(per_feed_cos), abs=1e-9)
    assert out.cosine_mean == pytest.approx(np.mean(per_feed_cos), abs=1e-9)
    # the worst element is where the largest error is
    worst = out.worst
    assert worst.abs_error == pytest.approx(err.max(), rel=1e-4)
    assert not report.passed and out.mismatched == int(np.sum((err > 1e-5) & (err / np.abs(b) > 1e-5)))


def test_smallest_passing_atol_is_exact() -> None:
    w = weights()
    a, b = session(linear(w * 1.001)), session(linear(w))
    feeds = _feeds()
    first = compare(a, b, feeds)
    assert not first.passed and first.min_atol > 0
    assert compare(a, b, feeds, atol=first.min_atol).passed
    assert not compare(a, b, feeds, atol=first.min_atol * 0.999).passed
    # with a loose rtol, every element passes on its relative error alone
    assert compare(a, b, feeds, rtol=0.01).passed
    assert "Minimum passing atol" in str(first)


def test_per_output_tolerances_and_typos() -> None:
    w = weights()
    a, b = session(linear(w * 1.01, relu=True)), session(linear(w, relu=True))
    report = compare(a, b, _feeds(), atol={"logits": 1.0, "": 0.0})
    assert report["logits"].passed and not report["act"].passed
    assert report.failed_outputs == ["act"]
    with pytest.raises(ValueError, match="'logit'"):
        compare(a, b, _feeds(), atol={"logit": 1.0})
    with pytest.raises(ValueError, match="atol"):
        compare(a, b, _feeds(), atol=-1.0)
    with pytest.raises(TypeError, match="rtol"):
        compare(a, b, _feeds(), rtol="0.1")
    with pytest.raises(ValueError, match="min_cosine"):
        compare(a, b, _feeds(), min_cosine=1.5)


def test_cosine_snr_and_top1_thresholds() -> None:
    w = weights()
    a, b = session(linear(w * 1.2)), session(linear(w))
    loose = dict(atol=math.inf)
    assert compare(a, b, _feeds(), min_cosine=0.99, min_top1=1.0, **loose).passed  # scaling keeps direction
    failed = compare(a, b, _feeds(), min_snr_db=20.0, **loose)
    assert not failed.passed and "SNR" in failed["logits"].failures[0]
    swapped = w.copy()
    swapped[:, [0, 1]] = swapped[:, [1, 0]]
    c = session(linear(swapped))
    report = compare(c, b, _feeds(n=10), min_top1=0.9, min_cosine=0.99, **loose)
    out = report["logits"]
    assert out.top1 < 1.0 and any("top-1" in f for f in out.failures) and any("cosine" in f for f in out.failures)


def test_feeds_may_be_a_dict_a_list_or_a_generator() -> None:
    ref = session(linear(weights()))
    feeds = _feeds(n=3)
    assert compare(ref, ref, feeds[0]).feeds == 1
    calls: list[tuple[int, int | None]] = []
    report = compare(ref, ref, (f for f in feeds), progress=lambda done, total: calls.append((done, total)))
    assert report.feeds == 3 and calls == [(1, None), (2, None), (3, None)]
    calls.clear()
    compare(ref, ref, random_feeds(ref, 2), progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)]
    with pytest.raises(ValueError, match="no feeds"):
        compare(ref, ref, [])
    with pytest.raises(TypeError, match="feed 0"):
        compare(ref, ref, [[1, 2]])
    with pytest.raises(TypeError, match="feeds must be"):
        compare(ref, ref, "x")


def test_bad_sessions_and_arguments() -> None:
    ref = session(linear(weights()))
    other = session(linear(weights()[:5]))  # input width 5: still named x, so inputs match by name
    with pytest.raises(TypeError, match="session b"):
        compare(ref, object(), _feeds())
    with pytest.raises(ValueError, match="unknown output"):
        compare(ref, ref, _feeds(), output_names=["nope"])
    with pytest.raises(ValueError, match="top_k"):
        compare(ref, ref, _feeds(), top_k=0)
    with pytest.raises(SessionRunError, match="session b .* feed 0") as info:
        compare(ref, other, _feeds())
    assert info.value.side == "b" and info.value.feed == 0 and info.value.__cause__ is not None


def test_missing_output_and_shape_mismatch_fail_with_a_reason() -> None:
    w = weights()
    with_act = session(linear(w, relu=True))
    plain = session(linear(w))
    report = compare(with_act, plain, _feeds())
    assert report["logits"].passed
    assert not report["act"].passed and "missing from session b" in report["act"].failures[0]
    only = compare(with_act, plain, _feeds(), output_names=["logits"])
    assert only.passed and [o.name for o in only] == ["logits"]


class _Reshaper:
    """Returns the wrapped session's outputs flattened: a provider that loses the output shape."""

    def __init__(self, inner):
        self.inner = inner

    def get_inputs(self):
        return self.inner.get_inputs()

    def get_outputs(self):
        return self.inner.get_outputs()

    def run(self, names, feed):
        return [v.reshape(-1) for v in self.inner.run(names, feed)]


def test_shape_mismatch_is_a_failure() -> None:
    ref = session(linear(weights()))
    report = compare(_Reshaper(ref), ref, _feeds(n=2))
    out = report["logits"]
    assert not out.passed and "shape mismatch" in out.failures[0]
    assert out.shape_a == (15,) and out.shape_b == (3, 5)
    assert "15!=3x5" in str(report)


def test_report_json_round_trip_is_strict_json(tmp_path) -> None:
    w = weights()
    report = compare(session(linear(w * 1.01, relu=True)), session(linear(w, relu=True)), _feeds())
    path = tmp_path / "r.json"
    text = report.to_json(path)
    data = json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))
    assert data["passed"] is False and data["outputs"][0]["name"] == "logits"
    assert data["outputs"][0]["worst"]["index"] == list(report["logits"].worst.index)
    again = CompareReport.from_json(path)
    assert again.to_dict() == report.to_dict()
    assert CompareReport.from_json(text).to_json() == text
    identical = compare(session(linear(w)), session(linear(w)), _feeds(n=1))
    assert json.loads(identical.to_json())["outputs"][0]["snr_db"] == "inf"
    with pytest.raises(ValueError, match="not a kp_runtime comparison report"):
        CompareReport.from_dict({"format": "x"})


def test_table_is_readable() -> None:
    w = weights()
    report = compare(session(linear(w * 1.01, relu=True)), session(linear(w, relu=True)), _feeds())
    text = str(report)
    lines = text.splitlines()
    assert lines[0].startswith("compare: a = CPUExecutionProvider")
    assert "max abs" in lines[1] and "min cos" in lines[1] and "top-5" in lines[1]
    assert any(line.startswith("logits") and line.endswith("FAIL") for line in lines)
    assert "worst element at feed" in text
    assert lines[-1] == "FAILED | mismatched outputs: ['logits', 'act']"


# -- quantisation-aware defaults ------------------------------------------------------------------


IN_STEP, OUT_STEP = 1 / 64, 1 / 16


def _twin(w: np.ndarray, out_q: TensorQuantization | None = None, in_step: float | None = IN_STEP) -> QuantizedSession:
    inputs = {"x": TensorQuantization("x", in_step, qmin=-128, qmax=127)} if in_step else {}
    out_q = out_q or TensorQuantization("logits", OUT_STEP, qmin=-128, qmax=127)
    return QuantizedSession(session(linear(w)), inputs, {"logits": out_q})


def test_quantised_session_gets_a_tolerance_from_its_steps() -> None:
    w = weights()
    ref = session(linear(w))
    feeds = _feeds(n=6)
    report = compare(_twin(w), ref, feeds)
    out = report["logits"]
    assert report.passed, str(report)
    assert out.tolerance.source == "quantization" and out.tolerance.quant_steps == 2.0
    assert out.tolerance.atol == pytest.approx(1e-5 + 2 * OUT_STEP)
    assert out.tolerance.step == OUT_STEP and out.input_effect > 0
    assert report.a.quantized and not report.b.quantized
    # the measured input effect is max |F(round(x)) - F(x)| over the feeds
    rounded = [np.rint(f["x"] / IN_STEP) * IN_STEP @ w - f["x"] @ w for f in feeds]
    assert out.input_effect == pytest.approx(max(float(np.abs(r).max()) for r in rounded), rel=1e-4)
    assert out.atol_max == pytest.approx(1e-5 + 2 * OUT_STEP + out.input_effect, rel=1e-6)
    assert "quantisation" in str(report)
    # the candidate genuinely differs from the float model: the float default would fail it
    assert not compare(_twin(w), ref, feeds, atol=1e-5).passed


def test_the_input_effect_is_what_lets_a_high_gain_model_pass() -> None:
    w = weights(scale=40.0)  # large gain: input rounding moves outputs by many output LSBs
    ref = session(linear(w))
    feeds = _feeds(n=4, seed=2)
    out_q = TensorQuantization("logits", 0.25, qmin=-32768, qmax=32767)
    with_effect = compare(_twin(w, out_q), ref, feeds)
    without = compare(_twin(w, out_q), ref, feeds, input_effect=False)
    assert with_effect.passed, str(with_effect)
    assert not without.passed and without["logits"].input_effect is None
    assert with_effect["logits"].input_effect > 2 * 0.25


def test_reference_side_may_be_the_quantised_one() -> None:
    w = weights()
    report = compare(session(linear(w)), _twin(w), _feeds())
    assert report.passed and report["logits"].tolerance.source == "quantization"
    assert report.b.quantized and "running session a" in " ".join(report.notes)


def test_quantised_against_quantised_adds_both_steps() -> None:
    w = weights()
    other = _twin(w, TensorQuantization("logits", 1 / 8), in_step=1 / 32)
    report = compare(_twin(w), other, _feeds())
    tol = report["logits"].tolerance
    assert tol.atol == pytest.approx(1e-5 + 2 * (OUT_STEP + 1 / 8))
    assert report["logits"].input_effect is None
    assert any("both sessions quantise" in n for n in report.notes)


def test_per_channel_output_steps_give_a_per_channel_tolerance() -> None:
    w = weights()
    steps = np.array([1 / 16, 1 / 32, 1 / 64, 1 / 8, 1 / 4])
    twin = _twin(w, TensorQuantization("logits", steps, axis=1))
    report = compare(twin, session(linear(w)), _feeds())
    tol = report["logits"].tolerance
    assert report.passed and isinstance(tol.atol, np.ndarray) and tol.atol.shape == (1, 5)
    np.testing.assert_allclose(tol.atol.ravel(), 1e-5 + 2 * steps)
    assert json.loads(report.to_json())["outputs"][0]["tolerance"]["step"] == steps.tolist()
    bad = _twin(w, TensorQuantization("logits", steps, axis=1))
    bad.get_quantization = lambda: {"inputs": {}, "outputs": {"logits": TensorQuantization("logits", steps[:3], axis=1)}}
    with pytest.raises(ValueError, match="'logits'"):
        compare(bad, session(linear(w)), _feeds())


def test_saturation_is_counted_and_fails() -> None:
    w = weights(scale=4.0)
    tight = TensorQuantization("logits", 1 / 64, qmin=-128, qmax=127)  # range [-2, 1.98]
    report = compare(_twin(w, tight), session(linear(w)), _feeds())
    out = report["logits"]
    assert out.saturated > 0 and not out.passed


def test_user_atol_overrides_the_quantised_default() -> None:
    w = weights()
    report = compare(_twin(w), session(linear(w)), _feeds(), atol=1.0, quant_steps=0)
    tol = report["logits"].tolerance
    assert tol.source == "user" and tol.atol == 1.0 and report["logits"].input_effect is None
    zero_steps = compare(_twin(w), session(linear(w)), _feeds(), quant_steps=0)["logits"]
    assert zero_steps.tolerance.atol == pytest.approx(1e-5)
