"""Pure numpy accuracy metrics between a candidate tensor ``a`` and a reference ``b``.

Conventions (Polygraphy's ``CompareFunc.simple``): errors are computed in
float64; the relative error is relative to the reference (the second session),
with zeros in the reference replaced by :data:`ZERO_EPS` (2.22e-16) so that it
stays finite; an element *fails* only when its absolute error exceeds ``atol``
**and** its relative error exceeds ``rtol``.

Non-finite values: elements equal in both (including the same infinity, and NaN
in both at the same place, as numpy's ``equal_nan``) have error 0; a NaN on one
side only, or an infinity against anything else, gives a NaN or infinite error,
which always fails.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "ZERO_EPS",
    "abs_rel_errors",
    "failing_mask",
    "cosine_similarity",
    "snr_db",
    "class_scores",
    "reference_rank",
    "Reservoir",
]

#: Added in place of zeros in the reference before dividing (Polygraphy's value, float64 eps).
ZERO_EPS = float(np.finfo(np.float64).eps)


def _as_f64(x: np.ndarray) -> np.ndarray:
    return np.asarray(x).astype(np.float64, copy=False)


def abs_rel_errors(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Element-wise ``|a - b|`` and ``|a - b| / |b|`` (float64, shapes must be equal)."""
    a64, b64 = _as_f64(a), _as_f64(b)
    if a64.shape != b64.shape:
        raise ValueError(f"shapes differ: {a64.shape} vs {b64.shape}")
    with np.errstate(invalid="ignore", over="ignore"):
        abs_err = np.abs(a64 - b64)
        same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))
        abs_err[same] = 0.0
        denom = np.abs(b64)
        denom[denom == 0] = ZERO_EPS
        rel_err = abs_err / denom
    rel_err[same] = 0.0
    # |inf - inf| / inf is NaN already; a finite error against an infinite reference
    # divides to 0, which would hide a mismatch.
    rel_err[np.isinf(abs_err)] = np.inf
    return abs_err, rel_err


def failing_mask(
    abs_err: np.ndarray, rel_err: np.ndarray, atol: float | np.ndarray, rtol: float
) -> np.ndarray:
    """True where an element fails: abs error > ``atol`` and rel error > ``rtol`` (NaN fails).

    ``atol`` may be an array broadcastable to the errors (per-channel tolerance).
    """
    with np.errstate(invalid="ignore"):
        return ~((abs_err <= atol) | (rel_err <= rtol))


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between ``a`` and ``b`` flattened.

    Both all-zero: 1.0 (identical). One all-zero: 0.0. Any NaN: NaN.
    """
    a64, b64 = _as_f64(a).ravel(), _as_f64(b).ravel()
    with np.errstate(invalid="ignore", over="ignore"):
        na, nb = float(np.linalg.norm(a64)), float(np.linalg.norm(b64))
        if math.isnan(na) or math.isnan(nb):
            return math.nan
        if na == 0 and nb == 0:
            return 1.0
        if na == 0 or nb == 0:
            return 0.0
        value = float(np.dot(a64, b64)) / (na * nb)
    return math.nan if math.isnan(value) else min(1.0, max(-1.0, value))


def snr_db(signal_power: float, noise_power: float) -> float:
    """``10 log10(signal / noise)`` from sums of squares; +inf without noise, -inf without signal."""
    if math.isnan(signal_power) or math.isnan(noise_power):
        return math.nan
    if noise_power == 0:
        return math.inf
    if signal_power == 0:
        return -math.inf
    return 10.0 * math.log10(signal_power / noise_power)


def class_scores(x: np.ndarray) -> np.ndarray | None:
    """``x`` viewed as ``(rows, classes)`` when it is classification-shaped, else ``None``.

    Classification-shaped: a floating-point tensor that is ``(classes,)`` or
    ``(batch, classes, 1, ...)`` / ``(batch, 1, classes)`` (size-1 axes after the
    first are ignored), with at least 2 classes.
    """
    x = np.asarray(x)
    if x.dtype.kind not in "fc" or x.ndim == 0:
        return None
    if x.ndim == 1:
        return x.reshape(1, -1) if x.shape[0] >= 2 else None
    rest = [d for d in x.shape[1:] if d != 1]
    if len(rest) != 1 or rest[0] < 2:
        return None
    return x.reshape(x.shape[0], rest[0])


def reference_rank(a_scores: np.ndarray, b_scores: np.ndarray) -> np.ndarray:
    """Per row, how many of the candidate's classes score strictly above the reference's top class.

    Rank 0 means top-1 agreement, rank < k means the reference's top-1 class is
    in the candidate's top k. Ties count in the candidate's favour, because a
    quantised output often ties several classes on the same fixed-point value,
    and picking the first of them would count a disagreement the model did not
    make.
    """
    ref_top = np.argmax(b_scores, axis=1)
    at_ref = a_scores[np.arange(a_scores.shape[0]), ref_top]
    with np.errstate(invalid="ignore"):
        return np.sum(a_scores > at_ref[:, None], axis=1)


class Reservoir:
    """A uniform sample of at most ``capacity`` values, for median and quantiles.

    Exact (every value kept) until ``capacity`` values have been added; after that
    reservoir sampling (algorithm R, vectorised, seeded: results are reproducible).
    """

    def __init__(self, capacity: int = 1 << 20, seed: int = 0) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.seen = 0
        self._chunks: list[np.ndarray] = []
        self._kept = 0
        self._sample: np.ndarray | None = None
        self._rng = np.random.default_rng(seed)

    @property
    def exact(self) -> bool:
        return self.seen <= self.capacity

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size == 0:
            return
        if self._sample is None:
            room = self.capacity - self._kept
            head, values = values[:room], values[room:]
            self._chunks.append(head.copy())
            self._kept += head.size
            self.seen += head.size
            if values.size == 0:
                return
            self._sample = np.concatenate(self._chunks)
            self._chunks = []
        # Value number n (1-based) replaces a random slot with probability capacity / n.
        numbers = self.seen + 1 + np.arange(values.size)
        slots = (self._rng.random(values.size) * numbers).astype(np.int64)
        keep = slots < self.capacity
        # Fancy assignment applies in order, so a later value wins a shared slot, as in the serial algorithm.
        self._sample[slots[keep]] = values[keep]
        self.seen += values.size

    def values(self) -> np.ndarray:
        if self._sample is not None:
            return self._sample
        return np.concatenate(self._chunks) if self._chunks else np.empty(0)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile (linear interpolation) of the non-NaN values seen; NaN when none."""
        values = self.values()
        values = np.sort(values[~np.isnan(values)])
        if values.size == 0:
            return math.nan
        # numpy's interpolation turns an infinite neighbour into NaN; do it by hand.
        position = q * (values.size - 1)
        low, high = values[math.floor(position)], values[math.ceil(position)]
        if low == high:
            return float(low)
        if math.isinf(high):
            return math.inf
        return float(low + (high - low) * (position - math.floor(position)))
