"""Collects ``bench_*.py`` modules, runs them, prints a table and writes JSON."""

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


def discover(selected: list[str] | None = None) -> list[str]:
    """Module names ``benchmarks.bench_<area>``, optionally filtered by area name."""
    names = sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))
    if selected:
        wanted = {s.removeprefix("bench_") for s in selected}
        unknown = wanted - {n.removeprefix("bench_") for n in names}
        if unknown:
            raise SystemExit(f"unknown benchmark area(s): {sorted(unknown)}; "
                             f"available: {[n.removeprefix('bench_') for n in names]}")
        names = [n for n in names if n.removeprefix("bench_") in wanted]
    return [f"benchmarks.{n}" for n in names]


def _normalise(metric: dict[str, Any]) -> dict[str, Any]:
    out = {"value": metric.get("value"), "unit": metric.get("unit", ""),
           "target": metric.get("target"), "ok": metric.get("ok"),
           "note": metric.get("note", "")}
    for key, value in metric.items():
        out.setdefault(key, value)
    return out


def run_all(modules: list[str], quick: bool) -> tuple[dict[str, dict], dict[str, str]]:
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


def machine_info() -> dict[str, Any]:
    import os

    import numpy

    return {"python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "numpy": numpy.__version__}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (smoke run)")
    parser.add_argument("--json", metavar="PATH", help="write the metrics as JSON")
    parser.add_argument("--only", nargs="+", metavar="AREA",
                        help="run only these areas (e.g. layouts nef runtime)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    metrics, errors = run_all(discover(args.only), args.quick)
    print(format_table(metrics))
    for name, err in errors.items():
        print(f"ERROR in {name}: {err}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"metrics": metrics, "machine": machine_info(), "quick": args.quick,
             "errors": errors}, indent=2) + "\n")
    missed = [n for n, m in metrics.items() if m.get("ok") is False]
    return 1 if errors or missed else 0
