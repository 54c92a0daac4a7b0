"""Streaming aggregation of one output's metrics over feeds (numpy only, no I/O).

Feeds may come from a generator, so nothing is kept per element except a bounded
sample for the median and the 99th percentile (:class:`~.metrics.Reservoir`).
"""

from __future__ import annotations

import math

import numpy as np

from kp_runtime.compare import metrics
from kp_runtime.compare.report import ErrorStats, Location, OutputReport
from kp_runtime.compare.tolerance import OutputTolerance

__all__ = ["OutputAccumulator"]

P99 = 0.99


class _Distribution:
    """Max, mean, and a bounded sample for the median and p99, of the non-NaN values added."""

    def __init__(self, capacity: int) -> None:
        self.sample = metrics.Reservoir(capacity)
        self.total = 0.0
        self.count = 0
        self.max = -math.inf

    def add(self, values: np.ndarray) -> None:
        values = values[~np.isnan(values)]
        if values.size == 0:
            return
        with np.errstate(over="ignore", invalid="ignore"):
            self.total += float(np.sum(values))
        self.count += values.size
        self.max = max(self.max, float(np.max(values)))
        self.sample.add(values)

    def stats(self) -> ErrorStats:
        if not self.count:
            return ErrorStats(math.nan, math.nan, math.nan, math.nan)
        return ErrorStats(
            max=self.max,
            mean=self.total / self.count,
            median=self.sample.quantile(0.5),
            p99=self.sample.quantile(P99),
            exact=self.sample.exact,
        )


