"""The ``kneron`` plugin of kp_runtime (entry point group ``kp_runtime``).

It offers :class:`~kp_backend.provider.KneronExecutionProvider` and adds the
``kp-runtime build-nef`` and ``kp-runtime inspect`` subcommands.
"""

from __future__ import annotations

import argparse

from kp_runtime.hookspecs import hookimpl
from kp_runtime.provider import ExecutionProvider

__all__ = ["kp_runtime_providers", "kp_runtime_cli_commands"]


@hookimpl
def kp_runtime_providers() -> list[ExecutionProvider]:
    from kp_backend.provider import KneronExecutionProvider

    return [KneronExecutionProvider()]


@hookimpl
def kp_runtime_cli_commands(subparsers: argparse._SubParsersAction) -> None:
    from kp_backend.nef.cli import register_commands
    from kp_backend.provider.build_nef import register

    register(subparsers)
    register_commands(subparsers)
