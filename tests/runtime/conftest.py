from __future__ import annotations

import importlib.metadata
from collections.abc import Iterator

import pytest

from kp_runtime import plugins


@pytest.fixture
def registry() -> Iterator[plugins.PluginRegistry]:
    """A fresh process registry holding only the CPU provider of this project.

    The project's other built-in plugins (e.g. the Kneron provider) are blocked so
    these tests see a known set of providers; entry points of other distributions
    (the ones tests create) still load.
    """
    plugins.reset()
    fresh = plugins.get_registry()
    for ep in importlib.metadata.entry_points(group=plugins.ENTRY_POINT_GROUP):
        if ep.name != "cpu" and plugins.is_own_distribution(getattr(ep, "dist", None)):
            fresh.pm.set_blocked(ep.name)
    yield fresh
    plugins.reset()
