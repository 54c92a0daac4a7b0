from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _shared import require_shared  # noqa: E402


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (skips, or fails under CI=true, when absent)."""
    return require_shared()
