"""``kp-runtime inspect MODEL.nef [--json]`` (and ``python -m kp_backend.nef``).

The JSON form is a fixed schema (keys in this order, lists in file order)::

    {"chip": "KL520", "models": [{"id": 32, "version": 45197, "max_raw_out_size": 123,
      "inputs": [NODE], "outputs": [NODE]}]}

    NODE = {"index": 0, "name": "", "shape_npu": [1, 3, 200, 200],
            "shape_onnx": [1, 3, 200, 200], "layout": "4W4C8B",
            "quantization": {"axis": 1, "radix": [8], "scale": [1.0]}}

Errors print one line to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from kp_runtime.errors import KpRuntimeError

from kp_backend.nef.model import NefFile, TensorInfo
from kp_backend.nef.reader import read_nef

__all__ = ["inspect_dict", "format_table", "register_commands", "main", "EXIT_ERROR"]

EXIT_ERROR = 2
_MAX_LISTED = 4  # per-channel entries shown in the table before eliding


def _node(t: TensorInfo) -> dict:
    q = t.quantization
    return {
        "index": t.index,
        "name": t.name,
        "shape_npu": list(t.shape_npu),
        "shape_onnx": list(t.shape_onnx),
        "layout": t.data_layout.layout_name,
        "quantization": {"axis": q.axis, "radix": list(q.radix),
                         "scale": [float(s) for s in q.scale]},
    }


def inspect_dict(nef: NefFile) -> dict:
    """The ``--json`` document for ``nef``."""
    return {
        "chip": nef.target_chip.name,
        "models": [{"id": m.id, "version": m.version, "max_raw_out_size": m.max_raw_out_size,
                    "inputs": [_node(t) for t in m.inputs],
                    "outputs": [_node(t) for t in m.outputs]} for m in nef.models],
    }


def _shape(shape: Sequence[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def _values(values: Sequence) -> str:
    shown = ",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in values[:_MAX_LISTED])
    more = f",... ({len(values)})" if len(values) > _MAX_LISTED else ""
    return shown + more


def format_table(nef: NefFile, title: str = "") -> str:
    """The human-readable listing."""
    schema = ".".join(map(str, nef.schema_version))
    enc = f"mode {nef.encryption_mode}" if nef.encryption_mode else "none"
    lines = [f"{title + ': ' if title else ''}{nef.target_chip.name} NEF, schema {schema}, "
             f"{len(nef.models)} model(s), crc 0x{nef.crc:08x}, kn_number 0x{nef.kn_number:08x}, "
             f"encryption {enc}"]
    for label, text in (("compiler", nef.compiler_version),
                        ("toolchain", nef.toolchain_version.strip()),
                        ("platform", nef.platform)):
        if text:
            lines.append(f"  {label}: {text}")
    head = ("kind", "idx", "name", "shape_npu", "shape_onnx", "layout", "axis", "radix", "scale")
    for m in nef.models:
        lines.append("")
        lines.append(f"model {m.id}  version 0x{m.version:x}  max_raw_out_size "
                     f"{m.max_raw_out_size}  setup {m.setup_format.value}  "
                     f"target {m.target_chip.name}")
        rows = [head]
        for kind, nodes in (("input", m.inputs), ("output", m.outputs)):
            for t in nodes:
                q = t.quantization
                rows.append((kind, str(t.index), t.name or "-", _shape(t.shape_npu),
                             _shape(t.shape_onnx), t.data_layout.layout_name, str(q.axis),
                             _values(q.radix), _values(q.scale)))
        widths = [max(len(r[k]) for r in rows) for k in range(len(head))]
        lines.extend("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()
                     for r in rows)
    return "\n".join(lines)


def _inspect(args: argparse.Namespace) -> int:
    prog = getattr(args, "prog_name", "inspect")
    try:
        nef = read_nef(args.model)
    except KpRuntimeError as exc:
        print(f"{prog}: error: {exc.text}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(inspect_dict(nef)))
    else:
        print(format_table(nef, str(args.model)))
    return 0


def _add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="path of a .nef file")
    parser.add_argument("--json", action="store_true", help="print the fixed JSON schema")
    parser.set_defaults(func=_inspect)


def register_commands(subparsers) -> None:
    """Add ``inspect`` to a ``kp-runtime`` subparsers object; ``args.func(args)`` returns
    the exit code."""
    parser = subparsers.add_parser(
        "inspect", help="show the models, nodes and quantisation of a NEF file",
        description="Show the models, input/output nodes and quantisation of a NEF file.")
    _add_arguments(parser)
    parser.set_defaults(prog_name="kp-runtime inspect")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kp_backend.nef MODEL.nef [--json]``."""
    parser = argparse.ArgumentParser(prog="python -m kp_backend.nef",
                                     description="Show what a NEF file holds.")
    _add_arguments(parser)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse already printed its one-line usage error
        return int(exc.code or 0)
    args.prog_name = parser.prog
    return args.func(args)
