"""``kp-runtime compare``: compare providers (or a provider and golden outputs) on one model.

Modes (by the number of ``--providers`` and the golden options):

* two providers: run both on the same feeds, ``a`` = first (candidate), ``b`` = second (reference);
* one provider + ``--save-golden DIR``: record its outputs as a golden set;
* one provider + ``--golden DIR``: compare it against a recorded golden set (on its recorded feeds).

Exit status: 0 passed (or golden saved), 1 comparison failed, 2 usage, model or run errors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from kp_runtime.compare.core import compare
from kp_runtime.compare.feeds import load_feeds, random_feeds
from kp_runtime.compare.golden import compare_to_golden, save_golden
from kp_runtime.compare.tolerance import DEFAULT_QUANT_STEPS, parse_tolerance_args

__all__ = ["register", "add_arguments", "run", "main", "ProgressBar"]

EXIT_PASSED, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
DEFAULT_RANDOM_FEEDS = 10
PROG = "kp-runtime compare"


class UsageError(ValueError):
    """A command-line argument is wrong (exit status 2)."""


class ProgressBar:
    """``[#####-----]  5/10 feeds`` redrawn in place on a terminal; silent when disabled."""

    def __init__(self, label: str, stream: TextIO | None = None, enabled: bool | None = None, width: int = 30) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = (getattr(self.stream, "isatty", lambda: False)()) if enabled is None else enabled
        self.label = label
        self.width = width
        self._drawn = False

    def __call__(self, done: int, total: int | None) -> None:
        if not self.enabled:
            return
        if total:
            filled = int(self.width * min(done, total) / total)
            bar = "#" * filled + "-" * (self.width - filled)
            text = f"\r{self.label} [{bar}] {done}/{total} feeds"
        else:
            text = f"\r{self.label} {done} feeds"
        self.stream.write(text)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``compare`` arguments to ``parser``."""
    parser.add_argument("model", metavar="MODEL", help="model file, run by every provider")
    parser.add_argument(
        "--providers", nargs="+", required=True, metavar="PROVIDER",
        help="two providers to compare (candidate first, reference second), "
        "or one with --save-golden/--golden",
    )
    parser.add_argument(
        "--reference-model", metavar="PATH",
        help="a different model file for the second provider (e.g. the ONNX a NEF was compiled from)",
    )
    parser.add_argument(
        "--provider-option", action="append", default=[], metavar="[PROVIDER:]KEY=VALUE",
        help="a provider option; without PROVIDER: it goes to the first provider (repeatable)",
    )
    feeds = parser.add_argument_group("feeds")
    feeds.add_argument(
        "--inputs", default="random", metavar="random|PATH",
        help="'random' (default), or an .npz/.npy file or a folder of them (see docs/compare.md)",
    )
    feeds.add_argument(
        "-n", "--num-feeds", type=int, metavar="N",
        help=f"number of feeds (random: default {DEFAULT_RANDOM_FEEDS}; files/golden: at most N)",
    )
    feeds.add_argument("--seed", type=int, default=0, help="random feeds: seed (default 0)")
    feeds.add_argument(
        "--val-range", nargs=2, type=float, metavar=("LOW", "HIGH"),
        help="random feeds: value range (default 0 1)",
    )
    feeds.add_argument(
        "--shape", action="append", default=[], metavar="INPUT:D0,D1,...",
        help="random feeds: concrete shape for an input with symbolic dims (default: those dims are 1)",
    )
    tol = parser.add_argument_group("tolerances (NUMBER for all outputs, OUTPUT:NUMBER for one)")
    tol.add_argument("--atol", nargs="+", metavar="TOL", help="absolute tolerance (default: 1e-5, or from quantisation)")
    tol.add_argument("--rtol", nargs="+", metavar="TOL", help="relative tolerance (default 1e-5)")
    tol.add_argument("--min-cosine", nargs="+", metavar="TOL", help="smallest per-feed cosine similarity accepted")
    tol.add_argument("--min-snr", nargs="+", metavar="DB", help="smallest per-feed SNR (dB) accepted")
    tol.add_argument("--min-top1", nargs="+", metavar="FRACTION", help="smallest top-1 agreement accepted (0..1)")
    tol.add_argument("--top-k", type=int, default=5, metavar="K", help="k of the top-k agreement (default 5)")
    tol.add_argument(
        "--quant-steps", type=float, default=DEFAULT_QUANT_STEPS, metavar="K",
        help=f"quantised outputs: default atol in LSBs (default {DEFAULT_QUANT_STEPS:g})",
    )
    tol.add_argument(
        "--no-input-effect", action="store_true",
        help="do not measure the input-rounding effect of a quantised session",
    )
    golden = parser.add_mutually_exclusive_group()
    golden.add_argument("--save-golden", metavar="DIR", help="record the (single) provider's outputs in DIR")
    golden.add_argument("--golden", metavar="DIR", help="compare the (single) provider against the golden set in DIR")
    parser.add_argument("--overwrite", action="store_true", help="with --save-golden: replace an existing golden set")
    parser.add_argument("--report", metavar="OUT.json", help="also write the report as JSON")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bar; print only the verdict")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``compare`` subcommand (the ``kp_runtime.cli`` module convention)."""
    parser = subparsers.add_parser(
        "compare",
        help="compare two providers' outputs (or one against golden outputs)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    parser.set_defaults(func=run)


def _provider_options(specs: Sequence[str], providers: Sequence[str]) -> list[dict[str, str]]:
    options: list[dict[str, str]] = [{} for _ in providers]
    lowered = [p.lower() for p in providers]
    for spec in specs:
        key_part, sep, value = spec.partition("=")
        if not sep or not key_part:
            raise UsageError(f"--provider-option expects [PROVIDER:]KEY=VALUE, got {spec!r}")
        provider, colon, key = key_part.rpartition(":")
        index = 0
        if colon:
            if provider.lower() not in lowered:
                raise UsageError(f"--provider-option {spec!r}: {provider!r} is not one of --providers {list(providers)}")
            index = lowered.index(provider.lower())
        if not key:
            raise UsageError(f"--provider-option {spec!r}: empty KEY")
        options[index][key] = value
    return options


def _shapes(specs: Sequence[str]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for spec in specs:
        name, sep, dims = spec.rpartition(":")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(",")) if dims else ()
        except ValueError:
            raise UsageError(f"--shape expects INPUT:D0,D1,... with integer dims, got {spec!r}") from None
    return shapes


def _tolerances(args: argparse.Namespace) -> dict[str, Any]:
    fields = {"atol": args.atol, "rtol": args.rtol, "min_cosine": args.min_cosine,
              "min_snr_db": args.min_snr, "min_top1": args.min_top1}
    try:
        return {name: parse_tolerance_args(values, name) for name, values in fields.items()}
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _check_mode(args: argparse.Namespace) -> None:
    golden_mode = args.save_golden or args.golden
    if golden_mode and len(args.providers) != 1:
        flag = "--save-golden" if args.save_golden else "--golden"
        raise UsageError(f"{flag} takes exactly one provider, got --providers {args.providers}")
    if not golden_mode and len(args.providers) != 2:
        raise UsageError(f"compare needs exactly two providers (or one with --golden/--save-golden), got {args.providers}")
    if args.golden and args.inputs != "random":
        raise UsageError("--golden compares on the recorded feeds; --inputs cannot be used with it")
    if args.num_feeds is not None and args.num_feeds < 1:
        raise UsageError(f"-n must be >= 1, got {args.num_feeds}")
    if args.reference_model and golden_mode:
        raise UsageError("--reference-model needs two providers")
    if args.overwrite and not args.save_golden:
        raise UsageError("--overwrite only applies to --save-golden")
    if args.top_k < 1:
        raise UsageError(f"--top-k must be >= 1, got {args.top_k}")
    if not args.quant_steps >= 0:
        raise UsageError(f"--quant-steps must be >= 0, got {args.quant_steps}")


def _feeds(args: argparse.Namespace, session: Any) -> Sequence[dict[str, Any]]:
    if args.inputs == "random":
        value_range = tuple(args.val_range) if args.val_range else None
        n = args.num_feeds or DEFAULT_RANDOM_FEEDS
        return random_feeds(session, n, seed=args.seed, value_range=value_range, shapes=_shapes(args.shape))
    if args.val_range or args.shape:
        raise UsageError("--val-range and --shape apply to random feeds only")
    return load_feeds(args.inputs, session, limit=args.num_feeds)


def _session(model: str, provider: str, options: dict[str, str]) -> Any:
    from kp_runtime.session import InferenceSession

    return InferenceSession(model, providers=[provider], provider_options=[options])


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the ``compare`` command; returns the exit status (errors other than a failed comparison raise)."""
    out = stdout if stdout is not None else sys.stdout
    _check_mode(args)
    tolerances = _tolerances(args)
    options = _provider_options(args.provider_option, args.providers)
    session_a = _session(args.model, args.providers[0], options[0])
    bar = ProgressBar("compare", stream=stderr, enabled=False if args.quiet else None)
    try:
        if args.save_golden:
            golden = save_golden(
                session_a, _feeds(args, session_a), args.save_golden,
                model=args.model, overwrite=args.overwrite, progress=bar,
            )
            bar.close()
            print(f"saved {len(golden)} feed(s) of {golden.metadata['provider']} outputs to {args.save_golden}", file=out)
            golden.close()
            return EXIT_PASSED
        kwargs = dict(
            tolerances, top_k=args.top_k, quant_steps=args.quant_steps,
            input_effect=not args.no_input_effect, progress=bar,
        )
        if args.golden:
            report = compare_to_golden(session_a, args.golden, model=args.model, limit=args.num_feeds, **kwargs)
        else:
            model_b = args.reference_model or args.model
            session_b = _session(model_b, args.providers[1], options[1])
            report = compare(session_a, session_b, _feeds(args, session_a), **kwargs)
    finally:
        bar.close()
    if args.report:
        report.to_json(args.report)
    text = str(report)
    print(text.splitlines()[-1] if args.quiet else text, file=out)
    return EXIT_PASSED if report.passed else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Standalone entry point (``python -m kp_runtime.compare``); same arguments as ``kp-runtime compare``."""
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__)
    add_arguments(parser)
    try:
        args = parser.parse_args(argv)
        return run(args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - CLI contract: one line on stderr, exit 2
        text = " ".join((str(exc) or type(exc).__name__).split())
        print(f"{PROG}: error: {type(exc).__name__}: {text}", file=sys.stderr)
        return EXIT_ERROR
