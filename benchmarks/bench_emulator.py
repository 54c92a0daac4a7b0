"""The virtual dongle's timing model and its own overhead (``kp_backend.emulator``).

* ``emulator_kl520_pipelined_fps`` / ``emulator_kl720_pipelined_fps``: a sender thread and a
  receiver thread push bypass inferences (a 3x112x112 4W4C8B input) through a *realistic*
  dongle over pyusb. The timing model bounds the rate at ``1 / max(NPU time, link time per
  inference)``; ``ok`` means the measured rate is within 60–105 % of that bound (the host
  pipeline reaches it, and nothing lets it exceed it).
* ``emulator_fast_roundtrip_ms``: one send + receive on a ``fast`` dongle: the emulator's own
  cost per inference, which every unit test pays.

``python -m benchmarks.bench_emulator`` prints the table.
"""

from __future__ import annotations

import struct
import threading
import time

import usb.core
import usb.util

from kp_backend.emulator import VirtualDongle, VirtualUsbBackend
from kp_backend.nef import build_simple_nef, read_nef
from kp_backend.protocol.constants import EP_BULK_IN, EP_BULK_OUT, FAKE_ZLP, VENDOR_ID, CommandId
from kp_backend.protocol.wire import (
    BypassRequestHeader,
    build_command,
    LoadModelRequest,
    fifoq_configure_setup,
    heap_boundary_setup,
)

MODEL_ID = 1
SHAPE = [1, 3, 112, 112]


def _nef(chip: str) -> bytes:
    return build_simple_nef(chip, [{
        "id": MODEL_ID,
        "inputs": [{"shape": SHAPE, "layout": "4W4C8B", "radix": 7}],
        "outputs": [{"shape": [1, 8, 7, 7], "layout": "16W1C8B", "radix": 4}]}])


def _write(dev, data: bytes, mps: int) -> None:
    for start in range(0, len(data), 2 * 1024 * 1024):
        dev.write(EP_BULK_OUT, data[start:start + 2 * 1024 * 1024], 5000)
    if len(data) % mps == 0:
        dev.write(EP_BULK_OUT, FAKE_ZLP, 5000)


def _read(dev, size: int, mps: int) -> bytes:
    data = bytes(dev.read(EP_BULK_IN, size, 5000))
    if len(data) == size and size % mps == 0:
        dev.read(EP_BULK_IN, 4, 5)
    return data


def _setup(chip: str, timing: str):
    dongle = VirtualDongle(chip, timing=timing)
    backend = VirtualUsbBackend([dongle])
    dev = usb.core.find(idVendor=VENDOR_ID, backend=backend)
    dev.set_configuration()
    usb.util.claim_interface(dev, 0)
    mps = dev[0][(0, 0)][0].wMaxPacketSize
    nef = read_nef(_nef(chip))
    _write(dev, LoadModelRequest(len(nef.all_models), bytes(nef.fw_info)).pack(), mps)
    assert _read(dev, 4, mps) == bytes(4)
    _write(dev, bytes(nef.all_models), mps)
    # GET_DDR_CONFIG, as Kneron's host does: its answer also orders the FIFO set-up after
    # the model upload on the device side
    _write(dev, build_command(CommandId.GET_DDR_CONFIG), mps)
    model_end = struct.unpack_from("<I", _read(dev, 16, mps), 8)[0]
    dev.ctrl_transfer(0x40, 0x84, *heap_boundary_setup(model_end))
    dev.ctrl_transfer(0x40, 0x82, *fifoq_configure_setup(3, 1_024_000, 3, 20_480))
    model = nef.models[0]
    data = bytes(112 * 112 * 4)  # 3 channels in one 4-channel block, 112 is a multiple of 16
    return backend, dongle, dev, mps, model.max_raw_out_size, data


def _pipelined(chip: str, count: int) -> tuple[float, float]:
    backend, dongle, dev, mps, out_size, data = _setup(chip, "realistic")
    header = BypassRequestHeader(0, MODEL_ID, len(data))
    try:
        def sender() -> None:
            for n in range(count):
                _write(dev, BypassRequestHeader(n, MODEL_ID, len(data)).pack(), mps)
                _write(dev, data, mps)

        start = time.perf_counter()
        t = threading.Thread(target=sender)
        t.start()
        for _ in range(count):
            raw = _read(dev, out_size, mps)
            assert struct.unpack_from("<I", raw, 12)[0] == 0
        t.join()
        elapsed = time.perf_counter() - start
        timing = dongle.timing
        link = (timing.transfer_time(len(header.pack())) + timing.transfer_time(len(data))
                + timing.transfer_time(out_size))
        if not timing.link.full_duplex:
            per = max(timing.npu_time(MODEL_ID), link)
        else:
            per = max(timing.npu_time(MODEL_ID), link - timing.transfer_time(out_size))
        return count / elapsed, 1.0 / per
    finally:
        usb.util.dispose_resources(dev)
        backend.close()


def _fast_roundtrip(count: int) -> float:
    backend, _, dev, mps, out_size, data = _setup("KL520", "fast")
    try:
        start = time.perf_counter()
        for n in range(count):
            _write(dev, BypassRequestHeader(n, MODEL_ID, len(data)).pack(), mps)
            _write(dev, data, mps)
            _read(dev, out_size, mps)
        return (time.perf_counter() - start) / count * 1000
    finally:
        usb.util.dispose_resources(dev)
        backend.close()


def run(quick: bool = False) -> dict[str, dict]:
    count = 20 if quick else 80
    out: dict[str, dict] = {}
    for chip in ("KL520", "KL720"):
        fps, bound = _pipelined(chip, count)
        out[f"emulator_{chip.lower()}_pipelined_fps"] = {
            "value": fps, "unit": "inferences/s", "target": bound,
            "ok": 0.6 * bound <= fps <= 1.05 * bound,
            "note": f"timing-model bound {bound:.1f}/s (max of NPU and link time), "
                    f"{count} bypass inferences of a 3x112x112 input",
        }
    ms = _fast_roundtrip(count)
    out["emulator_fast_roundtrip_ms"] = {
        "value": ms, "unit": "ms", "target": 10.0, "ok": ms <= 10.0,
        "note": "one 50 KB bypass send + result read on a timing='fast' KL520 (emulator overhead)",
    }
    return out


if __name__ == "__main__":
    for name, m in run().items():
        print(f"{name:36s} {m['value']:10.2f} {m['unit']:14s} target {m['target']:.2f} "
              f"ok={m['ok']}  {m['note']}")
