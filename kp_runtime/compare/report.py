"""Comparison reports: per-output results, the readable table, and JSON.

JSON is strict (no ``NaN``/``Infinity`` literals): non-finite numbers are
written as the strings ``"nan"``, ``"inf"`` and ``"-inf"`` and read back as floats.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kp_runtime.compare.tolerance import OutputTolerance

__all__ = ["ErrorStats", "Location", "SessionInfo", "OutputReport", "CompareReport"]

REPORT_FORMAT = "kp_runtime.compare.report"
REPORT_VERSION = 1


@dataclass
class ErrorStats:
    """Statistics of one error distribution over every element of every feed."""

    max: float
    mean: float
    median: float
    p99: float
    exact: bool = True  # False when median/p99 come from a uniform sample (very large outputs)


@dataclass
class Location:
    """One element: which feed, its index in the output, both values and its errors."""

    feed: int
    index: tuple[int, ...]
    actual: float
    reference: float
    abs_error: float
    rel_error: float
    atol: float
    failed: bool

    def describe(self) -> str:
        where = f"feed {self.feed}, index {list(self.index)}"
        return (
            f"{where}: got {fmt_number(self.actual)}, reference {fmt_number(self.reference)} "
            f"(abs error {fmt_number(self.abs_error)}, rel error {fmt_number(self.rel_error)}, atol {fmt_number(self.atol)})"
        )


@dataclass
class SessionInfo:
    """Which session a report side is: a label (provider name) and its provider options."""

    label: str
    providers: list[str] = field(default_factory=list)
    provider_options: dict[str, dict[str, str]] = field(default_factory=dict)
    quantized: bool = False


@dataclass
class OutputReport:
    """The comparison of one output over all feeds. ``passed`` is ``not failures``."""

    name: str
    tolerance: OutputTolerance
    shape_a: tuple[int, ...] | None = None
    shape_b: tuple[int, ...] | None = None
    dtype_a: str | None = None
    dtype_b: str | None = None
    feeds: int = 0
    elements: int = 0
    abs_error: ErrorStats | None = None
    rel_error: ErrorStats | None = None
    cosine_min: float | None = None
    cosine_mean: float | None = None
    snr_db_min: float | None = None
    snr_db: float | None = None  # pooled over all feeds
    top1: float | None = None
    topk: float | None = None
    k: int | None = None
    rows: int = 0
    mismatched: int = 0
    nan_mismatched: int = 0
    saturated: int | None = None
    input_effect: float | None = None  # max over feeds of the measured input-rounding effect
    atol_max: float | None = None  # largest atol applied to any element (input effect included)
    min_atol: float | None = None  # smallest uniform atol that passes at this rtol
    min_rtol: float | None = None  # smallest rtol that passes at the applied atol
    worst: Location | None = None
    worst_cosine_feed: int | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def classification(self) -> bool:
        return self.top1 is not None

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in self.__dict__.items() if k not in ("tolerance", "abs_error", "rel_error", "worst")}
        data["tolerance"] = self.tolerance.to_dict()
        data["abs_error"] = None if self.abs_error is None else dict(self.abs_error.__dict__)
        data["rel_error"] = None if self.rel_error is None else dict(self.rel_error.__dict__)
        data["worst"] = None if self.worst is None else dict(self.worst.__dict__)
        data["passed"] = self.passed
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputReport:
        data = dict(data)
        data.pop("passed", None)
        data["tolerance"] = OutputTolerance.from_dict(data["tolerance"])
        for key in ("abs_error", "rel_error"):
            if data.get(key) is not None:
                data[key] = ErrorStats(**data[key])
        if data.get("worst") is not None:
            worst = dict(data["worst"])
            worst["index"] = tuple(worst["index"])
            data["worst"] = Location(**worst)
        for key in ("shape_a", "shape_b"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


@dataclass
class CompareReport:
    """The result of :func:`kp_runtime.compare.compare`.

    ``a`` is the candidate, ``b`` the reference (relative errors are relative to
    ``b``). ``str(report)`` is a readable table; :meth:`to_json` serialises it.
    """

    a: SessionInfo
    b: SessionInfo
    feeds: int
    outputs: list[OutputReport]
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(o.passed for o in self.outputs)

    def __bool__(self) -> bool:
        return self.passed

    @property
    def failed_outputs(self) -> list[str]:
        return [o.name for o in self.outputs if not o.passed]

    @property
    def min_atol(self) -> float | None:
        """The smallest single ``atol`` that every output would have passed (element-wise check, at its rtol)."""
        values = [o.min_atol for o in self.outputs if o.min_atol is not None]
        return max(values) if values else None

    def __getitem__(self, name: str) -> OutputReport:
        for output in self.outputs:
            if output.name == name:
                return output
        raise KeyError(f"no output {name!r} in the report; outputs: {[o.name for o in self.outputs]}")

    def __iter__(self) -> Iterator[OutputReport]:
        return iter(self.outputs)

    def __str__(self) -> str:
        return format_table(self)

    # -- JSON ---------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "version": REPORT_VERSION,
            "passed": self.passed,
            "min_atol": self.min_atol,
            "a": dict(self.a.__dict__),
            "b": dict(self.b.__dict__),
            "feeds": self.feeds,
            "outputs": [o.to_dict() for o in self.outputs],
            "notes": list(self.notes),
        }

    def to_json(self, path: str | os.PathLike | None = None, indent: int = 2) -> str:
        """The report as strict JSON; also written to ``path`` when given."""
        text = json.dumps(_encode(self.to_dict()), indent=indent, allow_nan=False)
        if path is not None:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
        return text

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CompareReport:
        data = _decode(dict(data))
        if data.get("format") != REPORT_FORMAT:
            raise ValueError(f"not a kp_runtime comparison report (format {data.get('format')!r})")
        if data.get("version") != REPORT_VERSION:
            raise ValueError(f"unsupported report version {data.get('version')!r}, expected {REPORT_VERSION}")
        return cls(
            a=SessionInfo(**data["a"]),
            b=SessionInfo(**data["b"]),
            feeds=data["feeds"],
            outputs=[OutputReport.from_dict(o) for o in data["outputs"]],
            notes=list(data.get("notes", [])),
        )

    @classmethod
    def from_json(cls, text_or_path: str | os.PathLike) -> CompareReport:
        """Read a report from JSON text or from a file path."""
        text = os.fspath(text_or_path)
        if not text.lstrip().startswith("{"):
            with open(text, encoding="utf-8") as handle:
                text = handle.read()
        return cls.from_dict(json.loads(text))


_NONFINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _encode(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value in _NONFINITE:
        return _NONFINITE[value]
    if isinstance(value, dict):
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


# -- the readable table ---------------------------------------------------------


def fmt_number(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    return f"{value:.3g}"


def fmt_cosine(value: float | None) -> str:
    # Cosines that matter differ in the 4th-6th decimal, which 3 significant digits would hide.
    if value is None or math.isnan(value):
        return fmt_number(value)
    return f"{value:.6f}"


def fmt_percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _shape(output: OutputReport) -> str:
    if output.shape_a == output.shape_b:
        return "x".join(map(str, output.shape_a)) if output.shape_a is not None else "-"
    fmt = lambda s: "?" if s is None else "x".join(map(str, s))  # noqa: E731
    return f"{fmt(output.shape_a)}!={fmt(output.shape_b)}"


def _row(output: OutputReport) -> list[str]:
    abs_e, rel_e = output.abs_error, output.rel_error
    k = output.k or 0
    return [
        output.name,
        _shape(output),
        fmt_number(abs_e.max if abs_e else None),
        fmt_number(abs_e.mean if abs_e else None),
        fmt_number(abs_e.median if abs_e else None),
        fmt_number(abs_e.p99 if abs_e else None),
        fmt_number(rel_e.max if rel_e else None),
        fmt_cosine(output.cosine_min),
        fmt_number(output.snr_db_min),
        fmt_percent(output.top1),
        fmt_percent(output.topk) if k else "-",
        fmt_number(output.atol_max),
        fmt_number(output.min_atol),
        "PASS" if output.passed else "FAIL",
    ]


def format_table(report: CompareReport) -> str:
    """The report as text: header, one row per output, failure reasons, verdict."""
    top_k = max((o.k or 0 for o in report.outputs), default=0)
    header = [
        "output", "shape", "max abs", "mean abs", "median abs", "p99 abs", "max rel",
        "min cos", "min SNR dB", "top-1", f"top-{top_k}" if top_k else "top-k", "atol", "min atol", "result",
    ]
    rows = [header] + [_row(o) for o in report.outputs]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        f"compare: a = {report.a.label}  vs  b = {report.b.label} (reference), {report.feeds} feed(s)",
    ]
    for i, row in enumerate(rows):
        cells = [c.ljust(w) if j < 2 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    for output in report.outputs:
        tol = output.tolerance
        if tol.source == "quantization":
            lines.append(
                f"  {output.name}: atol from quantisation: 1e-05 + {fmt_number(tol.quant_steps)} x step "
                f"{fmt_number(_max(tol.step))}"
                + (f" + input effect (max {fmt_number(output.input_effect)})" if output.input_effect is not None else "")
            )
        for failure in output.failures:
            lines.append(f"  {output.name}: {failure}")
        if output.failures and output.worst is not None:
            lines.append(f"  {output.name}: worst element at {output.worst.describe()}")
    for note in report.notes:
        lines.append(f"  note: {note}")
    if report.min_atol is not None:
        lines.append(f"Minimum passing atol (at each output's rtol): {fmt_number(report.min_atol)}")
    if report.passed:
        lines.append(f"PASSED ({len(report.outputs)} output(s))")
    else:
        lines.append(f"FAILED | mismatched outputs: {report.failed_outputs}")
    return "\n".join(lines)


def _max(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(max(value))  # per-channel (array or list)
    except TypeError:
        return float(value)
