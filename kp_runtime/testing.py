"""Assertions for accuracy tests: outputs (or whole sessions) close within tolerances.

Both helpers use :func:`kp_runtime.compare.compare`, so the metrics, the
tolerance rule (an element fails only when it exceeds ``atol`` **and** ``rtol``)
and the quantisation-aware defaults are those of the comparison tooling
(``docs/compare.md``). On failure they raise ``AssertionError`` naming each
failing output, where its worst element is, and its metrics; on success they
return the :class:`~kp_runtime.compare.CompareReport`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from kp_runtime.compare import CompareReport, compare
from kp_runtime.compare.report import OutputReport, fmt_cosine, fmt_number, fmt_percent
from kp_runtime.quantization import TensorQuantization

__all__ = ["assert_outputs_close", "assert_sessions_close"]

Outputs = np.ndarray | Sequence[Any] | Mapping[str, Any]


class _Arg:
    """The ``NodeArg`` shape (``name``, ``type``, ``shape``) for fixed outputs."""

    def __init__(self, name: str, value: Any) -> None:
        self.name = name
        self.type = f"tensor({np.asarray(value).dtype})"
        self.shape = list(np.shape(value))


class _FixedOutputs:
    """Outputs already computed, presented as a session with no inputs (so :func:`compare` applies)."""

    def __init__(self, outputs: dict[str, Any], label: str, quantization: Mapping[str, Any] | None) -> None:
        self._outputs = outputs
        self._label = label
        self._quant = quantization

    def get_inputs(self) -> list[_Arg]:
        return []

    def get_outputs(self) -> list[_Arg]:
        return [_Arg(name, value) for name, value in self._outputs.items()]

    def get_providers(self) -> list[str]:
        return [self._label]

    def get_quantization(self) -> dict[str, dict[str, TensorQuantization]]:
        quant = self._quant or {}
        return {"inputs": {}, "outputs": dict(quant.get("outputs", {}))}

    def run(self, output_names: Sequence[str], feed: Mapping[str, Any]) -> list[Any]:
        return [self._outputs[name] for name in output_names]


def _named(outputs: Outputs, names: Sequence[str] | None, what: str) -> dict[str, Any]:
    if isinstance(outputs, Mapping):
        result = dict(outputs)
    elif isinstance(outputs, np.ndarray):
        result = {(names[0] if names else "output"): outputs}
    elif isinstance(outputs, (list, tuple)):
        if names is not None and len(names) != len(outputs):
            raise ValueError(f"{len(names)} names given for {len(outputs)} {what} outputs")
        labels = list(names) if names is not None else [f"output{i}" for i in range(len(outputs))]
        result = dict(zip(labels, outputs))
    else:
        raise TypeError(f"{what} must be an array, a list of arrays or a dict of name -> array, got {type(outputs).__name__}")
    for name, value in result.items():
        if not isinstance(value, np.ndarray):
            result[name] = np.asarray(value)
    return result


def _describe_output(output: OutputReport, with_feed: bool) -> list[str]:
    lines = [f"output {output.name!r}: FAILED"]
    for failure in output.failures:
        lines.append(f"    {failure}")
    worst = output.worst
    if worst is not None:
        where = f"feed {worst.feed}, index {list(worst.index)}" if with_feed else f"index {list(worst.index)}"
        lines.append(
            f"    worst element at {where}: got {fmt_number(worst.actual)}, expected {fmt_number(worst.reference)} "
            f"(abs error {fmt_number(worst.abs_error)}, rel error {fmt_number(worst.rel_error)})"
        )
    abs_e = output.abs_error
    if abs_e is not None:
        metrics = (
            f"    max abs {fmt_number(abs_e.max)}, mean abs {fmt_number(abs_e.mean)}, p99 abs {fmt_number(abs_e.p99)}, "
            f"cosine {fmt_cosine(output.cosine_min)}, SNR {fmt_number(output.snr_db_min)} dB"
        )
        if output.top1 is not None:
            metrics += f", top-1 {fmt_percent(output.top1)}, top-{output.k} {fmt_percent(output.topk)}"
        lines.append(metrics)
        tol = output.tolerance
        lines.append(
            f"    tolerance: atol {fmt_number(output.atol_max)} ({tol.source}), rtol {fmt_number(tol.rtol)}; "
            f"smallest passing atol {fmt_number(output.min_atol)}"
        )
    if output.shape_a != output.shape_b:
        lines.append(f"    shapes: actual {output.shape_a}, expected {output.shape_b}")
    return lines


def _raise_if_failed(report: CompareReport, header: str, with_feed: bool) -> CompareReport:
    if report.passed:
        return report
    lines = [header]
    for output in report.outputs:
        if not output.passed:
            lines.extend(_describe_output(output, with_feed))
    passed = [o.name for o in report.outputs if o.passed]
    if passed:
        lines.append(f"passed: {passed}")
    raise AssertionError("\n".join(lines))


def assert_outputs_close(
    actual: Outputs,
    expected: Outputs,
    *,
    names: Sequence[str] | None = None,
    quantization: Mapping[str, Any] | None = None,
    **tolerances: Any,
) -> CompareReport:
    """Assert that ``actual`` outputs are close to ``expected`` ones (the reference).

    ``actual``/``expected``: one array, a list of arrays (as ``session.run``
    returns; ``names`` labels them, e.g. ``[o.name for o in session.get_outputs()]``),
    or a dict of name -> array. ``tolerances``: ``atol``, ``rtol``, ``min_cosine``,
    ``min_snr_db``, ``min_top1`` (each a number or ``{output: number, "": default}``)
    and ``top_k``. ``quantization``: the quantised side's ``get_quantization()``,
    to get the quantisation-aware default ``atol`` for its outputs.
    """
    a = _named(actual, names, "actual")
    b = _named(expected, names, "expected")
    report = compare(
        _FixedOutputs(a, "actual", quantization),
        _FixedOutputs(b, "expected", None),
        [{}],
        **tolerances,
    )
    return _raise_if_failed(report, f"outputs are not close ({len(report.failed_outputs)} of {len(report.outputs)} failed):", False)


def assert_sessions_close(
    session: Any,
    reference: Any,
    feeds: Mapping[str, Any] | Iterable[Mapping[str, Any]],
    **options: Any,
) -> CompareReport:
    """Run ``feeds`` through ``session`` and ``reference`` and assert every output passes.

    ``options`` are :func:`kp_runtime.compare.compare`'s (tolerances, ``top_k``,
    ``output_names``, ``quant_steps``, ``input_effect``).
    """
    report = compare(session, reference, feeds, **options)
    header = f"{report.a.label} is not close to {report.b.label} over {report.feeds} feed(s):"
    return _raise_if_failed(report, header, True)
