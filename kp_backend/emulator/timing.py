"""Timing model of a virtual dongle: USB link throughput and NPU time per model.

Decisions (documented in ``docs/emulator.md``):

* **USB.** Effective bulk throughput, not the signalling rate: high speed (KL520, or a KL720
  on a USB 2 port) 35 MB/s with 125 µs per transfer (one micro-frame of scheduling
  overhead); super speed (KL720) 300 MB/s with 20 µs per transfer. High speed is half duplex,
  so OUT and IN transfers of one dongle share one link; super speed is full duplex (one
  link per direction).
* **NPU.** A fixed time per inference, per model id if configured, else 15 ms on KL520 and
  4 ms on KL720 (the order of magnitude of Kneron's published small-model figures). Image
  (job 10) requests add hardware pre-processing at 200 MB/s of image data.
* **Re-enumeration** after a reboot or firmware upload: 300 ms off the bus.
* ``fast``: every delay is 0 (re-enumeration 10 ms), for unit tests.

A pipelined host is therefore bounded by ``max(link time, NPU time)`` per inference, the
way hardware is.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Mapping

from kp_backend.npu_types import Chip
from kp_backend.protocol.constants import UsbSpeed

__all__ = ["LinkProfile", "TimingModel", "LINK_PROFILES", "DEFAULT_NPU_TIME_S", "make_timing", "Link"]


@dataclass(frozen=True)
class LinkProfile:
    bytes_per_s: float
    overhead_s: float
    full_duplex: bool


LINK_PROFILES: dict[UsbSpeed, LinkProfile] = {
    UsbSpeed.KP_USB_SPEED_HIGH: LinkProfile(35e6, 125e-6, False),
    UsbSpeed.KP_USB_SPEED_SUPER: LinkProfile(300e6, 20e-6, True),
}
DEFAULT_NPU_TIME_S: dict[Chip, float] = {Chip.KL520: 0.015, Chip.KL720: 0.004}
PREPROCESS_BYTES_PER_S = 200e6
REENUMERATE_DELAY_S = 0.3
FAST_REENUMERATE_DELAY_S = 0.01


@dataclass(frozen=True)
class TimingModel:
    """All delays a dongle adds. ``link`` None means no USB delay."""

    link: LinkProfile | None
    npu_time_s: float
    npu_time_by_model: Mapping[int, float] = field(default_factory=dict)
    preprocess_bytes_per_s: float | None = PREPROCESS_BYTES_PER_S
    reenumerate_delay_s: float = REENUMERATE_DELAY_S
    fast: bool = False

    def transfer_time(self, nbytes: int) -> float:
        if self.link is None:
            return 0.0
        return self.link.overhead_s + nbytes / self.link.bytes_per_s

    def npu_time(self, model_id: int) -> float:
        return float(self.npu_time_by_model.get(model_id, self.npu_time_s))

    def preprocess_time(self, image_bytes: int) -> float:
        if not self.preprocess_bytes_per_s:
            return 0.0
        return image_bytes / self.preprocess_bytes_per_s


def make_timing(chip: Chip, speed: UsbSpeed, timing: str | TimingModel = "realistic",
                npu_time: float | Mapping[int, float] | None = None) -> TimingModel:
    """Build the model from the constructor arguments of :class:`VirtualDongle`.

    ``timing`` is ``"realistic"``, ``"fast"`` or a ready :class:`TimingModel`; ``npu_time``
    overrides the NPU part (seconds for every model, or ``{model_id: seconds}``; a key
    ``None`` in the mapping sets the default for other ids) even in fast mode."""
    if isinstance(timing, TimingModel):
        model = timing
    elif timing == "fast":
        model = TimingModel(None, 0.0, preprocess_bytes_per_s=None,
                            reenumerate_delay_s=FAST_REENUMERATE_DELAY_S, fast=True)
    elif timing == "realistic":
        model = TimingModel(LINK_PROFILES[UsbSpeed(speed)], DEFAULT_NPU_TIME_S[chip])
    else:
        raise ValueError(f"timing {timing!r} not understood; expected 'realistic', 'fast' "
                         "or a TimingModel")
    if npu_time is None:
        return model
    if isinstance(npu_time, Mapping):
        per_model = {int(k): float(v) for k, v in npu_time.items() if k is not None}
        default = float(npu_time.get(None, model.npu_time_s))
        return replace(model, npu_time_s=default, npu_time_by_model=per_model)
    if npu_time < 0:
        raise ValueError(f"npu_time must be >= 0 seconds, got {npu_time}")
    return replace(model, npu_time_s=float(npu_time), npu_time_by_model={})


class Link:
    """Serialises transfers on the modelled link and sleeps for their duration."""

    def __init__(self, timing: TimingModel) -> None:
        self.timing = timing
        self._idle = timing.link is None  # fast timing: occupy() is a no-op
        shared = threading.Lock()
        duplex = timing.link is not None and timing.link.full_duplex
        self._locks = {"out": threading.Lock() if duplex else shared,
                       "in": threading.Lock() if duplex else shared}

    def occupy(self, direction: str, nbytes: int) -> None:
        if self._idle:
            return
        seconds = self.timing.transfer_time(nbytes)
        if seconds <= 0:
            return
        with self._locks[direction]:
            time.sleep(seconds)
