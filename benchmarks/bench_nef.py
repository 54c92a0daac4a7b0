"""NEF reader speed: ``read_nef`` on the largest real NEF of ``../shared/models/nef`` (no
target; reported).

``nef_read_ms`` reads from bytes already in memory, CRC-32 of the whole file included
(the CRC is most of the cost; the parts are views, nothing large is copied).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from kp_backend.nef import read_nef

_SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "models" / "nef"


def _largest() -> Path | None:
    files = sorted(_SHARED.glob("**/*.nef"), key=lambda p: (p.stat().st_size, str(p)))
    return files[-1] if files else None


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(times)


def run(quick: bool = False) -> dict[str, dict]:
    path = _largest()
    if path is None:
        note = f"skipped: no NEF under {_SHARED}"
        return {"nef_read_ms": {"value": None, "unit": "ms", "target": None, "ok": None,
                                "note": note}}
    data = path.read_bytes()
    repeats = 5 if quick else 30
    full = _median_ms(lambda: read_nef(data), repeats)
    size = f"{path.parent.name}/{path.name}, {len(data) / 1e6:.1f} MB, median of {repeats}"
    return {
        "nef_read_ms": {"value": round(full, 3), "unit": "ms", "target": None, "ok": None,
                        "note": f"read_nef(bytes) incl. CRC-32; {size}"},
    }


if __name__ == "__main__":
    for name, metric in run().items():
        print(f"{name}: {metric['value']} {metric['unit']} ({metric['note']})")
