"""The thread-leak check of the emulator and reliability tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection

import pytest


def fail_if_threads_outlive(threads: Callable[[], list[threading.Thread]],
                            before: Collection[threading.Thread], what: str,
                            timeout_s: float = 5.0) -> None:
    """Wait until every live thread ``threads()`` lists that is not in ``before`` has ended;
    fail the test naming them (as ``"<what> leaked: [...]"``) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    leaked: list[threading.Thread] = []
    while time.monotonic() < deadline:
        leaked = [t for t in threads() if t not in before and t.is_alive()]
        if not leaked:
            return
        time.sleep(0.01)
    pytest.fail(f"{what} leaked: {[t.name for t in leaked]}")
