"""``compare()``: run the same feeds through two sessions and compare every output.

Sessions are duck-typed onnxruntime sessions: ``get_inputs()``, ``get_outputs()``,
``run(output_names, feed)`` and optionally ``get_providers()``,
``get_provider_options()`` and ``get_quantization()`` (see
:mod:`kp_runtime.quantization`). An ``onnxruntime.InferenceSession`` works as is.

Session ``a`` is the candidate and ``b`` the reference: relative errors are
relative to ``b``, as Polygraphy's are to its second runner.

Input-rounding effect (quantisation-aware default tolerance): when exactly one
session quantises its inputs, each feed is also run through the *other* (float)
session with those inputs rounded to the quantised session's grid; the largest
absolute change this causes in an output is added to that output's default
``atol`` for that feed. That is the error a perfect fixed-point implementation
would make from input rounding alone, through this model's own gain, so it is
measured rather than guessed. It costs one extra run of the float session per
feed; ``input_effect=False`` turns it off.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from kp_runtime.compare import metrics
from kp_runtime.compare.accumulate import OutputAccumulator
from kp_runtime.compare.report import CompareReport, SessionInfo
from kp_runtime.compare.tolerance import (
    DEFAULT_ATOL,
    DEFAULT_QUANT_STEPS,
    DEFAULT_RTOL,
    OutputTolerance,
    Tolerances,
    ToleranceValue,
)
from kp_runtime.errors import Fail
from kp_runtime.quantization import TensorQuantization, session_quantization

__all__ = ["compare", "SessionRunError", "ProgressCallback", "iter_feeds", "session_info"]

log = logging.getLogger(__name__)

#: ``progress(done, total)``; ``total`` is ``None`` when the feeds have no length.
ProgressCallback = Callable[[int, "int | None"], None]


class SessionRunError(Fail):
    """A session raised while running a feed. ``side`` is ``"a"`` or ``"b"``, ``feed`` the feed index;
    the session's own exception is ``__cause__``."""

    def __init__(self, text: str, side: str, feed: int) -> None:
        super().__init__(text)
        self.side = side
        self.feed = feed


def _check_session(session: object, side: str) -> None:
    missing = [m for m in ("get_inputs", "get_outputs", "run") if not callable(getattr(session, m, None))]
    if missing:
        raise TypeError(
            f"session {side} ({type(session).__name__}) is not an inference session: it lacks {missing} "
            "(expected an onnxruntime-style session such as kp_runtime.InferenceSession)"
        )


def session_info(session: object) -> SessionInfo:
    """A label (first provider name) and the provider options of ``session``, as far as it tells."""
    providers = list(getattr(session, "get_providers", lambda: [])() or [])
    options = dict(getattr(session, "get_provider_options", lambda: {})() or {})
    quant = session_quantization(session)
    return SessionInfo(
        label=providers[0] if providers else type(session).__name__,
        providers=[str(p) for p in providers],
        provider_options={str(k): {str(kk): str(vv) for kk, vv in dict(v).items()} for k, v in options.items()},
        quantized=bool(quant["inputs"] or quant["outputs"]),
    )


def iter_feeds(feeds: Mapping[str, Any] | Iterable[Mapping[str, Any]]) -> tuple[Iterable[Any], int | None]:
    """Normalise ``feeds`` (one dict, a list, or any iterable of dicts) to ``(iterable, length or None)``."""
    if isinstance(feeds, Mapping):
        return [feeds], 1
    if isinstance(feeds, (str, bytes)) or not isinstance(feeds, Iterable):
        raise TypeError(
            f"feeds must be a dict of input name -> array, or an iterable of such dicts; got {type(feeds).__name__}"
        )
    try:
        total = len(feeds)  # type: ignore[arg-type]
    except TypeError:
        total = None
    return feeds, total


def _run(session: Any, names: list[str], feed: Mapping[str, Any], side: str, index: int) -> dict[str, Any]:
    if not isinstance(feed, Mapping):
        raise TypeError(f"feed {index} is a {type(feed).__name__}; expected a dict of input name -> array")
    if not names:
        return {}
    try:
        values = session.run(names, dict(feed))
    except Exception as exc:
        raise SessionRunError(
            f"session {side} ({session_info(session).label}) failed on feed {index}: {type(exc).__name__}: {exc}",
            side,
            index,
        ) from exc
    if len(values) != len(names):
        raise SessionRunError(
            f"session {side} returned {len(values)} values for {len(names)} requested outputs on feed {index}",
            side,
            index,
        )
    return dict(zip(names, values))


def _quantized_feed(feed: Mapping[str, Any], inputs: Mapping[str, TensorQuantization]) -> dict[str, Any]:
    rounded = dict(feed)
    for name, quant in inputs.items():
        if name in rounded:
            array = np.asarray(rounded[name])
            if array.dtype.kind == "f":
                rounded[name] = quant.quantize_dequantize(array)
    return rounded


