"""USB identity of virtual dongles through pyusb (PROTOCOL.md §1): descriptors, strings,
bus/ports/speed, several dongles, the spec grammar and the shared backend."""

from __future__ import annotations

import pytest
import usb.core
import usb.util

from kp_backend.emulator import (
    SpecError,
    VirtualDongle,
    VirtualUsbBackend,
    get_shared_virtual_backend,
    parse_spec,
    virtual_backend_from_spec,
)
from kp_backend.emulator.descriptors import config_descriptor, device_descriptor, string_descriptor
from kp_backend.npu_types import Chip
from kp_backend.protocol.constants import VENDOR_ID
from kp_backend.protocol.wire import port_id_from_ports


def test_kl520_descriptors_are_the_spec_bytes():
    assert device_descriptor(Chip.KL520, 3, 0x00B1).hex() == "120100020000004031320001b10001020301"
    assert config_descriptor(Chip.KL520, 3).hex() == (
        "09022000010100c0000904000002ff0000000705020200020007058102000200")


def test_kl720_super_and_high_speed_descriptors():
    dev = device_descriptor(Chip.KL720, 4, 0x00B1)
    assert dev.hex() == "120100030000000931322007b10001020301"
    ss = config_descriptor(Chip.KL720, 4)
    assert len(ss) == 44 and ss[18:20] == b"\x07\x05" and ss[20] == 0x81  # IN listed first
    assert ss[25:27] == b"\x06\x30"  # SuperSpeed companion
    hs = config_descriptor(Chip.KL720, 3)
    assert len(hs) == 32 and hs[8] == 0xFA and hs[22:24] == (512).to_bytes(2, "little")
    assert device_descriptor(Chip.KL720, 3, 0xB1)[2:4] == b"\x10\x02"


def test_log_endpoint_is_optional():
    cfg = config_descriptor(Chip.KL520, 3, log_endpoint=True)
    assert cfg[13] == 3 and cfg[-7:-5] == b"\x07\x05" and cfg[-5] == 0x83


def test_strings():
    assert string_descriptor(0, Chip.KL520, 1) == b"\x04\x03\x09\x04"
    assert string_descriptor(3, Chip.KL720, 0xAB062D4C) == b"\x12\x03" + "AB062D4C".encode("utf-16-le")
    assert string_descriptor(2, Chip.KL720, 0)[2:].decode("utf-16-le") == "Kneron KL720"
    assert string_descriptor(9, Chip.KL520, 0) is None


def test_pyusb_sees_the_dongle_like_hardware(emu):
    backend, dongle = emu("KL520")
    dev = usb.core.find(idVendor=VENDOR_ID, backend=backend)
    assert (dev.idProduct, dev.bcdDevice, dev.bus, dev.port_numbers, dev.speed) == (
        0x100, 0x00B1, 1, (2, 3), 3)
    assert dongle.port_id == 393 == port_id_from_ports(dev.bus, dev.port_numbers)
    assert usb.util.get_string(dev, dev.iSerialNumber) == "1A2B3C4D"
    assert usb.util.get_string(dev, 1) == "Kneron"
    intf = dev[0][(0, 0)]
    assert sorted(e.bEndpointAddress for e in intf) == [0x02, 0x81]
    assert all(e.wMaxPacketSize == 512 for e in intf)
    assert dev.ctrl_transfer(0x80, 0x00, 0, 0, 2).tobytes() == b"\x01\x00"  # self powered
    with pytest.raises(usb.core.USBError) as err:
        dev.ctrl_transfer(0x80, 0x06, 0x0309, 0x0409, 255)  # string 9 does not exist
    assert err.value.backend_error_code == -9


def test_kl720_is_super_speed_with_1024_byte_packets(emu):
    backend, _ = emu("KL720")
    dev = usb.core.find(idVendor=VENDOR_ID, backend=backend)
    assert (dev.idProduct, dev.speed, dev.bcdUSB) == (0x720, 4, 0x0300)
    assert all(e.wMaxPacketSize == 1024 for e in dev[0][(0, 0)])


