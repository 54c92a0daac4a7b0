"""The device-spec grammar of ``virtual_backend_from_spec`` and ``KP_VIRTUAL_DEVICES``.

::

    spec    := item ("," item)*
    item    := [count "x"] chip (":" option)*
    chip    := "KL520" | "KL720"                (any case)
    option  := "flash"                          application firmware in flash (0x00B1)
             | "usb" | "loader"                 KL520 USB boot: the KDP2 Loader (0x0083)
             | "fw"                             USB boot with firmware already uploaded (0x00B0)
             | "fast" | "realistic"             timing model
             | "hs" | "ss"                      link speed (high / super)
             | "kn=" HEX                        KN number, e.g. kn=1A2B3C4D (with a count: first
                                                dongle, the others count up)
             | "npu=" MS                        NPU time per inference in milliseconds
             | "pattern"                        outputs follow the golden transcripts' pattern

Examples: ``"KL520"``, ``"KL520,KL720"``, ``"KL520:flash"``, ``"2xKL520"``,
``"KL520:usb:fw:fast"``, ``"KL720:hs:npu=2"``. Defaults: flash boot, realistic timing.
"""

from __future__ import annotations

import re

from kp_backend.emulator.dongle import VirtualDongle

__all__ = ["SpecError", "parse_spec", "dongles_from_spec"]

_ITEM = re.compile(r"^(?:(\d+)\s*[xX]\s*)?(KL\d{3})$", re.IGNORECASE)
MAX_DONGLES = 20  # Kneron's connect limit per group


class SpecError(ValueError):
    """A device spec string that does not follow the grammar."""


def parse_spec(spec: str) -> list[dict]:
    """Keyword arguments of :class:`VirtualDongle` for each dongle the spec describes."""
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"device spec {spec!r} is empty; expected e.g. 'KL520' or 'KL520,KL720'")
    out: list[dict] = []
    for raw in spec.split(","):
        head, *options = [p.strip() for p in raw.strip().split(":")]
        m = _ITEM.match(head)
        if not m:
            raise SpecError(f"device spec item {raw.strip()!r}: expected [N x]KL520 or [N x]KL720")
        count = int(m.group(1) or 1)
        kwargs: dict = {"chip": m.group(2).upper()}
        for opt in options:
            low = opt.lower()
            if low in ("flash", "usb", "loader"):
                kwargs["boot"] = low
            elif low == "fw":
                kwargs["boot"], kwargs["firmware_loaded"] = "usb", True
            elif low in ("fast", "realistic"):
                kwargs["timing"] = low
            elif low in ("hs", "ss"):
                kwargs["link_speed"] = low
            elif low == "pattern":
                kwargs["compute"] = "transcript_pattern"
            elif low.startswith("kn="):
                try:
                    kwargs["kn_number"] = int(low[3:], 16)
                except ValueError:
                    raise SpecError(f"{opt!r}: kn= takes a hex number such as kn=1A2B3C4D") from None
            elif low.startswith("npu="):
                try:
                    kwargs["npu_time"] = float(low[4:]) / 1000.0
                except ValueError:
                    raise SpecError(f"{opt!r}: npu= takes milliseconds such as npu=15") from None
            else:
                raise SpecError(f"device spec option {opt!r} unknown; expected flash, usb, "
                                "loader, fw, fast, realistic, hs, ss, pattern, kn=HEX, npu=MS")
        if not 1 <= count <= MAX_DONGLES:
            raise SpecError(f"{raw.strip()!r}: count must be 1..{MAX_DONGLES}")
        for i in range(count):
            item = dict(kwargs)
            if "kn_number" in item:
                item["kn_number"] += i
            out.append(item)
    if len(out) > MAX_DONGLES:
        raise SpecError(f"device spec describes {len(out)} dongles; at most {MAX_DONGLES}")
    return out


def dongles_from_spec(spec: str) -> list[VirtualDongle]:
    try:
        return [VirtualDongle(**kw) for kw in parse_spec(spec)]
    except SpecError:
        raise
    except ValueError as exc:
        raise SpecError(f"device spec {spec!r}: {exc}") from None