def _same_quantization(x: Mapping[str, TensorQuantization], y: Mapping[str, TensorQuantization]) -> bool:
    return {k: v.to_dict() for k, v in x.items()} == {k: v.to_dict() for k, v in y.items()}


class _Comparison:
    """State of one :func:`compare` call (outputs, tolerances, quantisation, accumulators)."""

    def __init__(
        self,
        a: Any,
        b: Any,
        tolerances: Tolerances,
        output_names: Sequence[str] | None,
        top_k: int,
        quant_steps: float,
        input_effect: bool,
    ) -> None:
        self.a, self.b = a, b
        self.tolerances = tolerances
        self.top_k = top_k
        self.quant_steps = quant_steps
        self.notes: list[str] = []
        inputs_a = [i.name for i in a.get_inputs()]
        inputs_b = [i.name for i in b.get_inputs()]
        if set(inputs_a) != set(inputs_b):
            raise ValueError(f"the sessions have different inputs: a {inputs_a}, b {inputs_b}")
        self.outs_a = [o.name for o in a.get_outputs()]
        self.outs_b = [o.name for o in b.get_outputs()]
        if output_names is None:
            names = self.outs_a + [n for n in self.outs_b if n not in self.outs_a]
        else:
            if isinstance(output_names, str):
                raise TypeError("output_names must be a list of output names, not a str")
            names = list(output_names)
            unknown = [n for n in names if n not in self.outs_a and n not in self.outs_b]
            if unknown:
                raise ValueError(f"unknown output names {unknown}; outputs: {self.outs_a}")
        if not names:
            raise ValueError("there are no outputs to compare")
        self.names = names
        tolerances.validate(names)
        self.quant_a = session_quantization(a)
        self.quant_b = session_quantization(b)
        self.float_side, self.input_quant = self._input_effect_plan(input_effect)
        self.accumulators: dict[str, OutputAccumulator] = {}

    def _input_effect_plan(self, enabled: bool) -> tuple[Any, dict[str, TensorQuantization]]:
        qa, qb = self.quant_a["inputs"], self.quant_b["inputs"]
        if not enabled or (not qa and not qb):
            return None, {}
        if qa and qb:
            if not _same_quantization(qa, qb):
                self.notes.append(
                    "both sessions quantise their inputs, differently: the input-rounding effect is not "
                    "measured (no float session to measure it with)"
                )
            return None, {}
        return (self.b, dict(qa)) if qa else (self.a, dict(qb))

    def _output_quants(self, name: str) -> list[TensorQuantization]:
        return [q["outputs"][name] for q in (self.quant_a, self.quant_b) if name in q["outputs"]]

    def tolerance_for(self, name: str, shape: tuple[int, ...] | None) -> OutputTolerance:
        tol = self.tolerances
        quants = self._output_quants(name)
        step: float | np.ndarray | None = None
        if quants and shape is not None:
            try:
                step = sum((q.step_for(shape) for q in quants), start=0.0)  # type: ignore[arg-type]
            except ValueError as exc:
                raise ValueError(f"output {name!r}: quantisation does not fit the output: {exc}") from None
        elif quants:
            step = float(sum(q.max_step for q in quants))
        user_atol = tol.get("atol", name)
        quantized = step is not None or self.float_side is not None
        if user_atol is not None:
            atol: float | np.ndarray = user_atol
            source = "user"
        elif quantized:
            atol = DEFAULT_ATOL + self.quant_steps * (step if step is not None else 0.0)
            source = "quantization"
        else:
            atol, source = DEFAULT_ATOL, "default"
        rtol = tol.get("rtol", name)
        return OutputTolerance(
            atol=atol,
            rtol=DEFAULT_RTOL if rtol is None else rtol,
            min_cosine=tol.get("min_cosine", name),
            min_snr_db=tol.get("min_snr_db", name),
            min_top1=tol.get("min_top1", name),
            source=source,
            step=step,
            quant_steps=self.quant_steps if source == "quantization" else None,
        )

    def accumulator(self, name: str, shape: tuple[int, ...] | None) -> OutputAccumulator:
        acc = self.accumulators.get(name)
        if acc is None:
            tolerance = self.tolerance_for(name, shape)
            saturation = None
            quants = self._output_quants(name)
            if shape is not None and len(quants) == 1:
                saturation = quants[0].representable_range(shape)
            acc = OutputAccumulator(name, tolerance, top_k=self.top_k, saturation_range=saturation)
            for side, outs in (("a", self.outs_a), ("b", self.outs_b)):
                if name not in outs:
                    acc.fail(f"missing from session {side}'s outputs {outs}")
            self.accumulators[name] = acc
        return acc

    def add_feed(self, index: int, feed: Mapping[str, Any]) -> None:
        got_a = _run(self.a, [n for n in self.names if n in self.outs_a], feed, "a", index)
        got_b = _run(self.b, [n for n in self.names if n in self.outs_b], feed, "b", index)
        effects = self._input_effects(index, feed, got_a, got_b)
        for name in self.names:
            va, vb = got_a.get(name), got_b.get(name)
            known = vb if isinstance(vb, np.ndarray) else va
            shape = tuple(known.shape) if isinstance(known, np.ndarray) else None
            acc = self.accumulator(name, shape)
            if name in got_a and name in got_b:
                effect = effects.get(name) if acc.tolerance.source == "quantization" else None
                acc.add(index, va, vb, input_effect=effect)

    def _input_effects(
        self, index: int, feed: Mapping[str, Any], got_a: dict[str, Any], got_b: dict[str, Any]
    ) -> dict[str, float]:
        if self.float_side is None:
            return {}
        side, plain = ("b", got_b) if self.float_side is self.b else ("a", got_a)
        names = [n for n in plain if self.tolerances.get("atol", n) is None]
        rounded = _run(self.float_side, names, _quantized_feed(feed, self.input_quant), side, index)
        effects = {}
        for name in names:
            x, y = plain[name], rounded[name]
            if isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and x.shape == y.shape and x.size:
                abs_err, _ = metrics.abs_rel_errors(y, x)
                finite = abs_err[np.isfinite(abs_err)]
                effects[name] = float(np.max(finite)) if finite.size else 0.0
        return effects

    def report(self, feeds: int) -> CompareReport:
        outputs = [self.accumulator(name, None).report() for name in self.names]
        for output in outputs:
            if output.dtype_a and output.dtype_a != output.dtype_b:
                self.notes.append(f"output {output.name!r}: dtypes differ (a {output.dtype_a}, b {output.dtype_b})")
        if self.float_side is not None:
            which = "b" if self.float_side is self.b else "a"
            self.notes.append(
                f"input-rounding effect measured by running session {which} on inputs rounded to the other "
                "session's quantisation grid"
            )
        return CompareReport(
            a=session_info(self.a), b=session_info(self.b), feeds=feeds, outputs=outputs, notes=self.notes
        )


