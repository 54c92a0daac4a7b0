from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _shared import require_shared  # noqa: E402


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (skips, or fails under CI=true, when absent)."""
    return require_shared()


_kn = itertools.count(0x7E570001)


@pytest.fixture
def virtual():
    """``virtual(spec="KL520")`` -> a provider ``device`` option naming fresh fast virtual
    dongles (a unique KN number, so nothing leaks between tests); closed at teardown."""
    from kp_backend import emulator

    specs = []

    def make(spec: str = "KL520") -> str:
        text = f"{spec}:fast:kn={next(_kn):08X}"
        specs.append(text)
        return "virtual:" + text

    yield make
    for text in specs:
        emulator.get_shared_virtual_backend(text).close()
