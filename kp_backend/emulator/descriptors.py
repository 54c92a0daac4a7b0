"""USB descriptors a KDP2 dongle presents (PROTOCOL.md §1.2), as bytes and as pyusb objects.

Pure functions of (chip, link speed, bcdDevice, KN number). The byte forms are what a
``GET_DESCRIPTOR`` returns; :func:`parse_configuration` turns the configuration bytes into
the attribute objects pyusb's core expects from a backend, so that the objects and the
bytes can never disagree.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from kp_backend.npu_types import PRODUCT_ID_BY_CHIP, Chip
from kp_backend.protocol.constants import (
    CONFIGURATION,
    EP_BULK_IN,
    EP_BULK_OUT,
    EP_INTERRUPT_IN,
    LANGID_EN_US,
    MANUFACTURER,
    PACKET_SIZE_HIGH_SPEED,
    PACKET_SIZE_SUPER_SPEED,
    VENDOR_ID,
    UsbSpeed,
)

__all__ = [
    "DESC_DEVICE",
    "DESC_CONFIG",
    "DESC_STRING",
    "DESC_INTERFACE",
    "DESC_ENDPOINT",
    "DESC_SS_COMPANION",
    "packet_size",
    "device_descriptor",
    "config_descriptor",
    "string_descriptor",
    "serial_string",
    "product_string",
    "DeviceDescriptor",
    "EndpointDescriptor",
    "InterfaceDescriptor",
    "ConfigDescriptor",
    "parse_device_descriptor",
    "parse_configuration",
]

DESC_DEVICE = 1
DESC_CONFIG = 2
DESC_STRING = 3
DESC_INTERFACE = 4
DESC_ENDPOINT = 5
DESC_SS_COMPANION = 0x30

_BULK = 2
_INTERRUPT = 3
_LOG_PACKET = 1024  # interrupt log endpoint: 1024 bytes, bInterval 1 (§1.2)


def packet_size(speed: UsbSpeed | int) -> int:
    """Bulk packet size for a link speed: 1024 on super speed, else 512 (§1.3)."""
    return PACKET_SIZE_SUPER_SPEED if int(speed) >= UsbSpeed.KP_USB_SPEED_SUPER else PACKET_SIZE_HIGH_SPEED


def _super(speed: UsbSpeed | int) -> bool:
    return int(speed) >= UsbSpeed.KP_USB_SPEED_SUPER


def device_descriptor(chip: Chip, speed: UsbSpeed | int, bcd_device: int) -> bytes:
    """The 18-byte device descriptor. ``bcdDevice`` carries the firmware state (§1.4)."""
    if chip is Chip.KL520:
        bcd_usb, mps0 = 0x0200, 64
    elif _super(speed):
        bcd_usb, mps0 = 0x0300, 9  # 2^9 = 512 on super speed
    else:
        bcd_usb, mps0 = 0x0210, 64
    return struct.pack(
        "<BBHBBBBHHHBBBB", 18, DESC_DEVICE, bcd_usb, 0, 0, 0, mps0, VENDOR_ID,
        PRODUCT_ID_BY_CHIP[chip], bcd_device, 1, 2, 3, 1,
    )


def _endpoint(address: int, attributes: int, mps: int, interval: int, ss: bool,
              burst_bytes: int = 0) -> bytes:
    ep = struct.pack("<BBBBHB", 7, DESC_ENDPOINT, address, attributes, mps, interval)
    if ss:  # SuperSpeed endpoint companion: bMaxBurst 0, no streams, bytes per interval
        ep += struct.pack("<BBBBH", 6, DESC_SS_COMPANION, 0, 0, burst_bytes)
    return ep


def config_descriptor(chip: Chip, speed: UsbSpeed | int, log_endpoint: bool = False) -> bytes:
    """The full configuration descriptor (configuration + interface 0 + endpoints).

    KL520 lists OUT then IN, KL720 IN then OUT; the interrupt log endpoint 0x83 is present
    only with ``log_endpoint`` (firmware built with USB logging, §1.2)."""
    ss = _super(speed)
    mps = packet_size(speed)
    ep_out = _endpoint(EP_BULK_OUT, _BULK, mps, 0, ss)
    ep_in = _endpoint(EP_BULK_IN, _BULK, mps, 0, ss)
    endpoints = ep_out + ep_in if chip is Chip.KL520 else ep_in + ep_out
    count = 2
    if log_endpoint:
        endpoints += _endpoint(EP_INTERRUPT_IN, _INTERRUPT, _LOG_PACKET, 1, ss, _LOG_PACKET)
        count = 3
    interface = struct.pack("<BBBBBBBBB", 9, DESC_INTERFACE, 0, 0, count, 0xFF, 0, 0, 0)
    if chip is Chip.KL520 or ss:
        max_power = 0
    else:
        max_power = 0xFA
    total = 9 + len(interface) + len(endpoints)
    head = struct.pack("<BBHBBBBB", 9, DESC_CONFIG, total, 1, CONFIGURATION, 0, 0xC0, max_power)
    return head + interface + endpoints


def serial_string(kn_number: int) -> str:
    """The serial-number string: the KN number as exactly 8 upper-case hex digits."""
    return f"{kn_number & 0xFFFFFFFF:08X}"


def product_string(chip: Chip) -> str:
    return f"Kneron {chip.name}"


def string_descriptor(index: int, chip: Chip, kn_number: int) -> bytes | None:
    """String descriptor ``index`` (0 = LANGID list), or None when the device has none."""
    if index == 0:
        return struct.pack("<BBH", 4, DESC_STRING, LANGID_EN_US)
    text = {1: MANUFACTURER, 2: product_string(chip), 3: serial_string(kn_number)}.get(index)
    if text is None:
        return None
    body = text.encode("utf-16-le")
    return struct.pack("<BB", 2 + len(body), DESC_STRING) + body


# --- attribute objects for pyusb's core (same field names as libusb's structures) ----------


@dataclass
class DeviceDescriptor:
    bLength: int
    bDescriptorType: int
    bcdUSB: int
    bDeviceClass: int
    bDeviceSubClass: int
    bDeviceProtocol: int
    bMaxPacketSize0: int
    idVendor: int
    idProduct: int
    bcdDevice: int
    iManufacturer: int
    iProduct: int
    iSerialNumber: int
    bNumConfigurations: int
    bus: int = 0
    address: int = 0
    speed: int = 0
    port_number: int = 0
    port_numbers: tuple[int, ...] = ()


@dataclass
class EndpointDescriptor:
    bLength: int
    bDescriptorType: int
    bEndpointAddress: int
    bmAttributes: int
    wMaxPacketSize: int
    bInterval: int
    bRefresh: int = 0
    bSynchAddress: int = 0
    extra_descriptors: bytes = b""


@dataclass
class InterfaceDescriptor:
    bLength: int
    bDescriptorType: int
    bInterfaceNumber: int
    bAlternateSetting: int
    bNumEndpoints: int
    bInterfaceClass: int
    bInterfaceSubClass: int
    bInterfaceProtocol: int
    iInterface: int
    endpoints: list[EndpointDescriptor] = field(default_factory=list)
    extra_descriptors: bytes = b""


@dataclass
class ConfigDescriptor:
    bLength: int
    bDescriptorType: int
    wTotalLength: int
    bNumInterfaces: int
    bConfigurationValue: int
    iConfiguration: int
    bmAttributes: int
    bMaxPower: int
    interfaces: list[InterfaceDescriptor] = field(default_factory=list)
    extra_descriptors: bytes = b""


def parse_device_descriptor(raw: bytes) -> DeviceDescriptor:
    return DeviceDescriptor(*struct.unpack("<BBHBBBBHHHBBBB", raw[:18]))


def parse_configuration(raw: bytes) -> ConfigDescriptor:
    """Walk configuration bytes into objects; companion descriptors become ``extra``."""
    cfg = ConfigDescriptor(*struct.unpack_from("<BBHBBBBB", raw, 0))
    pos = raw[0]
    while pos < len(raw):
        length, kind = raw[pos], raw[pos + 1]
        chunk = raw[pos:pos + length]
        if kind == DESC_INTERFACE:
            cfg.interfaces.append(InterfaceDescriptor(*struct.unpack("<BBBBBBBBB", chunk)))
        elif kind == DESC_ENDPOINT:
            cfg.interfaces[-1].endpoints.append(
                EndpointDescriptor(*struct.unpack("<BBBBHB", chunk)))
        elif cfg.interfaces and cfg.interfaces[-1].endpoints:
            cfg.interfaces[-1].endpoints[-1].extra_descriptors += bytes(chunk)
        pos += length
    return cfg