def test_several_dongles_get_distinct_ports_and_kn_numbers():
    with VirtualUsbBackend([VirtualDongle("KL520", timing="fast"),
                            VirtualDongle("KL720", timing="fast")]) as backend:
        devs = list(usb.core.find(find_all=True, idVendor=VENDOR_ID, backend=backend))
        assert len(devs) == 2
        ids = {port_id_from_ports(d.bus, d.port_numbers) for d in devs}
        assert ids == {393, 1 + (2 << 2) + (4 << 7)}
        serials = {usb.util.get_string(d, 3) for d in devs}
        assert serials == {"1A2B3C4D", "1A2B3C4E"}
        assert backend.dongle(393).chip is Chip.KL520


def test_explicit_port_clash_is_refused():
    backend = VirtualUsbBackend([VirtualDongle("KL520", port="1-5", timing="fast")])
    try:
        with pytest.raises(ValueError, match="already used"):
            backend.add(VirtualDongle("KL520", port=(1, (5,)), timing="fast"))
    finally:
        backend.close()


def test_claim_by_a_second_handle_is_busy(emu):
    backend, _ = emu("KL520")
    a = usb.core.find(idVendor=VENDOR_ID, backend=backend)
    b = usb.core.find(idVendor=VENDOR_ID, backend=backend)
    usb.util.claim_interface(a, 0)
    with pytest.raises(usb.core.USBError) as err:
        usb.util.claim_interface(b, 0)
    assert err.value.backend_error_code == -6
    usb.util.dispose_resources(a)
    usb.util.claim_interface(b, 0)
    usb.util.dispose_resources(b)


@pytest.mark.parametrize("bad, match", [
    (dict(chip="KL630"), "not emulated"),
    (dict(chip="KL520", boot="jtag"), "boot"),
    (dict(chip="KL520", link_speed="super"), "high-speed"),
    (dict(chip="KL720", boot="usb"), "USB-DFU"),
    (dict(chip="KL520", port="x"), "port"),
    (dict(chip="KL520", compute="magic"), "compute"),
    (dict(chip="KL520", timing="slow"), "timing"),
])
def test_bad_constructor_arguments_are_named(bad, match):
    with pytest.raises(ValueError, match=match):
        VirtualDongle(**bad)


def test_spec_grammar():
    assert parse_spec("KL520") == [{"chip": "KL520"}]
    assert [d["chip"] for d in parse_spec("KL520, kl720")] == ["KL520", "KL720"]
    assert parse_spec("KL520:usb:fw:fast") == [
        {"chip": "KL520", "boot": "usb", "firmware_loaded": True, "timing": "fast"}]
    two = parse_spec("2xKL520:kn=10")
    assert [d["kn_number"] for d in two] == [0x10, 0x11]
    assert parse_spec("KL720:hs:npu=2:pattern")[0] == {
        "chip": "KL720", "link_speed": "hs", "npu_time": 0.002, "compute": "transcript_pattern"}
    for bad in ("", "KL999x", "KL520:warp", "KL520:kn=zz", "30xKL520"):
        with pytest.raises(SpecError):
            parse_spec(bad)
    with pytest.raises(SpecError, match="USB-DFU"):
        virtual_backend_from_spec("KL720:usb")


def test_backend_from_spec_defaults_to_flash_boot():
    with virtual_backend_from_spec("KL520:fast,KL520:usb:fast") as backend:
        states = [d.state for d in backend.dongles]
        assert states == ["flash", "loader"]
        assert [d.bcd_device for d in backend.dongles] == [0x00B1, 0x0083]


def test_shared_backend_is_cached_per_spec_and_reads_the_environment(monkeypatch):
    monkeypatch.setenv("KP_VIRTUAL_DEVICES", "KL720:fast")
    a = get_shared_virtual_backend()
    assert a is get_shared_virtual_backend("KL720:fast")
    assert [d.chip for d in a.dongles] == [Chip.KL720]
    b = get_shared_virtual_backend("KL520:fast")
    assert b is not a and b is get_shared_virtual_backend("KL520:fast")
