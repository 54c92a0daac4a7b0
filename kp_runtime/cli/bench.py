"""``kp-runtime bench``: run the repository's benchmarks (``python -m benchmarks``).

``benchmarks/`` is not part of the installed package: it lives in the source checkout,
next to the ``kp_runtime`` package of an editable install. Without it the command fails
with one line (exit 2). Exit status otherwise as ``python -m benchmarks``: 0 when every
target is met, 1 when one is missed or an area failed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

import kp_runtime
from kp_runtime.cli import fail


def benchmarks_dir() -> Path:
    """Where ``benchmarks/`` would be: beside the ``kp_runtime`` package directory."""
    return Path(kp_runtime.__file__).resolve().parent.parent / "benchmarks"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="run the benchmarks of a source checkout (python -m benchmarks)",
        description="Run the repository's benchmarks: print a table of metrics with their "
        "targets and optionally write them as JSON. Needs a source checkout (editable "
        "install), where benchmarks/ sits beside kp_runtime/.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (< 60 s)")
    parser.add_argument("--json", metavar="PATH", help="write the metrics as JSON")
    parser.add_argument("--only", nargs="+", metavar="AREA",
                        help="run only these areas (e.g. runtime provider layouts)")
    parser.set_defaults(func=run)


def _load_runner(root: Path):
    if not (root / "runner.py").is_file():
        fail(f"no benchmarks/ beside the installed kp_runtime (looked for {root}); "
             "'kp-runtime bench' needs a source checkout installed with pip install -e")
    parent = str(root.parent)
    if parent not in sys.path:
        sys.path.insert(0, parent)
    loaded = sys.modules.get("benchmarks")
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve().parent != root:
        fail(f"another module named 'benchmarks' is already imported ({loaded!r})")
    runner = importlib.import_module("benchmarks.runner")
    if Path(runner.__file__).resolve().parent != root:
        fail(f"'benchmarks' resolves to {Path(runner.__file__).parent}, not {root}")
    return runner


def run(args: argparse.Namespace) -> int:
    runner = _load_runner(benchmarks_dir())
    try:
        runner.discover(args.only)
    except ValueError as exc:
        fail(str(exc))
    argv = (["--quick"] if args.quick else []) + (["--json", args.json] if args.json else [])
    if args.only:
        argv += ["--only", *args.only]
    return runner.main(argv)
