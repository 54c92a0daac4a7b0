"""Property tests of the transfer rules: whatever the message sizes, host writes with the
fake-ZLP rule and host reads with the ZLP read-after keep the pipe in step (PROTOCOL.md §2)."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import _emu_host as host
from kp_backend.emulator import VirtualDongle, VirtualUsbBackend
from kp_backend.protocol.constants import CommandId
from kp_backend.protocol.wire import build_command

SIZES = st.one_of(st.integers(0, 5000), st.sampled_from([511, 512, 513, 1023, 1024, 1025, 2048]))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chip=st.sampled_from(["KL520", "KL720"]), sizes=st.lists(SIZES, min_size=1, max_size=4))
def test_memory_read_write_keep_the_pipe_in_step(chip, sizes):
    with VirtualUsbBackend([VirtualDongle(chip, timing="fast")]) as backend:
        dev = host.open_dev(backend)
        for size in sizes:
            host.write(dev, build_command(CommandId.MEMORY_WRITE, struct.pack("<II", 0, size)))
            host.write(dev, bytes([0x5A]) * size)
            assert host.read(dev, 4) == bytes(4)
            host.write(dev, build_command(CommandId.MEMORY_READ, struct.pack("<II", 0, size)))
            assert host.read(dev, 4) == bytes(4)
            assert len(host.read(dev, size)) == size
        reply = host.command(dev, CommandId.GET_SYSTEM_INFO, reply=16)
        assert reply[4:8] == struct.pack("<I", 0x1A2B3C4D)
        host.usb.util.dispose_resources(dev)
