"""What the ``bcdDevice`` word says about the firmware (PROTOCOL.md §1.4). Pure functions.

The host never asks a device what it runs before connecting; every decision (connect
allowed, FIFO reset, model load, firmware upload, fake ZLP) is a bit test on this word.
"""

from __future__ import annotations

from kp_backend.protocol.constants import (
    BCD_KL720_DFU,
    BCD_KL720_MINION,
    BCD_LEGACY_KDP,
    FW_KDP2_FAMILY,
    FW_TYPE_FLASH,
    FW_TYPE_JTAG,
    FW_TYPE_LOADER,
    FW_TYPE_MASK,
    FW_TYPE_USB,
    FW_V2_FAMILY,
    FW_V2_TYPE_FLASH,
    FW_V2_TYPE_JTAG,
    FW_V2_TYPE_LOADER,
    FW_V2_TYPE_MASK,
    FW_V2_TYPE_USB,
    PID_KL520,
    PID_KL720,
    PID_KL720_LEGACY,
)

__all__ = [
    "is_kdp2",
    "boot_type",
    "is_application",
    "is_usb_boot",
    "is_loader",
    "is_jtag",
    "can_load_model",
    "uses_fake_zlp",
    "firmware_string",
]

_KNOWN_PIDS = frozenset({PID_KL520, PID_KL720, PID_KL720_LEGACY, 0x530, 0x630, 0x730, 0x732,
                         0x540, 0x832})


def is_kdp2(bcd: int) -> bool:
    """Connect is allowed only for KDP2-family firmware (else error 24)."""
    return bool(bcd & FW_V2_FAMILY) or bool(bcd & FW_KDP2_FAMILY)


def boot_type(bcd: int) -> str | None:
    """``"usb"``, ``"flash"``, ``"jtag"``, ``"loader"`` or ``None`` (not KDP2)."""
    if bcd & FW_V2_FAMILY:
        return {FW_V2_TYPE_USB: "usb", FW_V2_TYPE_FLASH: "flash", FW_V2_TYPE_JTAG: "jtag",
                FW_V2_TYPE_LOADER: "loader"}.get(bcd & FW_V2_TYPE_MASK)
    if bcd & FW_KDP2_FAMILY:
        return {FW_TYPE_USB: "usb", FW_TYPE_FLASH: "flash", FW_TYPE_JTAG: "jtag",
                FW_TYPE_LOADER: "loader"}[bcd & FW_TYPE_MASK]
    return None


def is_application(bcd: int) -> bool:
    """Application firmware started by USB or flash boot: connect resets the FIFO queue
    and reads system info only for these."""
    return boot_type(bcd) in ("usb", "flash")


def is_usb_boot(bcd: int) -> bool:
    return boot_type(bcd) == "usb"


def is_loader(bcd: int) -> bool:
    return bcd != BCD_KL720_MINION and boot_type(bcd) == "loader"


def is_jtag(bcd: int) -> bool:
    # 0x00BA (KL720 minion) & 0x83 == 0x82 looks like JTAG to the generic test.
    return bcd != BCD_KL720_MINION and boot_type(bcd) == "jtag"


def can_load_model(bcd: int) -> bool:
    """Not Loader, legacy KDP, KL720 DFU or minion (else error 24)."""
    if bcd in (BCD_LEGACY_KDP, BCD_KL720_DFU, BCD_KL720_MINION):
        return False
    return boot_type(bcd) != "loader"


def uses_fake_zlp(product_id: int, bcd: int) -> bool:
    """Every KDP2 device (and any KL720) ends packet-multiple writes with ``44 33 22 11``;
    only legacy KDP firmware gets a real zero-length packet (§2.1)."""
    return (product_id in (PID_KL720, PID_KL720_LEGACY)
            or bool(bcd & (FW_KDP2_FAMILY | FW_V2_FAMILY)))


def firmware_string(product_id: int, bcd: int) -> str:
    """Kneron's display string for the firmware state (``DeviceDescriptor.firmware``)."""
    if product_id not in _KNOWN_PIDS:
        return "Unknown"
    if product_id == PID_KL720 and bcd == BCD_KL720_DFU:
        return "USB DFU (error!)"
    if product_id == PID_KL720 and bcd == BCD_KL720_MINION:
        return "KDP2 Loader"
    if bcd == BCD_LEGACY_KDP or not is_kdp2(bcd):
        return "KDP"
    kind = boot_type(bcd)
    if kind == "loader":
        return "KDP2 Loader"
    if bcd & FW_V2_FAMILY:
        mode = {0x410: "Host", 0x420: "HICO", 0x430: "Comp"}.get(bcd & 0x470)
        os_tag = {0x500: "/R", 0x600: "/L"}.get(bcd & 0x700, "")
    else:
        mode = {0x90: "Host", 0xA0: "HICO", 0xB0: "Comp"}.get(bcd & 0xF0)
        os_tag = ""
    if mode is None:
        return "KDP2 Unknown"
    suffix = {"usb": "/U", "flash": "/F", "jtag": "/J"}[kind]
    return f"KDP2 {mode}{suffix}{os_tag}"
