"""Boot states, re-enumeration and the KDP2 commands (PROTOCOL.md §1.4, §4, §7.1)."""

from __future__ import annotations

import struct

import pytest
import usb.core
import usb.util

import _emu_host as host
from kp_backend.nef import models_from_fw_info, read_nef
from kp_backend.protocol.constants import EP_BULK_OUT, CommandId
from kp_backend.protocol.wire import LoadFirmwareRequest, LoadModelRequest, build_command

SYSINFO_REPLY = bytes.fromhex("000000004d3c2b1a00020200ca040000")


def _upload_firmware(dev, fw_type: int, size: int) -> None:
    host.write(dev, LoadFirmwareRequest(fw_type, 0x10104000 if fw_type == 1 else 0, size).pack())
    host.write(dev, bytes(range(256)) * (size // 256) + bytes(size % 256))


def test_kl520_usb_boot_loader_to_application(emu, kl520_nef):
    backend, dongle = emu("KL520", boot="usb")
    dev = host.open_dev(backend)
    assert (dev.bcdDevice, dongle.state) == (0x0083, "loader")
    host.write(dev, build_command(CommandId.GET_SYSTEM_INFO))  # the loader ignores it
    _upload_firmware(dev, 1, 52_568)
    assert dongle.settle()
    with pytest.raises(usb.core.USBError) as err:
        dev.write(EP_BULK_OUT, build_command(CommandId.GET_SYSTEM_INFO), 100)
    assert err.value.backend_error_code == -4  # handle of the old enumeration
    app = host.open_dev(backend)
    assert (app.bcdDevice, app.bus, app.port_numbers, dongle.state) == (0x00B0, 1, (2, 3), "usb")
    assert host.ctrl(app, 0x80) == 0
    # before the NCPU image the NPU cannot run: status 101
    assert host.load_model(app, kl520_nef) == 0
    assert host.configure_fifo(app) == (0, 0)
    host.send_bypass(app, 1, 7, bytes(256))
    assert struct.unpack_from("<I", host.read(app, 508), 12)[0] == 101
    _upload_firmware(app, 2, 39_908)
    assert host.command(app, CommandId.GET_SYSTEM_INFO, reply=16) == SYSINFO_REPLY
    host.send_bypass(app, 2, 7, bytes(256))
    assert struct.unpack_from("<I", host.read(app, 508), 12)[0] == 0
    # a reboot of the USB-boot application goes back to the loader
    assert host.ctrl(app, 0xFF) == 0
    assert dongle.settle()
    assert host.find(backend).bcdDevice == 0x0083


def test_flash_boot_reboot_keeps_the_firmware_and_loses_the_model(emu, kl520_nef):
    backend, dongle = emu("KL520", boot="flash")
    dev = host.open_dev(backend)
    assert host.load_model(dev, kl520_nef) == 0
    assert host.command(dev, CommandId.GET_MODEL_INFO, struct.pack("<I", 1), reply=12)[:4] == bytes(4)
    host.read(dev, 16 + 56 * 3)
    generation = dongle.generation
    assert host.ctrl(dev, 0xFF) == 0
    assert dongle.settle() and dongle.generation == generation + 1
    with pytest.raises(usb.core.USBError) as err:
        dev.ctrl_transfer(0x40, 0x80, 0, 0, None, 100)
    assert err.value.backend_error_code == -4
    again = host.open_dev(backend)
    assert again.bcdDevice == 0x00B1 and again.port_numbers == (2, 3)
    head = host.command(again, CommandId.GET_MODEL_INFO, struct.pack("<I", 1), reply=12)
    assert struct.unpack("<3I", head) == (109, 0, 1)


def test_kl720_flash_and_preloaded_usb_boot(emu):
    backend, _ = emu("KL720")
    assert host.find(backend).bcdDevice == 0x00B1
    backend2, d2 = emu("KL720", boot="usb", firmware_loaded=True)
    assert host.find(backend2).bcdDevice == 0x00B0
    host.ctrl(host.open_dev(backend2), 0x85)  # REBOOT_SYSTEM
    assert d2.settle() and host.find(backend2).bcdDevice == 0x00B0


def test_system_info_reports_kn_and_version(emu):
    backend, _ = emu("KL720", kn_number=0xAB062D4C)
    reply = host.command(host.open_dev(backend), CommandId.GET_SYSTEM_INFO, reply=16)
    assert reply == bytes.fromhex("000000004c2d06ab00020200ca040000")


def test_load_model_and_model_info_round_trip(emu, kl520_nef):
    backend, dongle = emu("KL520")
    dev = host.open_dev(backend)
    head = host.command(dev, CommandId.GET_MODEL_INFO, struct.pack("<I", 1), reply=12)
    assert struct.unpack("<3I", head) == (109, 0, 1)
    assert host.load_model(dev, kl520_nef) == 0
    nef = read_nef(kl520_nef)
    head = struct.unpack("<3I", host.command(dev, CommandId.GET_MODEL_INFO, struct.pack("<I", 1), reply=12))
    assert head == (0, 16 + 56 * 3, 1)
    fw_info = host.read(dev, head[1])
    assert fw_info == bytes(nef.fw_info[:head[1]])
    rc, total = struct.unpack("<2I", host.read(dev, 8))
    blobs = []
    for _ in nef.models:
        rc_i, size = struct.unpack("<2I", host.read(dev, 8))
        blobs.append(host.read(dev, size))
    assert rc == 0 and total == sum(len(b) for b in blobs)
    models = models_from_fw_info(1, fw_info, blobs)
    assert [m.id for m in models] == [7, 8, 12]
    assert [t.shape_npu for t in models[0].outputs] == [(1, 2, 3, 5), (1, 1, 1, 10)]
    ddr = struct.unpack("<4I", host.command(dev, CommandId.GET_DDR_CONFIG, reply=16))
    assert ddr == (0x60000000, 0x63FC0000, nef.fw_info_table.model_dram_addr_end, 0)
    assert host.command(dev, CommandId.GET_FIFOQ_CONFIG, reply=16) == bytes(16)


def test_load_model_refusals(emu, kl520_nef):
    backend, _ = emu("KL520")
    dev = host.open_dev(backend)
    nef = read_nef(kl520_nef)
    empty = struct.pack("<I", 0) + bytes(12)
    host.write(dev, LoadModelRequest(10, empty).pack())
    assert host.read(dev, 4) == struct.pack("<i", 104)
    fw = bytearray(nef.fw_info)
    struct.pack_into("<I", fw, 4 + 56 * 3, 0x63FC0000)  # model end at the heap tail
    host.write(dev, LoadModelRequest(len(nef.all_models), bytes(fw)).pack())
    assert host.read(dev, 4) == struct.pack("<i", 104)
    assert host.command(dev, CommandId.LOAD_MODEL_FROM_FLASH, reply=4) == struct.pack("<i", 104)


def test_debug_and_profile_commands(emu):
    backend, _ = emu("KL520")
    dev = host.open_dev(backend)
    assert host.command(dev, CommandId.SET_PROFILE_ENABLE, bytes(4), reply=4) == bytes(4)
    assert host.command(dev, CommandId.GET_PROFILE_STATISTICS, reply=516) == bytes(516)
    host.write(dev, build_command(CommandId.MEMORY_WRITE, struct.pack("<II", 0x60000000, 8)))
    host.write(dev, bytes(8))
    assert host.read(dev, 4) == bytes(4)
    assert host.command(dev, CommandId.READ_FLASH, struct.pack("<II", 0, 4), reply=4) == bytes(4)
    assert host.read(dev, 4) == b"\xff" * 4
    legacy = struct.pack("<HHHHI", 0xA583, 0xC008, 0x25, 0, 0x2AB7)
    host.write(dev, legacy)
    assert host.read(dev, 16) == bytes(16)


def test_two_dongles_work_independently(kl520_nef):
    from kp_backend.emulator import VirtualDongle, VirtualUsbBackend

    with VirtualUsbBackend([VirtualDongle("KL520", timing="fast"),
                            VirtualDongle("KL520", timing="fast", boot="usb", firmware_loaded=True)]) as backend:
        devs = list(usb.core.find(find_all=True, idVendor=0x3231, backend=backend))
        assert sorted(d.bcdDevice for d in devs) == [0x00B0, 0x00B1]
        for dev in devs:
            dev.set_configuration()
            usb.util.claim_interface(dev, 0)
        kn = [struct.unpack_from("<I", host.command(d, CommandId.GET_SYSTEM_INFO, reply=16), 4)[0]
              for d in devs]
        assert sorted(kn) == [0x1A2B3C4D, 0x1A2B3C4E]
        assert host.load_model(devs[0], kl520_nef) == 0
        head = host.command(devs[1], CommandId.GET_MODEL_INFO, struct.pack("<I", 1), reply=12)
        assert struct.unpack("<I", head[:4])[0] == 109  # the other dongle has no model
        for dev in devs:
            usb.util.dispose_resources(dev)


def test_dongle_api_reboot_and_unplug(emu):
    backend, dongle = emu("KL520")
    dev = host.open_dev(backend)
    dongle.reboot()
    assert dongle.settle() and dongle.state == "flash" and dongle.generation == 2
    with pytest.raises(usb.core.USBError):
        host.command(dev, CommandId.GET_SYSTEM_INFO, reply=16)
    dongle.unplug()
    assert dongle.state == "absent" and host.find(backend, wait=False) is None
    dongle.close()
    dongle.close()  # idempotent
