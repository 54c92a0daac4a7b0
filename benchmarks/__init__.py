"""Benchmarks for kp-runtime: run with ``python -m benchmarks [--quick] [--json out.json]``.

Each ``bench_<area>.py`` module exposes ``run(quick: bool = False) -> dict[str, dict]``
returning metrics ``{NAME: {"value", "unit", "target", "ok", "note"}}``. Comparisons are
measured side by side in one run and reported as ratios. Speed targets live here, never
in timed tests.
"""
