"""Cross-provider accuracy: compare two sessions (or a session and golden outputs) on the same feeds.

See ``docs/compare.md``. Typical use::

    from kp_runtime.compare import compare, random_feeds
    report = compare(npu_session, cpu_session, random_feeds(cpu_session, n=20))
    print(report)            # a table; report.passed, report.to_json("report.json")
"""

from kp_runtime.compare.core import SessionRunError, compare
from kp_runtime.compare.feeds import load_feeds, random_feeds
from kp_runtime.compare.golden import GoldenSet, compare_to_golden, load_golden, save_golden
from kp_runtime.compare.report import CompareReport, OutputReport
from kp_runtime.compare.tolerance import DEFAULT_ATOL, DEFAULT_QUANT_STEPS, DEFAULT_RTOL

__all__ = [
    "compare",
    "CompareReport",
    "OutputReport",
    "SessionRunError",
    "random_feeds",
    "load_feeds",
    "save_golden",
    "load_golden",
    "compare_to_golden",
    "GoldenSet",
    "DEFAULT_ATOL",
    "DEFAULT_RTOL",
    "DEFAULT_QUANT_STEPS",
]
