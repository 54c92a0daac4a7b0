"""Benchmarks for kp-runtime: ``python -m benchmarks [--quick] [--json out.json] [--only AREA ...]``
(also ``kp-runtime bench`` from a source checkout). Figures and conclusions: ``BENCHMARKS.md``.

Each ``bench_<area>.py`` module exposes ``run(quick: bool = False) -> dict[str, dict]``
returning metrics ``{NAME: {"value", "unit", "target", "ok", "note"}}``; the runner
(``benchmarks/runner.py``) prints them as a table and writes them as JSON. Areas: ``runtime``
(``overhead_vs_ort``), ``provider`` (``host_overhead_us``, ``pipeline_efficiency``,
``serial_run_fps``, ``multi_dongle_scaling``), ``device`` (``model_upload_efficiency``),
``layouts`` (``decode_mb_s``, ``encode_mb_s`` and their ratios to the per-element reference),
``nef`` (``nef_read_ms``), ``emulator`` (the virtual dongle's timing model). Comparisons are
measured side by side in one run and reported as ratios. Speed targets live here, never in
timed tests.
"""
