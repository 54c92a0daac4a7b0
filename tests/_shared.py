"""The one way tests reach ``../shared`` (real NEFs, golden vectors, USB transcripts).

``../shared`` sits beside the repository root. Where it is absent, tests that
need it skip with a clear reason; under ``CI=true`` absence is a failure,
because CI always has it. Never copy these files into the project.

Use the ``shared_dir`` fixture in tests, and :func:`shared_params` to
parametrise over files at collection time.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = (REPO_ROOT.parent / "shared").resolve()

_MISSING = (
    f"shared test data not found at {SHARED_DIR} (expected ../shared beside the "
    "repository root: real NEFs, golden vectors, USB transcripts)"
)


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def shared_available() -> bool:
    return SHARED_DIR.is_dir()


def require_shared(*parts: str) -> Path:
    """Return ``../shared/<parts>``; skip (or fail under CI) when it is absent."""
    path = SHARED_DIR.joinpath(*parts)
    if not path.exists():
        reason = _MISSING if not shared_available() else f"{path} is missing from ../shared"
        if in_ci():
            pytest.fail(f"CI=true but {reason}", pytrace=False)
        pytest.skip(reason)
    return path


def shared_params(subdir: str, pattern: str) -> list:
    """``pytest.param`` per file matching ``pattern`` under ``../shared/<subdir>``.

    When the folder is absent this returns one parameter whose test skips (or
    fails under CI) through :func:`require_shared`, so absence is never silent.
    """
    folder = SHARED_DIR / subdir
    if not folder.is_dir():
        return [pytest.param(None, id="shared-missing")]
    files = sorted(folder.glob(pattern))
    return [pytest.param(p, id=str(p.relative_to(folder))) for p in files]


def shared_file(param: Path | None, subdir: str) -> Path:
    """Resolve a parameter made by :func:`shared_params` (skips/fails when absent)."""
    if param is None:
        return require_shared(subdir)
    return param
