"""Model upload on a virtual KL520 (``kp_backend.device`` over ``kp_backend.emulator``).

``model_upload_efficiency``: the link model's ideal time for a 4 MB NEF's upload over the
measured time of ``DeviceGroup.load_model`` on a realistic (high-speed link) KL520. The ideal
is what the link model charges for the transfers the upload cannot avoid: the LOAD_MODEL
request, its 4-byte return code and ``all_models`` in the transport's 2 MiB pieces. The
measured time also holds the NEF parse, GET_MODEL_INFO (is a model loaded?), GET_DDR_CONFIG
and the two FIFO controls. Target >= 0.9.

The NEF is built (one KL520 model with a 4,000,000-byte weight block), so the figure does
not depend on ``../shared``; ``nef_read_ms`` (``bench_nef``) covers the largest real NEF.
"""

from __future__ import annotations

import statistics
import time

from kp_backend.device import DeviceGroup
from kp_backend.emulator import VirtualDongle, VirtualUsbBackend
from kp_backend.nef import build_simple_nef, read_nef
from kp_backend.protocol.constants import CHUNK_SIZE
from kp_backend.protocol.wire import LoadModelRequest

UPLOAD_TARGET = 0.9
WEIGHT_BYTES = 4_000_000


def upload_nef() -> bytes:
    """A KL520 NEF of about 4 MB (one model, 4,000,000 bytes of weight)."""
    return build_simple_nef("KL520", [{
        "id": 1, "inputs": [{"shape": [1, 3, 224, 224], "layout": "4W4C8B", "radix": 7}],
        "outputs": [{"shape": [1, 1000, 1, 1], "layout": "16W1C8B", "radix": 4}],
        "weight": bytes(range(256)) * (WEIGHT_BYTES // 256) + bytes(WEIGHT_BYTES % 256)}])


def ideal_upload_s(timing, nef_data: bytes) -> float:
    """Link-model time of the transfers a model upload cannot avoid."""
    nef = read_nef(nef_data)
    size = len(nef.all_models)
    request = len(LoadModelRequest(size, bytes(nef.fw_info)).pack())
    pieces = [min(CHUNK_SIZE, size - start) for start in range(0, size, CHUNK_SIZE)]
    return (timing.transfer_time(request) + timing.transfer_time(4)
            + sum(timing.transfer_time(n) for n in pieces))


def upload_efficiency(repeats: int) -> tuple[float, float, float, int]:
    """(efficiency, median measured s, ideal s, NEF bytes) over ``repeats`` fresh dongles."""
    data = upload_nef()
    times, ideal = [], 0.0
    for _ in range(repeats):
        dongle = VirtualDongle("KL520")
        with VirtualUsbBackend([dongle]) as backend:
            group = DeviceGroup.connect([dongle.port_id], backend)
            try:
                group.set_timeout(20_000)
                start = time.perf_counter()
                group.load_model(data)
                times.append(time.perf_counter() - start)
            finally:
                group.close()
            ideal = ideal_upload_s(dongle.timing, data)
    measured = statistics.median(times)
    return ideal / measured, measured, ideal, len(data)


def run(quick: bool = False) -> dict[str, dict]:
    eff, measured, ideal, size = upload_efficiency(1 if quick else 5)
    return {
        "model_upload_efficiency": {
            "value": eff, "unit": "x", "target": UPLOAD_TARGET, "ok": eff >= UPLOAD_TARGET,
            "note": f"load_model of a {size / 1e6:.1f} MB NEF on a realistic KL520: "
                    f"{measured * 1e3:.1f} ms, link ideal {ideal * 1e3:.1f} ms"},
    }


if __name__ == "__main__":  # pragma: no cover - manual use
    for key, m in run().items():
        print(f"{key}: {m['value']:.3f} {m['unit']} ({m['note']})")
