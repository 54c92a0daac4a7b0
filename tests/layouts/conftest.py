"""Fixtures for the layout codec tests: the per-element reference implementation."""

from __future__ import annotations

import runpy
import types
from pathlib import Path

import pytest

REFERENCE_PATH = Path(__file__).with_name("reference.py")


@pytest.fixture(scope="session")
def ref() -> types.SimpleNamespace:
    """The per-element reference of LAYOUTS.md (``tests/layouts/reference.py``), loaded by
    path so that no other folder's ``reference`` module can shadow it."""
    return types.SimpleNamespace(**runpy.run_path(str(REFERENCE_PATH)))
