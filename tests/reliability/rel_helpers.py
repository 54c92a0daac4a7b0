"""Helpers of the reliability tests (issue 10): scaling, models, seed-API plumbing."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

from kp_backend import kp
from kp_backend.nef import build_simple_nef, read_nef

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "examples" / "digits"
if str(DIGITS) not in sys.path:
    sys.path.insert(0, str(DIGITS))

import digits_data  # noqa: E402

__all__ = ["LONG", "scaled", "DIGITS", "digits_data", "SMALL_ID", "small_nef", "kp_connect",
           "bypass_send", "bypass_receive", "run_threads", "kneron_threads", "wait_until"]

#: ``KP_LONG=1`` turns the CI-sized counts into the documented long runs.
LONG = os.environ.get("KP_LONG", "") == "1"


def scaled(ci: int, long: int) -> int:
    """``ci`` in CI, ``long`` with ``KP_LONG=1``."""
    return long if LONG else ci


SMALL_ID = 21


def small_nef(chip: str = "KL520") -> bytes:
    """A one-input, two-output NEF (pseudo-random outputs on the virtual dongle)."""
    return build_simple_nef(chip, [{
        "id": SMALL_ID, "version": 1,
        "inputs": [{"shape": [1, 3, 8, 8], "layout": "4W4C8B", "radix": 7}],
        "outputs": [{"shape": [1, 10, 1, 1], "layout": "16W1C8B", "radix": 4, "scale": 1.5},
                    {"shape": [1, 4, 2, 2], "layout": "16W1C8B", "radix": 3, "scale": 1.0}],
    }])


def input_size(nef: bytes) -> int:
    return read_nef(nef).model(SMALL_ID).input_mem_len


def payload(i: int, size: int) -> bytes:
    """The deterministic NPU input of request ``i``."""
    return np.random.default_rng(i).integers(-128, 128, size, dtype=np.int8).tobytes()


def kp_connect(backend, nef: bytes, timeout_ms: int = 2000):
    """A seed-API group with ``nef`` loaded: ``(group, descriptor)``."""
    g = kp.core.connect_devices([0], backend=backend)
    kp.core.set_timeout(g, timeout_ms)
    return g, kp.core.load_model(g, nef)


def bypass_send(g, number: int, data: bytes) -> None:
    h = kp.GenericRawBypassPreProcImageHeader(model_id=SMALL_ID, inference_number=number,
                                              image_buffer_size=len(data))
    kp.inference.generic_raw_inference_bypass_pre_proc_send(g, h, data)


def bypass_receive(g, desc, outputs: int = 2):
    """``(inference_number, [float node 0, float node 1])`` of the next result (the nodes
    the model has, whatever the result's own node count says)."""
    h = kp.GenericRawBypassPreProcImageHeader(model_id=SMALL_ID)
    r = kp.inference.generic_raw_inference_bypass_pre_proc_receive(g, h, desc)
    chw = kp.ChannelOrdering.KP_CHANNEL_ORDERING_CHW
    nodes = [kp.inference.generic_inference_retrieve_float_node(i, r, chw).ndarray.copy()
             for i in range(outputs)]
    return r.header.inference_number, nodes


def run_threads(target, args_list, timeout_s: float) -> list:
    """Run ``target(*args)`` per entry in threads; results in order. A thread still alive
    after ``timeout_s`` (a hang) or an exception is an ``AssertionError``."""
    results: list = [None] * len(args_list)
    errors: list = []

    def body(i, args):
        try:
            results[i] = target(*args)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i, a), daemon=True)
               for i, a in enumerate(args_list)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout_s
    for t in threads:
        t.join(max(deadline - time.monotonic(), 0))
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"threads still running after {timeout_s} s: {alive}"
    if errors:
        raise errors[0]
    return results


def kneron_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate()
            if t.name.startswith(("kneron-", "kp-emu-")) and t.is_alive()]


def wait_until(predicate, timeout_s: float, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
