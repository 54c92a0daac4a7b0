"""The USB transport's rules (PROTOCOL.md §2) against scripted device answers.

The device is the recorded KL520 of ``scan_connect.json`` (descriptors only) with
transfers scripted here, served by the replay pyusb backend of the fidelity test.
"""

from __future__ import annotations

import base64
import errno
import json

import pytest
import usb.core

from _replay import ReplayBackend, Transcript
from _shared import require_shared
from kp_backend.protocol.constants import CHUNK_SIZE, FAKE_ZLP
from kp_backend.usb import (
    UDEV_RULE_PATH,
    KpError,
    KpProtocolError,
    KpTimeout,
    UsbTransport,
    find_device,
    find_devices,
    map_usb_error,
)
from kp_backend.usb import fw_state
from kp_runtime.errors import DeviceDisconnected, DeviceTimeout

DESCRIPTOR_CALLS = {"libusb_get_device_descriptor", "libusb_get_bus_number",
                    "libusb_get_port_numbers", "libusb_get_device_speed",
                    "libusb_get_config_descriptor", "libusb_get_string_descriptor_ascii"}


def scripted(tmp_path, events: list[dict]) -> ReplayBackend:
    """A replay backend: the recorded KL520's descriptors, then ``events``."""
    doc = json.loads(require_shared("golden", "usb_transcripts", "scan_connect.json").read_text())
    calls = [c for c in doc["calls"] if c["fn"] in DESCRIPTOR_CALLS]
    seq = 1000
    for e in events:
        call = {"seq": seq, "issued": seq, "thread": 0, "timeout_ms": e.get("timeout", 100),
                "status": e.get("status", 0)}
        if e["kind"] == "ctrl":
            call.update(fn="libusb_control_transfer", bmRequestType=0x40, bRequest=e["request"],
                        wValue=0, wIndex=0, wLength=0)
        else:
            data = e.get("data", b"")
            call.update(fn="libusb_bulk_transfer", direction=e["kind"],
                        endpoint=0x02 if e["kind"] == "out" else 0x81,
                        length=e.get("length", len(data)), transferred=len(data),
                        data={"len": len(data), "b64": base64.b64encode(data).decode()})
        calls.append(call)
        seq += 1
    doc["calls"] = calls
    path = tmp_path / "scripted.json"
    path.write_text(json.dumps(doc))
    return ReplayBackend(Transcript(path))


def open_transport(backend) -> UsbTransport:
    dev = find_device(393, backend)
    assert dev is not None
    return UsbTransport(dev)


