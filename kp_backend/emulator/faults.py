"""Fault injection described as data (pyvisa-sim style): a list of rules, each a dict.

Example::

    VirtualDongle("KL520", faults=[
        {"kind": "stall", "transfer": "out", "index": 3},         # 4th bulk OUT -> PIPE (-9)
        {"kind": "timeout", "transfer": "in", "index": 0},        # 1st bulk IN -> TIMEOUT (-7)
        {"kind": "drop_result", "index": 1},                      # 2nd result never sent
        {"kind": "corrupt_result", "field": "magic", "value": 0, "index": 0},
        {"kind": "disconnect", "after_messages": 5},             # off the bus after 5 OUT messages
        {"kind": "slow_npu", "seconds": 0.2},                     # every inference +200 ms
        {"kind": "npu_timeout", "index": 0},                      # 1st NPU run -> status 103
        {"kind": "refuse_fifo"},                                  # control 0x82 stalls
        {"kind": "truncate_result", "value": 400, "index": 2},    # 3rd result cut to 400 bytes
        {"kind": "corrupt_result", "offset": 344, "value": 9999}, # any u32 word (node count)
    ])

Counters start at 0 when the dongle is created and count across reboots. ``index`` picks the
n-th event of that kind, ``count`` (default 1) how many consecutive events are hit; ``transfer``
is ``"out"``, ``"in"``, ``"control"`` or ``"any"``; ``request`` restricts control faults to
one ``bRequest``. Fields of ``corrupt_result``: ``magic``, ``total_size``, ``job_id``,
``status_code``, ``product_id``, ``inf_number``, ``crop_number``, ``is_last_crop`` (u32 words
of the result header), or instead of ``field`` a byte ``offset`` of any u32 word of the
message (e.g. 344: the KL520 node count; an offset past the end is ignored).
``truncate_result`` sends only the first ``value`` bytes of the result (a short payload;
the header's ``total_size`` is left as it was).
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass, fields
from typing import Any, Iterable, Mapping

__all__ = ["Fault", "FaultPlan", "FAULT_KINDS", "RESULT_FIELDS"]

FAULT_KINDS = frozenset({"stall", "timeout", "drop_result", "corrupt_result", "disconnect",
                         "slow_npu", "npu_timeout", "refuse_fifo", "truncate_result"})
TRANSFERS = frozenset({"out", "in", "control", "any"})
RESULT_FIELDS = {"magic": 0, "total_size": 4, "job_id": 8, "status_code": 12,
                 "product_id": 328, "inf_number": 332, "crop_number": 336, "is_last_crop": 340}


@dataclass(frozen=True)
class Fault:
    """One rule. See the module docstring for the meaning of each field."""

    kind: str
    transfer: str = "any"
    index: int = 0
    count: int = 1
    request: int | None = None
    field: str | None = None
    value: int = 0
    after_messages: int = 0
    seconds: float = 0.0
    offset: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind {self.kind!r} unknown; expected one of {sorted(FAULT_KINDS)}")
        if self.transfer not in TRANSFERS:
            raise ValueError(f"fault transfer {self.transfer!r} unknown; expected one of {sorted(TRANSFERS)}")
        if self.index < 0 or self.count < 1:
            raise ValueError(f"fault index must be >= 0 and count >= 1, got {self.index}, {self.count}")
        if self.kind == "corrupt_result" and self.offset is not None:
            if self.field is not None or self.offset < 0:
                raise ValueError(f"corrupt_result takes a field or an offset >= 0, got "
                                 f"field={self.field!r}, offset={self.offset}")
        elif self.kind == "corrupt_result" and self.field not in RESULT_FIELDS:
            raise ValueError(f"corrupt_result field {self.field!r} unknown; expected one of "
                             f"{sorted(RESULT_FIELDS)}")
        if self.kind == "truncate_result" and self.value < 0:
            raise ValueError(f"truncate_result value (bytes kept) must be >= 0, got {self.value}")
        if self.seconds < 0:
            raise ValueError(f"slow_npu seconds must be >= 0, got {self.seconds}")

    @classmethod
    def from_data(cls, data: "Fault | Mapping[str, Any]") -> "Fault":
        if isinstance(data, Fault):
            return data
        if not isinstance(data, Mapping):
            raise TypeError(f"a fault is a Fault or a dict, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        extra = set(data) - known
        if extra:
            raise ValueError(f"fault keys {sorted(extra)} unknown; expected some of {sorted(known)}")
        return cls(**data)

    def hits(self, n: int) -> bool:
        return self.index <= n < self.index + self.count


class FaultPlan:
    """The rules plus the event counters they are matched against (thread-safe)."""

    def __init__(self, faults: "Iterable[Fault | Mapping[str, Any]] | FaultPlan | None" = None) -> None:
        if isinstance(faults, FaultPlan):
            faults = faults.faults
        self.faults: tuple[Fault, ...] = tuple(Fault.from_data(f) for f in (faults or ()))
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        # the rules of each event, sorted once: the host-thread path asks for every transfer
        self._transfer_rules = self._of("stall", "timeout")
        self._result_rules = self._of("drop_result", "corrupt_result", "truncate_result")
        self._message_rules = self._of("disconnect")
        self._npu_rules = self._of("npu_timeout")

    def _of(self, *kinds: str) -> tuple[Fault, ...]:
        return tuple(f for f in self.faults if f.kind in kinds)

    @property
    def counts_messages(self) -> bool:
        """True when a rule acts on received OUT messages (:meth:`on_message`)."""
        return bool(self._message_rules)

    def _next(self, key: str) -> int:
        with self._lock:
            n = self._counts.get(key, 0)
            self._counts[key] = n + 1
            return n

    def on_transfer(self, transfer: str, request: int | None = None) -> str | None:
        """Count one host transfer; ``"stall"`` or ``"timeout"`` when a rule hits it."""
        relevant = self._transfer_rules
        if not relevant:
            return None
        n_kind, n_any = self._next(transfer), self._next("any")
        for f in relevant:
            if f.request is not None and f.request != request:
                continue
            if (f.transfer == transfer and f.hits(n_kind)) or (f.transfer == "any" and f.hits(n_any)):
                return f.kind
        return None

    def on_result(self, message: bytes) -> bytes | None:
        """Count one result about to be queued; None drops it, else the (corrupted) bytes."""
        relevant = self._result_rules
        if not relevant:
            return message
        n = self._next("result")
        out = bytearray(message)
        for f in relevant:
            if not f.hits(n):
                continue
            if f.kind == "drop_result":
                return None
            if f.kind == "truncate_result":
                del out[f.value:]
                continue
            offset = RESULT_FIELDS[f.field] if f.offset is None else f.offset
            if offset + 4 <= len(out):
                struct.pack_into("<I", out, offset, f.value & 0xFFFFFFFF)
        return bytes(out)

    def on_message(self) -> bool:
        """Count one received OUT message; True when the dongle must now disconnect."""
        relevant = self._message_rules
        if not relevant:
            return False
        n = self._next("message") + 1
        return any(n == f.after_messages for f in relevant)

    def on_npu_run(self) -> bool:
        """Count one NPU run; True when it must time out (result status 103)."""
        relevant = self._npu_rules
        if not relevant:
            return False
        n = self._next("npu")
        return any(f.hits(n) for f in relevant)

    def npu_extra_s(self) -> float:
        return sum(f.seconds for f in self.faults if f.kind == "slow_npu")

    def refuse_fifo(self) -> bool:
        return any(f.kind == "refuse_fifo" for f in self.faults)
