"""NEF reader speed: ``read_nef`` on the largest real NEF (no target; reported).

``nef_read_ms`` reads from bytes already in memory, CRC-32 of the whole file included
(the CRC is most of the cost; the parts are views, nothing large is copied).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from kp_backend.nef import read_nef

_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "nef"
_FILE = _SHARED / "KL520" / "mobilenet_hostlib.nef"


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def run(quick: bool = False) -> dict[str, dict]:
    if not _FILE.is_file():
        note = f"skipped: {_FILE} is absent"
        return {"nef_read_ms": {"value": None, "unit": "ms", "target": None, "ok": None,
                                "note": note}}
    data = _FILE.read_bytes()
    repeats = 5 if quick else 30
    full = _median_ms(lambda: read_nef(data), repeats)
    size = f"{_FILE.name}, {len(data) / 1e6:.1f} MB, median of {repeats}"
    return {
        "nef_read_ms": {"value": round(full, 3), "unit": "ms", "target": None, "ok": None,
                        "note": f"read_nef(bytes) incl. CRC-32; {size}"},
    }


if __name__ == "__main__":
    for name, metric in run().items():
        print(f"{name}: {metric['value']} {metric['unit']} ({metric['note']})")