def test_write_is_chunked_and_terminated_by_the_fake_zlp(tmp_path):
    data = bytes(range(256)) * ((2 * CHUNK_SIZE + 1024) // 256)
    b = scripted(tmp_path, [
        {"kind": "out", "data": data[:CHUNK_SIZE]},
        {"kind": "out", "data": data[CHUNK_SIZE:2 * CHUNK_SIZE]},
        {"kind": "out", "data": data[2 * CHUNK_SIZE:]},
        {"kind": "out", "data": FAKE_ZLP},
        {"kind": "out", "data": b"\x01" * 100},  # not a packet multiple: no terminator
    ])
    t = open_transport(b)
    assert t.packet_size == 512 and t.fake_zlp
    t.write(data, 100)
    t.write(b"\x01" * 100, 100)
    t.close()
    b.verify()


def test_read_of_a_packet_multiple_takes_the_zlp(tmp_path):
    reply = bytes(range(256)) * 4
    b = scripted(tmp_path, [
        {"kind": "in", "data": reply, "length": 1024},
        {"kind": "in", "data": b"", "length": 4, "timeout": 5},
        {"kind": "in", "data": reply[:300], "length": 1024},  # short: no ZLP read
    ])
    t = open_transport(b)
    assert t.read(1024, 100) == reply
    assert t.read(1024, 100) == reply[:300]
    b.verify()


@pytest.mark.parametrize("zlp, error, code", [
    ({"data": b"\xAA\xBB", "length": 4, "timeout": 5}, KpProtocolError, 99),
    ({"status": -7, "length": 4, "timeout": 5}, KpTimeout, -7),
])
def test_missing_zlp_is_an_error(tmp_path, zlp, error, code):
    b = scripted(tmp_path, [{"kind": "in", "data": bytes(512), "length": 512},
                            {"kind": "in", **zlp}])
    t = open_transport(b)
    with pytest.raises(error) as info:
        t.read(512, 100)
    assert info.value.kp_code == code and "port 1-2-3 (id 393)" in str(info.value)


def test_usb_errors_map_to_kneron_codes(tmp_path):
    b = scripted(tmp_path, [
        {"kind": "in", "status": -7, "length": 64},
        {"kind": "in", "status": -4, "length": 64},
        {"kind": "ctrl", "request": 0x82, "status": -9},
        {"kind": "out", "data": b"abc", "status": -1},
    ])
    t = open_transport(b)
    with pytest.raises(KpTimeout) as info:
        t.read(64, 100)
    assert isinstance(info.value, DeviceTimeout) and info.value.kp_code == -7
    with pytest.raises(DeviceDisconnected):
        t.read(64, 100)
    with pytest.raises(KpError) as info:
        t.control(0x82, 0, 0, 100)
    assert info.value.kp_code == -9
    with pytest.raises(KpError) as info:
        t.write(b"abc", 100)
    assert info.value.kp_code == -1
    b.verify()


def test_scan_reads_identity_without_transfers(tmp_path):
    b = scripted(tmp_path, [])
    (info,) = find_devices(b)
    assert (info.port_id, info.port_path, info.kn_number) == (393, "1-2-3", 0x1A2B3C4D)
    assert info.firmware == "KDP2 Comp/U" and info.connectable
    b.verify()


def test_permission_error_points_to_the_udev_rule():
    err = map_usb_error(usb.core.USBError("Access denied", -3, errno.EACCES), "open", "port 1-1")
    assert err.kp_code == -3 and "99-kneron.rules" in str(err)
    rule = open(UDEV_RULE_PATH).read()
    lines = [line for line in rule.splitlines() if line and not line.startswith("#")]
    assert lines and all('ATTRS{idVendor}=="3231"' in line for line in lines)


@pytest.mark.parametrize("pid, bcd, text, app, usb_boot, model", [
    (0x100, 0x00B0, "KDP2 Comp/U", True, True, True),
    (0x100, 0x00B1, "KDP2 Comp/F", True, False, True),
    (0x100, 0x00B2, "KDP2 Comp/J", False, False, True),
    (0x100, 0x0083, "KDP2 Loader", False, False, False),
    (0x100, 0x0001, "KDP", False, False, False),
    (0x720, 0x0101, "USB DFU (error!)", False, False, False),
    (0x720, 0x00BA, "KDP2 Loader", False, False, False),
    (0x1234, 0x00B1, "Unknown", True, False, True),
])
def test_firmware_state_words(pid, bcd, text, app, usb_boot, model):
    assert fw_state.firmware_string(pid, bcd) == text
    assert fw_state.is_application(bcd) == app
    assert fw_state.is_usb_boot(bcd) == usb_boot
    assert fw_state.can_load_model(bcd) == model
    assert fw_state.uses_fake_zlp(pid, bcd) == (bcd != 0x0001 or pid == 0x720)


def test_real_usb_goes_through_libusb(monkeypatch):
    from kp_backend.usb import libusb_backend, resolve_backend

    monkeypatch.delenv("KP_VIRTUAL_DEVICES", raising=False)
    backend = libusb_backend()  # the system libusb-1.0, else libusb-package's copy
    assert resolve_backend() is backend and resolve_backend("libusb") is backend
    devices = find_devices("libusb")  # no dongle on a build machine; must not fail
    assert all(d.vendor_id == 0x3231 for d in devices)
    with pytest.raises(ValueError, match="empty backend spec"):
        resolve_backend("  ")