def compare(
    session_a: Any,
    session_b: Any,
    feeds: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    *,
    atol: ToleranceValue = None,
    rtol: ToleranceValue = None,
    min_cosine: ToleranceValue = None,
    min_snr_db: ToleranceValue = None,
    min_top1: ToleranceValue = None,
    top_k: int = 5,
    output_names: Sequence[str] | None = None,
    quant_steps: float = DEFAULT_QUANT_STEPS,
    input_effect: bool = True,
    progress: ProgressCallback | None = None,
) -> CompareReport:
    """Run every feed through ``session_a`` (candidate) and ``session_b`` (reference) and compare outputs.

    ``feeds``: one dict of input name -> array, a list of them, or any iterable
    (a generator is consumed once, never held in memory).

    Tolerances (each a number, or ``{output_name: number, "": default}``):
    ``atol``/``rtol``: an element fails only when its absolute error exceeds
    ``atol`` **and** its relative error exceeds ``rtol`` (Polygraphy's rule;
    ``atol=float("inf")`` disables the element-wise check). Defaults: 1e-5 each,
    or, for outputs a session quantises, ``atol = 1e-5 + quant_steps * step``
    plus the measured input-rounding effect (module docstring).
    ``min_cosine``, ``min_snr_db``: the smallest per-feed cosine similarity / SNR
    accepted. ``min_top1``: the smallest top-1 agreement accepted on
    classification-shaped outputs. ``top_k``: k for the top-k agreement.

    ``output_names``: compare only these (default: every output of either session;
    an output only one session has fails). ``progress(done, total)`` is called
    after each feed.

    Returns a :class:`CompareReport`. Raises ``TypeError``/``ValueError`` for bad
    arguments or sessions with different inputs, and :class:`SessionRunError`
    when a session fails on a feed.
    """
    _check_session(session_a, "a")
    _check_session(session_b, "b")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ValueError(f"top_k must be a positive int, got {top_k!r}")
    if isinstance(quant_steps, bool) or not isinstance(quant_steps, (int, float)) or not quant_steps >= 0:
        raise ValueError(f"quant_steps must be a number >= 0, got {quant_steps!r}")
    tolerances = Tolerances(atol=atol, rtol=rtol, min_cosine=min_cosine, min_snr_db=min_snr_db, min_top1=min_top1)
    state = _Comparison(session_a, session_b, tolerances, output_names, top_k, float(quant_steps), input_effect)
    iterable, total = iter_feeds(feeds)
    count = 0
    for index, feed in enumerate(iterable):
        state.add_feed(index, feed)
        count = index + 1
        if progress is not None:
            progress(count, total)
    if count == 0:
        raise ValueError("no feeds to compare (the feeds were empty)")
    report = state.report(count)
    log.debug("compared %d feeds: %s", count, "passed" if report.passed else f"failed {report.failed_outputs}")
    return report
