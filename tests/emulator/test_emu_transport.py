"""Transfer rules (PROTOCOL.md §2): short-packet message assembly, fake-ZLP stripping, IN
packets with ZLP and OVERFLOW, timeouts, every vendor control request with ACK or STALL."""

from __future__ import annotations

import struct
import time

import pytest
import usb.core

import _emu_host as host
from kp_backend.emulator.endpoint import strip_fake_zlp
from kp_backend.protocol.constants import EP_BULK_IN, EP_BULK_OUT, FAKE_ZLP, CommandId
from kp_backend.protocol.wire import build_command, fifoq_configure_setup, heap_boundary_setup

SYSINFO = bytes.fromhex("13cd67ab0c000000040a0000")


def test_fake_zlp_stripping_rules():
    assert strip_fake_zlp(b"x" * 512 + FAKE_ZLP, length_rule=True) == b"x" * 512
    assert strip_fake_zlp(b"x" * 100 + FAKE_ZLP, length_rule=True) == b"x" * 100 + FAKE_ZLP
    assert strip_fake_zlp(b"x" * 100 + FAKE_ZLP, length_rule=False) == b"x" * 100  # KL720 quirk
    assert strip_fake_zlp(FAKE_ZLP, length_rule=True) == b""
    assert strip_fake_zlp(b"x" * 512, length_rule=True) == b"x" * 512


def test_command_size_field_is_ignored(emu):
    backend, _ = emu("KL520")
    dev = host.open_dev(backend)
    garbage = bytes.fromhex("13cd67ab747f0000040a0000")  # uninitialised total_size, as Kneron sends
    dev.write(EP_BULK_OUT, garbage, 1000)
    reply = host.read(dev, 16)
    assert reply == bytes.fromhex("000000004d3c2b1a00020200ca040000")


def test_stray_fake_zlp_and_unknown_commands_get_no_answer(emu):
    backend, _ = emu("KL520")
    dev = host.open_dev(backend)
    dev.write(EP_BULK_OUT, FAKE_ZLP, 1000)
    dev.write(EP_BULK_OUT, build_command(0x0A0F), 1000)  # LOAD_NEF: not in KL520 firmware
    dev.write(EP_BULK_OUT, build_command(0x0A17), 1000)  # temperature: KL720 only
    with pytest.raises(usb.core.USBTimeoutError) as err:
        dev.read(EP_BULK_IN, 16, 50)
    assert err.value.backend_error_code == -7
    assert len(host.command(dev, CommandId.GET_SYSTEM_INFO, reply=16)) == 16


def test_packet_multiple_message_gets_a_zlp_and_split_reads_work(emu):
    backend, _ = emu("KL520")
    dev = host.open_dev(backend)
    body = struct.pack("<II", 0x60000000, 512)
    host.write(dev, build_command(CommandId.MEMORY_READ, body))
    assert host.read(dev, 4) == bytes(4)
    assert bytes(dev.read(EP_BULK_IN, 512, 1000)) == bytes(512)
    assert bytes(dev.read(EP_BULK_IN, 4, 5)) == b""  # the ZLP after a packet multiple
    host.write(dev, build_command(CommandId.MEMORY_READ, struct.pack("<II", 0, 1000)))
    host.read(dev, 4)
    assert len(dev.read(EP_BULK_IN, 512, 1000)) == 512  # part of a longer message
    assert len(dev.read(EP_BULK_IN, 4096, 1000)) == 488  # the short rest ends the transfer


def test_read_that_cannot_hold_a_packet_overflows(emu):
    backend, _ = emu("KL520")
    dev = host.open_dev(backend)
    host.write(dev, build_command(CommandId.MEMORY_READ, struct.pack("<II", 0, 1000)))
    host.read(dev, 4)
    with pytest.raises(usb.core.USBError) as err:
        dev.read(EP_BULK_IN, 600, 1000)
    assert err.value.backend_error_code == -8


def test_kl720_uses_1024_byte_packets(emu):
    backend, _ = emu("KL720")
    dev = host.open_dev(backend)
    host.write(dev, build_command(CommandId.MEMORY_READ, struct.pack("<II", 0, 1024)))
    host.read(dev, 4)
    assert len(dev.read(EP_BULK_IN, 2048, 1000)) == 1024  # ZLP ends the transfer
    assert host.command(dev, CommandId.GET_TDC_TEMPERATURE, reply=8)[:4] == bytes(4)


def test_timeouts_raise_pyusb_timeout_errors(emu):
    backend, _ = emu("KL520")
    dev = host.open_dev(backend)
    start = time.monotonic()
    with pytest.raises(usb.core.USBTimeoutError) as err:
        dev.read(EP_BULK_IN, 2 * 1024 * 1024, 30)
    assert err.value.backend_error_code == -7 and time.monotonic() - start >= 0.02


@pytest.mark.parametrize("request_, value, index, expected", [
    (0x80, 0, 0, 0),        # FIFO reset: always ACK
    (0x81, 0, 0, -9),       # FIFOQ_GET_STATUS: not in 2.2.0
    (0x83, 1, 0, 0),        # frame drop on
    (0x83, 0, 0, 0),
    (0x86, 0, 0, -9),       # FIFOQ_ADD_BUFFER: 3.x only
    (0x90, 0, 0, -9),       # unknown vendor request
    (0x84, *heap_boundary_setup(0x61400000), 0),
    (0x84, *heap_boundary_setup(0x64000000), -9),  # above the heap tail
])
def test_vendor_controls(emu, request_, value, index, expected):
    backend, _ = emu("KL520")
    dev = host.open_dev(backend)
    assert host.ctrl(dev, request_, value, index) == expected


def test_vendor_in_requests_stall(emu):
    backend, _ = emu("KL520")
    dev = host.open_dev(backend)
    with pytest.raises(usb.core.USBError) as err:
        dev.ctrl_transfer(0xC0, 0x80, 0, 0, 4)
    assert err.value.backend_error_code == -9


def test_fifo_configure_once_and_only_if_it_fits(emu):
    backend, dongle = emu("KL520")
    dev = host.open_dev(backend)
    assert host.ctrl(dev, 0x82, *fifoq_configure_setup(8, 8192 * 10240, 8, 8192 * 10240)) == -9
    assert host.ctrl(dev, 0x82, *fifoq_configure_setup(2, 20480, 2, 10240)) == 0
    assert host.ctrl(dev, 0x82, *fifoq_configure_setup(2, 20480, 2, 10240)) == -9
    fifo = host.command(dev, CommandId.GET_FIFOQ_CONFIG, reply=16)
    assert struct.unpack("<4I", fifo) == (2, 20480, 2, 10240)
    ddr = struct.unpack("<4I", host.command(dev, CommandId.GET_DDR_CONFIG, reply=16))
    assert ddr == (0x60000000, 0x63FC0000 - 2 * 20480 - 2 * 10240, 0, 1)


def test_shutdown_kl520_leaves_the_bus_kl720_stalls(emu):
    backend, dongle = emu("KL520")
    dev = host.open_dev(backend)
    assert host.ctrl(dev, 0xFE) == 0
    assert dongle.state == "absent" and host.find(backend, wait=False) is None
    with pytest.raises(usb.core.USBError) as err:
        dev.write(EP_BULK_OUT, SYSINFO, 100)
    assert err.value.backend_error_code == -4
    backend720, _ = emu("KL720")
    assert host.ctrl(host.open_dev(backend720), 0xFE) == -9
