"""Session profiling in onnxruntime's Chrome-trace JSON shape (``end_profiling()``)."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import threading
import time
from collections.abc import Iterator
from typing import Any


class Profiler:
    """Collects ``ph: "X"`` events (``cat`` ``Session``) while enabled."""

    def __init__(self, enabled: bool, prefix: str) -> None:
        self.enabled = enabled
        self.prefix = prefix
        self.start_ns = time.monotonic_ns()
        self._events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def span(self, name: str, **args: Any) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        begin = time.monotonic_ns()
        try:
            yield
        finally:
            end = time.monotonic_ns()
            event = {
                "cat": "Session", "pid": os.getpid(), "tid": threading.get_ident(),
                "dur": (end - begin) // 1000, "ts": (begin - self.start_ns) // 1000,
                "ph": "X", "name": name, "args": {k: str(v) for k, v in args.items()},
            }
            with self._lock:
                self._events.append(event)

    def end(self) -> str:
        """Write the trace and stop; return the file name (``''`` when profiling is off)."""
        if not self.enabled:
            return ""
        self.enabled = False
        stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")[:-3]
        path = f"{self.prefix}_{stamp}.json"
        with self._lock:
            events, self._events = self._events, []
        with open(path, "w", encoding="utf-8") as f:
            json.dump(events, f)
        return path