class OutputAccumulator:
    """Collects one output's comparison over feeds; :meth:`report` builds the :class:`OutputReport`."""

    def __init__(
        self,
        name: str,
        tolerance: OutputTolerance,
        top_k: int = 5,
        saturation_range: tuple[object, object] | None = None,
        reservoir_capacity: int = 1 << 20,
    ) -> None:
        self.name = name
        self.tolerance = tolerance
        self.top_k = top_k
        self._range = saturation_range
        self._report = OutputReport(name=name, tolerance=tolerance)
        self._abs = _Distribution(reservoir_capacity)
        self._rel = _Distribution(reservoir_capacity)
        self._signal = 0.0
        self._noise = 0.0
        self._cosines: list[float] = []
        self._snrs: list[float] = []
        self._ranks: list[np.ndarray] = []
        self._classes: int | None = None
        self._min_atol = 0.0
        self._min_rtol = 0.0
        self._worst_any: Location | None = None
        self._worst_fail: Location | None = None
        self._input_effect: float | None = None
        self._atol_max: float | None = None
        self._failures: list[str] = []

    def fail(self, reason: str) -> None:
        """Record a failure that is not a metric (missing output, not a tensor...); once per reason."""
        if reason not in self._failures:
            self._failures.append(reason)

    def add(self, feed: int, a: object, b: object, input_effect: float | None = None) -> None:
        """Compare one feed's outputs ``a`` (candidate) and ``b`` (reference)."""
        r = self._report
        for side, value in (("a", a), ("b", b)):
            if not isinstance(value, np.ndarray) or value.dtype.kind not in "biufc":
                kind = type(value).__name__ if not isinstance(value, np.ndarray) else f"array of {value.dtype}"
                self.fail(f"session {side} returned {kind}, not a numeric tensor (feed {feed})")
                return
        assert isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
        if r.shape_a is None:
            r.shape_a, r.shape_b = tuple(a.shape), tuple(b.shape)
            r.dtype_a, r.dtype_b = str(a.dtype), str(b.dtype)
        if a.shape != b.shape:
            r.shape_a, r.shape_b = tuple(a.shape), tuple(b.shape)
            self.fail(f"shape mismatch: a {tuple(a.shape)} vs b {tuple(b.shape)} (feed {feed})")
            return
        r.feeds += 1
        r.elements += a.size
        atol = self.tolerance.atol
        if input_effect is not None:
            atol = atol + input_effect
            self._input_effect = max(self._input_effect or 0.0, input_effect)
        rtol = self.tolerance.rtol
        atol_max = float(np.max(atol))
        self._atol_max = atol_max if self._atol_max is None else max(self._atol_max, atol_max)

        abs_err, rel_err = metrics.abs_rel_errors(a, b)
        failing = metrics.failing_mask(abs_err, rel_err, atol, rtol)
        n_fail = int(np.count_nonzero(failing))
        r.mismatched += n_fail
        r.nan_mismatched += int(np.count_nonzero(np.isnan(abs_err)))
        self._abs.add(abs_err)
        self._rel.add(rel_err)
        self._track_required(abs_err, rel_err, atol, rtol)
        self._track_worst(feed, a, b, abs_err, rel_err, failing, atol)

        self._cosines.append(metrics.cosine_similarity(a, b))
        b64 = b.astype(np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            signal = float(np.sum(np.square(b64)))
            noise = float(np.sum(np.square(abs_err)))
        self._signal += signal
        self._noise += noise
        self._snrs.append(metrics.snr_db(signal, noise))

        a_scores, b_scores = metrics.class_scores(a), metrics.class_scores(b)
        if a_scores is not None and b_scores is not None:
            self._classes = a_scores.shape[1]
            self._ranks.append(metrics.reference_rank(a_scores, b_scores))

        if self._range is not None:
            low, high = self._range
            outside = int(np.count_nonzero((b64 < low) | (b64 > high)))
            r.saturated = (r.saturated or 0) + outside

    def _track_required(
        self, abs_err: np.ndarray, rel_err: np.ndarray, atol: float | np.ndarray, rtol: float
    ) -> None:
        # An element passes at (atol, rtol) iff abs <= atol or rel <= rtol, so the smallest
        # uniform atol passing at this rtol is the largest abs error among elements with rel > rtol
        # (NaN errors can never pass: infinite), and symmetrically for rtol.
        with np.errstate(invalid="ignore"):
            need_abs = abs_err[~(rel_err <= rtol)]
            need_rel = rel_err[~(abs_err <= atol)]
        if need_abs.size:
            self._min_atol = max(self._min_atol, _nan_as_inf(float(np.max(need_abs))))
        if need_rel.size:
            self._min_rtol = max(self._min_rtol, _nan_as_inf(float(np.max(need_rel))))

    def _track_worst(
        self,
        feed: int,
        a: np.ndarray,
        b: np.ndarray,
        abs_err: np.ndarray,
        rel_err: np.ndarray,
        failing: np.ndarray,
        atol: float | np.ndarray,
    ) -> None:
        if abs_err.size == 0:
            return
        keyed = np.where(np.isnan(abs_err), np.inf, abs_err)
        atol_full = np.broadcast_to(atol, abs_err.shape)

        def location(flat: int, failed: bool) -> Location:
            index = np.unravel_index(flat, abs_err.shape)
            return Location(
                feed=feed,
                index=tuple(int(i) for i in index),
                actual=float(a[index]),
                reference=float(b[index]),
                abs_error=float(abs_err[index]),
                rel_error=float(rel_err[index]),
                atol=float(atol_full[index]),
                failed=failed,
            )

        flat = int(np.argmax(keyed))
        if self._worst_any is None or _key(keyed.flat[flat]) > _key(self._worst_any.abs_error):
            self._worst_any = location(flat, bool(failing.flat[flat]))
        if failing.any():
            flat = int(np.argmax(np.where(failing, keyed, -np.inf)))
            if self._worst_fail is None or _key(keyed.flat[flat]) > _key(self._worst_fail.abs_error):
                self._worst_fail = location(flat, True)

    def report(self) -> OutputReport:
        """The finished :class:`OutputReport`, with pass/fail decided."""
        r = self._report
        tol = self.tolerance
        failures = list(self._failures)
        if r.feeds:
            r.abs_error = self._abs.stats()
            r.rel_error = self._rel.stats()
            cos = np.asarray(self._cosines)
            r.cosine_min = float(np.min(cos))
            r.cosine_mean = float(np.mean(cos))
            r.worst_cosine_feed = int(np.argmin(np.where(np.isnan(cos), -np.inf, cos)))
            r.snr_db_min = float(min(self._snrs, key=lambda v: -math.inf if math.isnan(v) else v))
            r.snr_db = metrics.snr_db(self._signal, self._noise)
            r.min_atol = self._min_atol
            r.min_rtol = self._min_rtol
            r.atol_max = self._atol_max
            r.input_effect = self._input_effect
            r.worst = self._worst_fail or self._worst_any
            if self._ranks:
                ranks = np.concatenate(self._ranks)
                r.rows = int(ranks.size)
                r.k = min(self.top_k, self._classes or self.top_k)
                r.top1 = float(np.mean(ranks < 1))
                r.topk = float(np.mean(ranks < r.k))
            failures.extend(self._metric_failures())
        elif not failures:
            failures.append("no feed produced comparable values")
        r.failures = failures
        return r

    def _metric_failures(self) -> list[str]:
        r, tol = self._report, self.tolerance
        failures = []
        if r.mismatched:
            failures.append(
                f"{r.mismatched} of {r.elements} elements exceed atol {_fmt(r.atol_max)} and rtol {_fmt(tol.rtol)}"
                f" (smallest passing atol {_fmt(r.min_atol)})"
            )
        if tol.min_cosine is not None and not (r.cosine_min is not None and r.cosine_min >= tol.min_cosine):
            failures.append(
                f"cosine similarity {_fmt(r.cosine_min)} (feed {r.worst_cosine_feed}) is below {_fmt(tol.min_cosine)}"
            )
        if tol.min_snr_db is not None and not (r.snr_db_min is not None and r.snr_db_min >= tol.min_snr_db):
            failures.append(f"SNR {_fmt(r.snr_db_min)} dB is below {_fmt(tol.min_snr_db)} dB")
        if tol.min_top1 is not None and r.top1 is not None and r.top1 < tol.min_top1:
            failures.append(
                f"top-1 agreement {100 * r.top1:.1f}% ({round(r.top1 * r.rows)}/{r.rows} rows) "
                f"is below {100 * tol.min_top1:.1f}%"
            )
        return failures


def _nan_as_inf(value: float) -> float:
    return math.inf if math.isnan(value) else value


def _key(value: float) -> float:
    return math.inf if math.isnan(value) else value


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"
