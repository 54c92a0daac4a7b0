"""Benchmark runner: collects the `bench_<area>.py` modules, runs them, prints a table and
writes JSON (`python -m benchmarks [--quick] [--json out.json] [--only AREA ...]`)."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

log = logging.getLogger("benchmarks")

BENCH_DIR = Path(__file__).resolve().parent


def areas() -> list[str]:
    """Area names, one per ``bench_<area>.py`` module."""
    return sorted(p.stem.removeprefix("bench_") for p in BENCH_DIR.glob("bench_*.py"))


def discover(selected: list[str] | None = None) -> list[str]:
    """Module names ``benchmarks.bench_<area>``, optionally filtered by area name
    (``ValueError`` naming the unknown ones and the available ones)."""
    names = areas()
    if selected:
        wanted = {s.removeprefix("bench_") for s in selected}
        unknown = wanted - set(names)
        if unknown:
            raise ValueError(f"unknown benchmark area(s): {sorted(unknown)}; "
                             f"available: {names}")
        names = [n for n in names if n in wanted]
    return [f"benchmarks.bench_{n}" for n in names]


def _normalise(metric: dict[str, Any]) -> dict[str, Any]:
    out = {"value": metric.get("value"), "unit": metric.get("unit", ""),
           "target": metric.get("target"), "ok": metric.get("ok"),
           "note": metric.get("note", "")}
    for key, value in metric.items():
        out.setdefault(key, value)
    return out


def run_all(modules: list[str], quick: bool) -> tuple[dict[str, dict], dict[str, str]]:
    """Run each module's ``run(quick)``; (metrics by name, error text by failed module)."""
    metrics: dict[str, dict] = {}
    errors: dict[str, str] = {}
    for name in modules:
        started = time.perf_counter()
        try:
            module = importlib.import_module(name)
            result = module.run(quick=quick)
        except Exception as exc:  # a broken area must not hide the others
            errors[name] = f"{type(exc).__name__}: {exc}"
            log.error("benchmark %s failed:\n%s", name, traceback.format_exc())
            continue
        for metric_name, metric in result.items():
            metrics[metric_name] = _normalise(metric)
        log.info("%s done in %.1f s", name, time.perf_counter() - started)
    return metrics, errors


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def format_table(metrics: dict[str, dict]) -> str:
    """The metrics as an aligned text table (metric, value, unit, target, ok, note)."""
    rows = [("metric", "value", "unit", "target", "ok", "note")]
    for name, m in metrics.items():
        ok = {True: "yes", False: "NO", None: "-"}[m.get("ok")]
        rows.append((name, _fmt(m["value"]), m["unit"], _fmt(m["target"]), ok, m.get("note", "")))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:5], widths)) + "  " + row[5])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    import os

    import numpy

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    return {"python": platform.python_version(), "numpy": numpy.__version__,
            "platform": platform.platform(), "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(), "nproc": usable}


def report(metrics: dict[str, dict], errors: dict[str, str], quick: bool) -> dict[str, Any]:
    """The JSON document: ``{"metrics": {NAME: {value, unit, target, ok, note}}, ...}``."""
    return {"metrics": metrics, "machine": machine_info(), "quick": quick,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "errors": errors}


def main(argv: list[str] | None = None) -> int:
    """Run the areas, print the table (stdout), write JSON; 0 when every target is met,
    1 when a target is missed or an area failed, 2 for a usage error."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    parser.add_argument("--json", metavar="PATH", help="write the metrics as JSON")
    parser.add_argument("--only", nargs="+", metavar="AREA",
                        help=f"run only these areas (of {', '.join(areas())})")
    args = parser.parse_args(argv)
    try:
        modules = discover(args.only)
    except ValueError as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    metrics, errors = run_all(modules, args.quick)
    print(format_table(metrics))
    for name, err in errors.items():
        print(f"ERROR in {name}: {err}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(report(metrics, errors, args.quick),
                                              indent=2) + "\n")
    missed = [n for n, m in metrics.items() if m.get("ok") is False]
    if missed:
        print(f"targets missed: {', '.join(missed)}", file=sys.stderr)
    return 1 if errors or missed else 0
