"""``kp-runtime run MODEL``: run a model once on inputs from ``.npy`` files."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from kp_runtime.cli import fail
from kp_runtime.session import InferenceSession


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run",
        help="run a model once",
        description="Run MODEL once and print (or save) its outputs.",
    )
    parser.add_argument("model", metavar="MODEL", help="model file (e.g. .onnx)")
    parser.add_argument(
        "--provider", "-p", action="append", metavar="NAME",
        help="provider name or alias; repeat to give a preference order (default: best available)",
    )
    parser.add_argument(
        "--input", "-i", action="append", default=[], metavar="NAME=FILE.npy",
        help="an input array from a .npy file; repeat for each input",
    )
    parser.add_argument("--output", "-o", metavar="OUT.npz", help="save outputs, keyed by output name")
    parser.set_defaults(func=run)


def parse_inputs(specs: list[str]) -> dict[str, np.ndarray]:
    feeds: dict[str, np.ndarray] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            fail(f"--input expects NAME=FILE.npy, got {spec!r}")
        if name in feeds:
            fail(f"input {name!r} given twice")
        path = Path(file)
        if not path.is_file():
            fail(f"input file {file!r} for {name!r} does not exist")
        try:
            feeds[name] = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            fail(f"cannot read {file!r} as a .npy array: {exc}")
    return feeds


def run(args: argparse.Namespace) -> int:
    feeds = parse_inputs(args.input)
    with InferenceSession(args.model, providers=args.provider) as session:
        names = [o.name for o in session.get_outputs()]
        results = session.run(None, feeds)
        provider = session.get_providers()[0]
    print(f"provider: {provider}")
    for name, value in zip(names, results):
        array = np.asarray(value)
        print(f"{name}: {array.dtype} {list(array.shape)}")
        print(np.array2string(array, threshold=20, edgeitems=3, precision=6))
    if args.output:
        np.savez(args.output, **{name: np.asarray(v) for name, v in zip(names, results)})
        print(f"saved {len(results)} output(s) to {args.output}")
    return 0
