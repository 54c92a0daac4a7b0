"""Throughput of the NPU layout codecs (``kp_backend.layouts``) and their speed-up over the
per-element reference implementation kept in ``tests/layouts/reference.py``.

Cases (from the layouts issue): decode a 1x255x80x80 int8 16W1C8B KL720 node, decode a
1x1000 node, encode a 1x3x224x224 float input (KL720 4W4C8B), and the provider's hot case:
``encode_node_into`` of that input into a reused KL520 4W4C8B buffer. MB/s counts the bytes
of the raw node for decoding and of the float32 input for encoding. The reference is timed on a
smaller node of the same layout (it needs seconds per megabyte); ratios compare MB/s.

``python -m benchmarks.bench_layouts`` prints the table.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

from kp_backend.layouts import decode_node, encode_node, encode_node_into, node_buffer_size
from kp_backend.layouts import plans

_REFERENCE = Path(__file__).resolve().parents[1] / "tests" / "layouts" / "reference.py"


def _reference():
    """The test suite's reference implementation, imported by path (one copy of it)."""
    name = "kp_layouts_reference"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, _REFERENCE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _best(fn, repeat: int, number: int) -> float:
    """Best per-call time in seconds over ``repeat`` rounds of ``number`` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - start) / number)
    return best


def _metric(value: float, unit: str, target: float | None, note: str) -> dict:
    ok = None if target is None else bool(value >= target)
    return {"value": float(value), "unit": unit, "target": target, "ok": ok, "note": note}


def _raw(kw: dict, seed: int = 0) -> bytes:
    size = node_buffer_size(chip=kw["chip"], layout=kw["layout"], shape=kw["shape"], output=True)
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


def run(quick: bool = False) -> dict[str, dict]:
    ref = _reference()
    repeat, number = (3, 3) if quick else (7, 10)
    out: dict[str, dict] = {}

    big = dict(chip="KL720", layout="16W1C8B", shape=(1, 255, 80, 80), radix=4, scale=0.613)
    raw = _raw(big)
    plans._decode_plan_cached.cache_clear()
    start = time.perf_counter()
    decode_node(raw, **big)
    first = time.perf_counter() - start
    t_float = _best(lambda: decode_node(raw, **big), repeat, number)
    t_fixed = _best(lambda: decode_node(raw, as_float=False, **big), repeat, number)
    mb = len(raw) / 1e6
    out["decode_mb_s"] = _metric(mb / t_float, "MB/s", 200.0,
                                 "KL720 16W1C8B 1x255x80x80 -> float32 (CHW)")
    out["decode_fixed_mb_s"] = _metric(mb / t_fixed, "MB/s", 200.0,
                                       "same node -> int8 fixed-point view")
    out["decode_plan_build_ms"] = _metric(first * 1e3, "ms", None,
                                          f"first decode incl. planning; cached: {t_float * 1e3:.2f} ms")

    small = dict(big, shape=(1, 16, 8, 20) if quick else (1, 32, 10, 40))
    small_raw = _raw(small)
    t_ref = _best(lambda: ref.ref_decode(small_raw, **small), 1, 1)
    ref_mb_s = len(small_raw) / 1e6 / t_ref
    out["decode_ratio"] = _metric((mb / t_float) / ref_mb_s, "x", 50.0,
                                  f"vs per-element reference ({ref_mb_s:.2f} MB/s on {small['shape']})")

    for name, node in (
        ("decode_1000", dict(chip="KL720", layout="16W1C8B", shape=(1, 1000, 1, 1), radix=7,
                             scale=1.0)),
        ("decode_1000_kl730", dict(chip="KL730", layout="RAW_8B", shape=(1, 1000), radix=7,
                                   scale=1.0)),
    ):
        node_raw = _raw(node)
        t = _best(lambda: decode_node(node_raw, **node), repeat, number * 10)
        out[f"{name}_us"] = _metric(t * 1e6, "us", None,
                                    f"{node['chip']} {node['layout']} {node['shape']} -> float32, "
                                    f"{len(node_raw) / 1e6 / t:.0f} MB/s")

    enc = dict(chip="KL720", layout="4W4C8B", shape=(1, 3, 224, 224), radix=7, scale=1.0)
    x = np.random.default_rng(1).uniform(-1, 1, enc["shape"]).astype(np.float32)
    t_enc = _best(lambda: encode_node(x, **enc), repeat, number)
    out["encode_mb_s"] = _metric(x.nbytes / 1e6 / t_enc, "MB/s", 100.0,
                                 "float32 1x3x224x224 -> KL720 4W4C8B (roundf)")
    enc730 = dict(enc, chip="KL730", shape=(1, 3, 224, 224))
    t_730 = _best(lambda: encode_node(x, **enc730), repeat, number)
    out["encode_kl730_mb_s"] = _metric(x.nbytes / 1e6 / t_730, "MB/s", 100.0,
                                       "same input -> KL730 4W4C8B (kneron_round)")
    enc520 = dict(enc, chip="KL520")
    node = bytearray(node_buffer_size(chip="KL520", layout="4W4C8B", shape=enc["shape"]))
    t_into = _best(lambda: encode_node_into(node, x, **enc520), repeat, number)
    out["encode_into_us"] = _metric(t_into * 1e6, "us", None,
                                    "float32 1x3x224x224 -> KL520 4W4C8B (roundf) written into "
                                    "a reused buffer (provider hot path)")
    small_enc = dict(enc, shape=(1, 3, 16, 16) if quick else (1, 3, 40, 40))
    xs = x[:, :, : small_enc["shape"][2], : small_enc["shape"][3]].copy()
    t_ref_enc = _best(lambda: ref.ref_encode(xs, **small_enc), 1, 1)
    ref_enc_mb_s = xs.nbytes / 1e6 / t_ref_enc
    out["encode_ratio"] = _metric((x.nbytes / 1e6 / t_enc) / ref_enc_mb_s, "x", 50.0,
                                  f"vs per-element reference ({ref_enc_mb_s:.2f} MB/s)")
    return out


if __name__ == "__main__":  # pragma: no cover - manual use
    for key, m in run(quick="--quick" in sys.argv).items():
        flag = "" if m["ok"] is None else ("ok" if m["ok"] else "BELOW TARGET")
        print(f"{key:24s} {m['value']:12.2f} {m['unit']:5s} {flag:12s} {m['note']}")
