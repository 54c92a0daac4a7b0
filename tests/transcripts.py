"""Reader for the golden USB transcripts (``../shared/golden/usb_transcripts``, format
``"kp-peer usb transcript v1"``; the folder's README describes it).

API (shared by the emulator's replay tests and the host library's tests)::

    from transcripts import load_transcript, transcript_params, masked

    t = load_transcript(path)              # Transcript; abbreviated uploads rebuilt from
                                           # ../shared/models/nef when a NEF matches
    t.device_options                       # {"chip": "kl720", "boot": "flash"} or {}
    for call in t.calls:                   # Call objects in file (completion) order
        call.fn, call.handle, call.endpoint, call.direction, call.length, call.timeout_ms,
        call.status, call.transferred, call.data (bytes | None), call.volatile, call.raw
    t.threads()                            # {thread id: [calls in issue order]}
    masked(data, call.volatile)            # volatile byte ranges zeroed, for comparisons

``call.data`` is None only for an abbreviated upload whose NEF piece was not found
(``call.abbreviated`` stays True and ``call.sha256`` names it).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Call", "Transcript", "load_transcript", "transcript_params", "masked",
           "TRANSCRIPT_DIR", "NEF_DIR", "all_models_pieces"]

TRANSCRIPT_DIR = ("golden", "usb_transcripts")
NEF_DIR = ("models", "nef")
NEF_ALL_MODELS_OFFSET = 56  # NEF.md: all_models starts at file offset 56 in every real NEF
PIECE = 2 * 1024 * 1024
FORMAT = "kp-peer usb transcript v1"


@dataclass(frozen=True)
class Call:
    """One recorded libusb call. Fields absent from the record are None."""

    seq: int
    issued: int
    thread: int
    fn: str
    raw: dict = field(repr=False)
    data: bytes | None = field(default=None, repr=False)
    abbreviated: bool = False
    sha256: str | None = None

    def __getattr__(self, name: str) -> Any:  # endpoint, length, status, ... from the record
        raw = self.__dict__.get("raw")
        if raw is not None and name in _FIELDS:
            return raw.get(name)
        raise AttributeError(name)

    @property
    def volatile(self) -> tuple[tuple[int, int], ...]:
        return tuple(tuple(r) for r in self.raw.get("volatile", ()))

    @property
    def is_bulk(self) -> bool:
        return self.fn == "libusb_bulk_transfer"


_FIELDS = frozenset({
    "device", "devices", "handle", "endpoint", "direction", "length", "timeout_ms",
    "bmRequestType", "bRequest", "wValue", "wIndex", "wLength", "index", "interface", "value",
    "status", "status_name", "transferred", "ports", "kind",
})


@dataclass(frozen=True)
class Transcript:
    path: Path
    scenario: str
    description: str
    device_options: dict
    result: dict
    calls: tuple[Call, ...]

    def threads(self) -> dict[int, list[Call]]:
        """Each host thread's calls in the order it issued them."""
        out: dict[int, list[Call]] = {}
        for call in sorted(self.calls, key=lambda c: c.issued):
            out.setdefault(call.thread, []).append(call)
        return out


def masked(data: bytes, ranges) -> bytes:
    """``data`` with the ``[start, end)`` ranges zeroed."""
    out = bytearray(data)
    for start, end in ranges:
        out[start:end] = bytes(max(0, min(end, len(out)) - start))
    return bytes(out)


@functools.lru_cache(maxsize=4)
def all_models_pieces(nef_dir: str) -> dict[str, bytes]:
    """sha256 -> bytes of every 2 MiB piece of every NEF's ``all_models`` block."""
    from kp_backend.nef import read_nef

    pieces: dict[str, bytes] = {}
    for path in sorted(Path(nef_dir).rglob("*.nef")):
        blob = bytes(read_nef(path.read_bytes()).all_models)
        for start in range(0, len(blob), PIECE):
            piece = blob[start:start + PIECE]
            pieces[hashlib.sha256(piece).hexdigest()] = piece
    return pieces


def _decode(record: dict, nef_dir: Path | None) -> tuple[bytes | None, bool, str | None]:
    data = record.get("data")
    if data is None:
        return None, False, None
    if not data.get("abbreviated"):
        return base64.b64decode(data["b64"]), False, None
    sha = data["sha256"]
    if nef_dir is not None and nef_dir.is_dir():
        piece = all_models_pieces(str(nef_dir)).get(sha)
        if piece is not None and len(piece) == data["len"]:
            return piece, False, sha
    return None, True, sha


def load_transcript(path: str | Path, nef_dir: str | Path | None = None) -> Transcript:
    """Parse one transcript file. ``nef_dir`` defaults to ``../../models/nef`` relative to
    the transcript folder (the shared layout); abbreviated uploads are rebuilt from there."""
    path = Path(path)
    doc = json.loads(path.read_text())
    if doc.get("format") != FORMAT:
        raise ValueError(f"{path}: format {doc.get('format')!r}, expected {FORMAT!r}")
    if nef_dir is None:
        nef_dir = path.resolve().parents[2].joinpath(*NEF_DIR)
    nef_path = Path(nef_dir)
    calls = []
    for record in doc["calls"]:
        data, abbreviated, sha = _decode(record, nef_path)
        calls.append(Call(record["seq"], record.get("issued", record["seq"]),
                          record.get("thread", 0), record["fn"], record, data, abbreviated, sha))
    return Transcript(path, doc["scenario"], doc.get("description", ""),
                      dict(doc.get("device", {}).get("options", {})), doc.get("result", {}),
                      tuple(calls))


def transcript_params() -> list:
    """``pytest.param`` per transcript file (skips, or fails under CI, when absent)."""
    from _shared import shared_params

    return shared_params("/".join(TRANSCRIPT_DIR), "*.json")
