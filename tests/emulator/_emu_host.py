"""A minimal KDP2 host for the emulator's tests, written directly on pyusb (PROTOCOL.md §2,
§4, §5) so the tests do not depend on the project's host library."""

from __future__ import annotations

import struct

import usb.core
import usb.util  # noqa: F401  (re-exported for tests)
import usb.util

from kp_backend.nef import read_nef
from kp_backend.protocol.constants import (
    CHUNK_SIZE,
    EP_BULK_IN,
    EP_BULK_OUT,
    FAKE_ZLP,
    VENDOR_ID,
    CommandId,
    ImageFormat,
    NormalizeMode,
    PaddingMode,
    ResizeMode,
)
from kp_backend.protocol.wire import (
    BypassRequestHeader,
    CropBox,
    ImageRequestHeader,
    LoadModelRequest,
    build_command,
    fifoq_configure_setup,
    heap_boundary_setup,
)

T = 2000  # ms

# model ids of the generated NEFs of conftest.py
KL520_MODEL = 7
KL720_MODEL = 9
TWIN_MODEL = 12


def find(backend, wait: bool = True) -> usb.core.Device:
    import time

    deadline = time.monotonic() + 3
    while True:
        dev = usb.core.find(idVendor=VENDOR_ID, backend=backend)
        if dev is not None or not wait or time.monotonic() > deadline:
            return dev
        time.sleep(0.005)


def open_dev(backend) -> usb.core.Device:
    dev = find(backend)
    dev.set_configuration()
    usb.util.claim_interface(dev, 0)
    return dev


def packet(dev) -> int:
    return dev[0][(0, 0)][0].wMaxPacketSize


def write(dev, data: bytes, timeout: int = T) -> int:
    """One logical write: 2 MiB pieces, then the fake ZLP after a packet multiple."""
    for start in range(0, max(len(data), 1), CHUNK_SIZE):
        dev.write(EP_BULK_OUT, data[start:start + CHUNK_SIZE], timeout)
    if data and len(data) % packet(dev) == 0:
        dev.write(EP_BULK_OUT, FAKE_ZLP, timeout)
    return len(data)


def read(dev, size: int, timeout: int = T) -> bytes:
    """One logical read with the ZLP read-after (§2.2)."""
    out = b""
    while len(out) < size:
        want = min(CHUNK_SIZE, size - len(out))
        got = bytes(dev.read(EP_BULK_IN, want, timeout))
        out += got
        if len(got) < want:
            break
    if len(out) == size and size % packet(dev) == 0:
        assert bytes(dev.read(EP_BULK_IN, 4, 5)) == b"", "expected a zero-length packet"
    return out


def command(dev, command_id: int, body: bytes = b"", reply: int = 0, timeout: int = T) -> bytes:
    write(dev, build_command(command_id, body), timeout)
    return read(dev, reply, timeout) if reply else b""


def ctrl(dev, request: int, value: int = 0, index: int = 0, timeout: int = T) -> int:
    """A vendor control; returns 0 or the libusb error code."""
    try:
        dev.ctrl_transfer(0x40, request, value, index, None, timeout)
        return 0
    except usb.core.USBError as exc:
        return exc.backend_error_code


def load_model(dev, nef: bytes) -> int:
    parsed = read_nef(nef)
    write(dev, LoadModelRequest(len(parsed.all_models), bytes(parsed.fw_info)).pack())
    rc = struct.unpack("<i", read(dev, 4))[0]
    if rc == 0:
        write(dev, bytes(parsed.all_models))
    return rc


def configure_fifo(dev, inputs: int = 3, in_size: int = 1_024_000, results: int = 3,
                   res_size: int = 102_400) -> tuple[int, int]:
    ddr = command(dev, CommandId.GET_DDR_CONFIG, reply=16)
    _, _, model_end, _ = struct.unpack("<4I", ddr)
    rc84 = ctrl(dev, 0x84, *heap_boundary_setup(model_end))
    rc82 = ctrl(dev, 0x82, *fifoq_configure_setup(inputs, in_size, results, res_size))
    return rc84, rc82


def send_bypass(dev, inference_number: int, model_id: int, data: bytes, timeout: int = T,
                **kw) -> None:
    write(dev, BypassRequestHeader(inference_number, model_id, len(data), **kw).pack(), timeout)
    write(dev, data, timeout)


def image_header(inference_number: int, model_id: int, width: int, height: int, nbytes: int,
                 fmt: int = ImageFormat.KP_IMAGE_FORMAT_RGBA8888,
                 resize: int = ResizeMode.KP_RESIZE_ENABLE,
                 padding: int = PaddingMode.KP_PADDING_CORNER,
                 norm: int = NormalizeMode.KP_NORMALIZE_KNERON,
                 crops: tuple[CropBox, ...] = (), **kw) -> ImageRequestHeader:
    return ImageRequestHeader(140 + nbytes, inference_number, model_id, width, height, resize,
                              padding, fmt, norm, crops, **kw)


def send_image(dev, header: ImageRequestHeader, image: bytes, timeout: int = T) -> None:
    write(dev, header.pack(), timeout)
    write(dev, image, timeout)
