"""``kp-runtime`` command line.

Every public module of this package (name not starting with ``_``) that defines
``register(subparsers)`` adds one subcommand, so a new command is one small
module; plugins add commands through the ``kp_runtime_cli_commands`` hook. A
subcommand sets ``func`` (``Namespace -> int``) with ``set_defaults``.

Errors are one line on stderr (``kp-runtime: error: ...``) and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from kp_runtime import __version__, plugins

log = logging.getLogger("kp_runtime.cli")

PROG = "kp-runtime"
EXIT_ERROR = 2


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is a single line on stderr (exit 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        fail(f"{message} (see '{self.prog} --help')")


def fail(message: str) -> None:
    """Print ``kp-runtime: error: <message>`` (one line) and exit 2."""
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)
    raise SystemExit(EXIT_ERROR)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description="Run ONNX-Runtime-shaped inference on pluggable providers.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
            register = getattr(module, "register", None)
            if callable(register):
                register(subparsers)
        except Exception as exc:  # noqa: BLE001 - one broken command must not take the CLI down
            log.warning("command module %s failed to load: %s: %s", info.name, type(exc).__name__, exc)
    plugins.get_registry().add_cli_commands(subparsers)
    return parser


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{PROG}: {record.levelname.lower()}: {record.getMessage()}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (it may be swapped, e.g. by pytest)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _setup_logging(verbosity: int) -> None:
    """Log lines look like the CLI's own (``kp-runtime: warning: ...``), on stderr."""
    logger = logging.getLogger("kp_runtime")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_Formatter())
        logger.addHandler(handler)
    logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kp-runtime`` console script; returns the exit status."""
    _setup_logging(0)  # plugins load while the parser is built
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _setup_logging(args.verbose)
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help(sys.stderr)
            return EXIT_ERROR
        return int(func(args) or 0)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (``kp-runtime inspect x.nef --json | head``): not an error;
        # point stdout at devnull so the interpreter's final flush does not complain
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - the CLI contract: one line, exit 2
        text = str(exc) or type(exc).__name__
        print(f"{PROG}: error: {type(exc).__name__}: {' '.join(text.split())}", file=sys.stderr)
        return EXIT_ERROR
