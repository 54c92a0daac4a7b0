"""pluggy hook specifications of kp_runtime (project name ``kp_runtime``).

A plugin is any module or object with ``@hookimpl``-decorated functions named
like the specs below, registered through the ``kp_runtime`` entry-point group or
``kp_runtime.plugins.register(plugin)``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from kp_runtime.provider import ExecutionProvider

PROJECT_NAME = "kp_runtime"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def kp_runtime_providers() -> list[ExecutionProvider]:
    """Return the execution providers this plugin offers (may be empty)."""


@hookspec
def kp_runtime_cli_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add ``kp-runtime`` subcommands.

    Each subcommand parser must ``set_defaults(func=...)`` with a callable taking
    the parsed ``argparse.Namespace`` and returning an ``int`` exit code.
    """
