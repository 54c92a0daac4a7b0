"""``kp-runtime build-nef``: a NEF "twin" of an ONNX model, for the virtual dongle.

The NEF holds the model's input/output nodes (shapes, layouts, quantisation) and **no NPU
program**: its command and weight blocks are placeholders, so it runs on the virtual dongle
only (which computes the outputs from the companion ONNX, quantised with these
parameters). A real dongle would load it and compute garbage. The file says so in its
header (``toolchain_version``, ``platform``), and ``--help`` and the docs say so too.

Quantisation rule (symmetric 8-bit, per tensor, from the ranges of the calibration set;
``max_abs`` is the largest absolute value a tensor takes over all samples):

* ``max_abs`` is first rounded **up** to 12 significant bits, so that ulp-level differences
  between BLAS libraries cannot change the file; a tensor that is 0 everywhere uses 1.0;
* **outputs**: ``radix = floor(log2(127 / max_abs))``, ``scale = 127 / (max_abs * 2**radix)``,
  so ``scale`` is in [1, 2) as in Kneron's own NEFs and ``max_abs`` maps to 127;
* **inputs**: ``scale = 1`` and ``radix = floor(log2(128 / max_abs))``: a power of two only,
  which is what the device's hardware normalisation produces (``u/256 - 0.5`` in
  [-0.5, 0.496] gets radix 8, exactly as Kneron's image models); a positive extreme of exactly
  ``128 / 2**radix`` saturates to 127.

Layouts: inputs 4W4C8B, outputs 16W1C8B (both chips' defaults). NPU shapes: the ONNX shape
with trailing 1s up to ``[1, C, H, W]`` (rank 2..4, batch 1; a symbolic batch becomes 1).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

from kp_runtime.errors import InvalidArgument, InvalidGraph
from kp_runtime.node_arg import NodeArg
from kp_runtime.onnx_model import describe

from kp_backend.nef import build_simple_nef
from kp_backend.npu_types import Chip, parse_chip

__all__ = ["TensorRange", "QuantParams", "input_quant", "output_quant", "calibration_ranges",
           "build_nef", "register", "VIRTUAL_ONLY_NOTE", "DEFAULT_MODEL_ID"]

#: Written into the NEF header (``toolchain_version``) of every file built here.
VIRTUAL_ONLY_NOTE = ("kp-runtime build-nef v1: VIRTUAL DONGLE ONLY - no NPU program, "
                     "outputs come from the companion ONNX")
PLATFORM_TAG = "kp-runtime-virtual"
DEFAULT_MODEL_ID = 32768
INPUT_LAYOUT = "4W4C8B"
OUTPUT_LAYOUT = "16W1C8B"
SUPPORTED_CHIPS = (Chip.KL520, Chip.KL720)
_RANGE_BITS = 12


@dataclass(frozen=True)
class QuantParams:
    radix: int
    scale: float


@dataclass(frozen=True)
class TensorRange:
    name: str
    max_abs: float


def _rounded_max(max_abs: float) -> float:
    if not math.isfinite(max_abs):
        raise InvalidArgument(f"calibration produced a non-finite value ({max_abs})")
    if max_abs <= 0.0:
        return 1.0
    mantissa, exponent = math.frexp(max_abs)  # max_abs = mantissa * 2**exponent, 0.5 <= m < 1
    return math.ldexp(math.ceil(math.ldexp(mantissa, _RANGE_BITS)), exponent - _RANGE_BITS)


def output_quant(max_abs: float) -> QuantParams:
    """Output rule of the module docstring."""
    m = _rounded_max(max_abs)
    radix = math.floor(math.log2(127.0 / m))
    return QuantParams(radix, 127.0 / (m * 2.0 ** radix))


def input_quant(max_abs: float) -> QuantParams:
    """Input rule of the module docstring."""
    return QuantParams(math.floor(math.log2(128.0 / _rounded_max(max_abs))), 1.0)


def _npu_shape(arg: NodeArg, kind: str) -> list[int]:
    dims = list(arg.shape)
    if not arg.rank_known or not 2 <= len(dims) <= 4:
        raise InvalidGraph(f"build-nef: {kind} '{arg.name}' has shape {arg.shape}; expected "
                           "rank 2 to 4 ([N, C], [N, C, H] or [N, C, H, W])")
    if not isinstance(dims[0], int):
        dims[0] = 1
    if any(not isinstance(d, int) or d < 1 for d in dims[1:]) or dims[0] != 1:
        raise InvalidGraph(f"build-nef: {kind} '{arg.name}' has shape {arg.shape}; expected "
                           "batch 1 and fixed positive dimensions")
    return dims + [1] * (4 - len(dims))


def _load_samples(calibration: str | Path | Mapping[str, Any],
                  inputs: list[NodeArg]) -> dict[str, np.ndarray]:
    if isinstance(calibration, Mapping):
        arrays = {str(k): np.asarray(v) for k, v in calibration.items()}
        where = "calibration samples"
    else:
        where = str(calibration)
        try:
            with np.load(calibration, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"{where}: not a readable .npz file ({exc})") from exc
    names = [a.name for a in inputs]
    missing = [n for n in names if n not in arrays]
    extra = sorted(set(arrays) - set(names))
    if missing or extra:
        raise InvalidArgument(f"{where}: expected one array per model input {names}; "
                              f"missing {missing}, unexpected {extra}")
    counts = set()
    samples = {}
    for arg in inputs:
        arr = arrays[arg.name]
        shape = [1 if not isinstance(d, int) else d for d in arg.shape]
        if arr.ndim != len(shape) + 1 or list(arr.shape[1:]) != shape:
            raise InvalidArgument(f"{where}: array '{arg.name}' has shape {list(arr.shape)}; "
                                  f"expected [samples, {', '.join(map(str, shape))}]")
        if arr.dtype.kind not in "fiu":
            raise InvalidArgument(f"{where}: array '{arg.name}' has dtype {arr.dtype}; "
                                  "expected numbers")
        counts.add(arr.shape[0])
        samples[arg.name] = arr.astype(np.float32)
    if len(counts) != 1 or 0 in counts:
        raise InvalidArgument(f"{where}: every array needs the same number (>= 1) of samples, "
                              f"got {sorted(counts)}")
    return samples


def calibration_ranges(model: onnx.ModelProto, samples: Mapping[str, np.ndarray]
                       ) -> tuple[list[TensorRange], list[TensorRange]]:
    """``max_abs`` of every input and output over the calibration samples."""
    sig = describe(model)
    evaluator = ReferenceEvaluator(model)
    count = next(iter(samples.values())).shape[0]
    in_max = {a.name: float(np.max(np.abs(samples[a.name]))) for a in sig.inputs}
    out_max = {a.name: 0.0 for a in sig.outputs}
    for i in range(count):
        results = evaluator.run(None, {name: arr[i] for name, arr in samples.items()})
        for arg, value in zip(sig.outputs, results):
            value = np.asarray(value, dtype=np.float64)
            if value.size:
                out_max[arg.name] = max(out_max[arg.name], float(np.max(np.abs(value))))
    return ([TensorRange(n, v) for n, v in in_max.items()],
            [TensorRange(n, v) for n, v in out_max.items()])


def build_nef(model: str | Path | onnx.ModelProto, chip: Chip | str | int,
              calibration: str | Path | Mapping[str, Any], *,
              model_id: int = DEFAULT_MODEL_ID) -> bytes:
    """NEF bytes for ``model`` on ``chip`` (virtual dongle only; module docstring)."""
    chip = parse_chip(chip)
    if chip not in SUPPORTED_CHIPS:
        raise InvalidArgument(f"build-nef supports {[c.name for c in SUPPORTED_CHIPS]}, "
                              f"not {chip.name}")
    if not 0 <= int(model_id) < 2**32:
        raise InvalidArgument(f"model id {model_id} must be in 0..2**32-1")
    proto = model if isinstance(model, onnx.ModelProto) else onnx.load_model(str(model))
    name = "" if isinstance(model, onnx.ModelProto) else Path(model).name
    sig = describe(proto)
    if chip is Chip.KL520 and len(sig.inputs) != 1:
        raise InvalidGraph(f"a KL520 model has exactly one input; this ONNX has "
                           f"{[a.name for a in sig.inputs]}")
    in_shapes = [_npu_shape(a, "input") for a in sig.inputs]
    out_shapes = [_npu_shape(a, "output") for a in sig.outputs]
    for arg in sig.inputs + sig.outputs:
        if arg.type != "tensor(float)":
            raise InvalidGraph(f"build-nef: '{arg.name}' is {arg.type}; expected tensor(float)")
    ranges_in, ranges_out = calibration_ranges(proto, _load_samples(calibration, sig.inputs))
    inputs = []
    for shape, rng in zip(in_shapes, ranges_in):
        q = input_quant(rng.max_abs)
        inputs.append({"shape": shape, "layout": INPUT_LAYOUT, "radix": q.radix,
                       "scale": q.scale, "name": rng.name})
    outputs = []
    for shape, rng in zip(out_shapes, ranges_out):
        q = output_quant(rng.max_abs)
        outputs.append({"shape": shape, "layout": OUTPUT_LAYOUT, "radix": q.radix,
                        "scale": q.scale, "name": rng.name})
    return build_simple_nef(chip, [{"id": int(model_id), "inputs": inputs, "outputs": outputs,
                                    "name": name}],
                            platform=PLATFORM_TAG, toolchain_version=VIRTUAL_ONLY_NOTE)


# --------------------------------------------------------------------------- CLI

_HELP = ("Build a NEF from an ONNX model and calibration samples. The NEF holds no NPU "
         "program: it runs on the VIRTUAL dongle only (device='virtual'), whose outputs come "
         "from the companion ONNX quantised with the NEF's parameters.")
_EPILOG = ("Calibration file: an .npz with one array per model input, named like the input, "
           "with a leading sample axis. Quantisation (symmetric int8, per tensor): outputs "
           "radix = floor(log2(127/max_abs)), scale = 127/(max_abs*2^radix); inputs scale 1, "
           "radix = floor(log2(128/max_abs)). Layouts: inputs 4W4C8B, outputs 16W1C8B.")


def _run(args: argparse.Namespace) -> int:
    data = build_nef(args.model, args.chip, args.calibration, model_id=args.model_id)
    out = Path(args.output)
    out.write_bytes(data)
    print(f"wrote {out} ({len(data)} bytes, {parse_chip(args.chip).name}, model id "
          f"{args.model_id}; virtual dongle only)")
    return 0


def register(subparsers: Any) -> None:
    """Add ``build-nef`` to ``kp-runtime``'s subcommands."""
    parser = subparsers.add_parser("build-nef", help="build a virtual-dongle-only NEF twin of "
                                   "an ONNX model", description=_HELP, epilog=_EPILOG)
    parser.add_argument("model", help="the ONNX model")
    parser.add_argument("--chip", required=True, type=str.upper,
                        choices=[c.name for c in SUPPORTED_CHIPS], help="target chip")
    parser.add_argument("--calibration", required=True, metavar="SAMPLES.npz",
                        help="calibration samples (one array per input, leading sample axis)")
    parser.add_argument("-o", "--output", required=True, metavar="MODEL.nef",
                        help="where to write the NEF")
    parser.add_argument("--model-id", type=int, default=DEFAULT_MODEL_ID,
                        help=f"NEF model id (default {DEFAULT_MODEL_ID})")
    parser.set_defaults(func=_run)

