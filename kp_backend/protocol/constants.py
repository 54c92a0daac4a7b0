"""Numbers of the Kneron PLUS (KDP2) USB protocol, PROTOCOL.md §1–§7: one place for each.

Enums that the ``kp`` Python API exposes (image format, normalise/resize/padding modes,
reset mode, USB speed) are defined here with Kneron's member names so that
``kp_backend.kp`` re-exports them unchanged.
"""

from __future__ import annotations

import enum

# --- USB identity (§1) ---------------------------------------------------------------
VENDOR_ID = 0x3231
PID_KL520 = 0x0100
PID_KL720 = 0x0720
PID_KL720_LEGACY = 0x0200

EP_BULK_OUT = 0x02
EP_BULK_IN = 0x81
EP_INTERRUPT_IN = 0x83  # firmware log; only in firmware built with USB logging
INTERFACE = 0
CONFIGURATION = 1

PACKET_SIZE_HIGH_SPEED = 512
PACKET_SIZE_SUPER_SPEED = 1024

# Strings (§1.2)
MANUFACTURER = "Kneron"
LANGID_EN_US = 0x0409

# --- transfer rules (§2) -------------------------------------------------------------
CHUNK_SIZE = 2 * 1024 * 1024  # every bulk transfer is at most 2 MiB
FAKE_ZLP = b"\x44\x33\x22\x11"  # u32 0x11223344, the KDP2 terminator after packet-multiple writes
ZLP_READ_LENGTH = 4
ZLP_READ_TIMEOUT_MS = 5
DRAIN_READ_SIZE = 4 * 1024 * 1024
DRAIN_READ_TIMEOUT_MS = 200
DRAIN_MAX_READS = 8
CONNECT_SEARCH_TRIES = 10
CONNECT_SEARCH_INTERVAL_S = 0.1
RECONNECT_PAUSE_S = 0.5
RECONNECT_SEARCH_TRIES = 100
CONNECT_SYSINFO_RETRIES = 3
MAX_DEVICES_PER_GROUP = 20

# Firmware-side timeouts (§2.4), used by the emulator.
FW_COMMAND_RESPONSE_TIMEOUT_S = 2.0
FW_MODEL_RECEIVE_TIMEOUT_S = 20.0
FW_NCPU_RECEIVE_TIMEOUT_S = 2.0
NCPU_IMAGE_MAX = 64 * 1024

# --- magics (§3.1) -------------------------------------------------------------------
MAGIC_COMMAND = 0xAB67CD13
MAGIC_INFERENCE = 0x11FF22AA
MAGIC_INFERENCE_V2 = 0x11FF22AB
MAGIC_CUSTOMIZED = 0x11FF33CC
MAGIC_CHECKPOINT = 0x34ABF977
LEGACY_PREAMBLE_HOST = 0xA583
LEGACY_PREAMBLE_DEVICE = 0x8A35
FAKE_ZLP_WORD = 0x11223344


class CommandId(enum.IntEnum):
    """KDP2 bulk command ids (§4.0)."""

    LOAD_MODEL = 0x0A01
    MEMORY_READ = 0x0A02
    MEMORY_WRITE = 0x0A03
    GET_SYSTEM_INFO = 0x0A04
    GET_MODEL_INFO = 0x0A05
    LOAD_FIRMWARE = 0x0A06
    LOAD_MODEL_FROM_FLASH = 0x0A07
    SET_CKEY = 0x0A08
    SET_SBT_KEY = 0x0A09
    SET_GPIO = 0x0A0A
    SET_DBG_CHECKPOINT = 0x0A0B
    SET_PROFILE_ENABLE = 0x0A0C
    GET_PROFILE_STATISTICS = 0x0A0D
    GET_DDR_CONFIG = 0x0A0E
    LOAD_NEF = 0x0A0F
    UPDATE_FIRMWARE = 0x0A10
    SWITCH_BOOT_MODE = 0x0A11
    UPDATE_LOADER = 0x0A12
    GET_FIFOQ_CONFIG = 0x0A13
    SET_PERFORMANCE_MONITOR = 0x0A14
    GET_PERFORMANCE_MONITOR = 0x0A15
    UPDATE_NEF = 0x0A16
    GET_TDC_TEMPERATURE = 0x0A17  # KL720 fw 2.2; 3.x reuses the id as SET_IE_TIMEOUT for KL730
    SET_NPU_TIMEOUT = 0x0A18
    READ_FLASH = 0x0A98
    WRITE_FLASH = 0x0A99
    STOP_USB_RECV = 0x0B00


class ControlRequest(enum.IntEnum):
    """Vendor control requests, bmRequestType 0x40, wLength 0 (§2.3)."""

    FIFOQ_RESET = 0x80
    FIFOQ_GET_STATUS = 0x81
    FIFOQ_CONFIGURE = 0x82
    FIFOQ_ENABLE_DROPPABLE = 0x83
    DDR_HEAP_BOUNDARY_ADJUST = 0x84
    REBOOT_SYSTEM = 0x85
    FIFOQ_ADD_BUFFER = 0x86
    SHUTDOWN = 0xFE
    REBOOT = 0xFF


VENDOR_OUT_REQUEST_TYPE = 0x40

# libusb codes the host accepts as success for REBOOT / SHUTDOWN controls (§2.3)
REBOOT_ACCEPTED_CODES = frozenset({0, -9, -1, -4, -5})


class JobId(enum.IntEnum):
    GENERIC_RAW_IMAGE = 10
    GENERIC_RAW_BYPASS_PRE_PROC = 17


class FirmwareType(enum.IntEnum):
    SCPU = 1
    NCPU = 2


SCPU_FW_START = 0x10104000

# --- bcdDevice "fw_serial" (§1.4) -----------------------------------------------------
FW_KDP2_FAMILY = 0x80
FW_V2_FAMILY = 0x400
FW_TYPE_MASK = 0x83
FW_TYPE_USB = 0x80
FW_TYPE_FLASH = 0x81
FW_TYPE_JTAG = 0x82
FW_TYPE_LOADER = 0x83
FW_V2_TYPE_MASK = 0x407
FW_V2_TYPE_USB = 0x400
FW_V2_TYPE_FLASH = 0x401
FW_V2_TYPE_JTAG = 0x402
FW_V2_TYPE_LOADER = 0x403
FW_MODE_COMPANION = 0xB0
BCD_COMPANION_USB_BOOT = 0x00B0
BCD_COMPANION_FLASH_BOOT = 0x00B1
BCD_COMPANION_JTAG = 0x00B2
BCD_LOADER = 0x0083  # (inferred) PROTOCOL.md §1.4: exact loader word not public
BCD_LEGACY_KDP = 0x0001
BCD_KL720_DFU = 0x0101
BCD_KL720_MINION = 0x00BA

# Firmware version reported by the 2.2.0 KDP2 firmware (§7.6).
FIRMWARE_VERSION = (2, 2, 0)
FIRMWARE_BUILD = 1226

# --- message sizes -------------------------------------------------------------------
COMMAND_HEADER_SIZE = 12
STAMP_SIZE = 24
IMAGE_REQUEST_HEADER_SIZE = 140
BYPASS_REQUEST_HEADER_SIZE = 36
RESULT_HEADER_SIZE = 344
PRE_PROC_INFO_SIZE = 60
MAX_PRE_PROC_INFO = 5
MAX_CROP_BOX = 4
CROP_BOX_SIZE = 20
KL520_NODE_RECORD_SIZE = 24
KL720_NODE_TABLE_ENTRIES = 40
KL720_NODE_ENTRY_SIZE = 56
KL720_NODE_TABLE_SIZE = 8 + KL720_NODE_TABLE_ENTRIES * KL720_NODE_ENTRY_SIZE  # 2248
SYSTEM_INFO_REPLY_SIZE = 16
DDR_CONFIG_REPLY_SIZE = 16
FIFOQ_CONFIG_REPLY_SIZE = 16
MODEL_INFO_HEAD_SIZE = 12
MODEL_INFO_SETUP_HEAD_SIZE = 8
LOAD_MODEL_HEADER_SIZE = 20
LOAD_FIRMWARE_HEADER_SIZE = 88
FW_INFO_RECORD_SIZE = 56

# --- FIFO queue sizing (§4.5) ----------------------------------------------------------
FIFO_UNIT = 10 * 1024
FIFO_MAX_COUNT = 8
FIFO_MAX_UNITS = 8192
SYSTEM_RESERVE = 15 * 1024 * 1024  # KL520/KL720
MIN_INPUT_BUFFER = 4_157_440  # ceil10KiB(2*1920*1080 + 1024)
MAX_INPUT_BUFFER = 16_599_040  # ceil10KiB(2*3840*2160 + 1024)
RESULT_HEADROOM = 1024
DEFAULT_INPUT_COUNT = 3
DEFAULT_RESULT_COUNT = 3
MIN_INPUT_COUNT = 2

# DDR map per product id (§4.5, §7.6); heap tails are the emulator's choice (open question 11),
# the golden transcripts' device used these values.
DDR_BEGIN = {PID_KL520: 0x60000000, PID_KL720: 0x80220000}
DDR_HEAP_TAIL = {PID_KL520: 0x63FC0000, PID_KL720: 0x87FF0000}
DDR_HEAP_LOWER_BOUND = {PID_KL520: 0x61400000, PID_KL720: 0x85900000}

MAX_MODELS_PER_NEF = 16
MAX_INPUT_NODES = 5
MAX_IMAGES_PER_INFERENCE = 5


# --- enums the kp API exposes with these exact member names ---------------------------
class KpEnum(enum.IntEnum):
    """IntEnum printed as Kneron's package prints its enums: ``"ClassName.MEMBER"`` for both
    ``str`` and ``repr`` (Python 3.11's IntEnum would print the number)."""

    def __str__(self) -> str:
        return f"{type(self).__name__}.{self.name}"

    __repr__ = __str__


class ImageFormat(KpEnum):
    KP_IMAGE_FORMAT_UNKNOWN = 0x00
    KP_IMAGE_FORMAT_RGB565 = 0x60
    KP_IMAGE_FORMAT_RGBA8888 = 0x0D
    KP_IMAGE_FORMAT_YUYV = 0x2F
    KP_IMAGE_FORMAT_YCBCR422_CRY1CBY0 = 0x30
    KP_IMAGE_FORMAT_YCBCR422_CBY1CRY0 = 0x31
    KP_IMAGE_FORMAT_YCBCR422_Y1CRY0CB = 0x32
    KP_IMAGE_FORMAT_YCBCR422_Y1CBY0CR = 0x33
    KP_IMAGE_FORMAT_YCBCR422_CRY0CBY1 = 0x34
    KP_IMAGE_FORMAT_YCBCR422_CBY0CRY1 = 0x35
    KP_IMAGE_FORMAT_YCBCR422_Y0CRY1CB = 0x36
    KP_IMAGE_FORMAT_YCBCR422_Y0CBY1CR = 0x37
    KP_IMAGE_FORMAT_RAW8 = 0x20
    KP_IMAGE_FORMAT_YUV420 = 0x70


class NormalizeMode(KpEnum):
    KP_NORMALIZE_DISABLE = 0xFF
    KP_NORMALIZE_KNERON = 0x01
    KP_NORMALIZE_TENSOR_FLOW = 0x02
    KP_NORMALIZE_YOLO = 0x03
    KP_NORMALIZE_CUSTOMIZED_DEFAULT = 0x04
    KP_NORMALIZE_CUSTOMIZED_SUB128 = 0x05
    KP_NORMALIZE_CUSTOMIZED_DIV2 = 0x06
    KP_NORMALIZE_CUSTOMIZED_SUB128_DIV2 = 0x07


class ResizeMode(KpEnum):
    KP_RESIZE_DISABLE = 1
    KP_RESIZE_ENABLE = 2


class PaddingMode(KpEnum):
    KP_PADDING_DISABLE = 1
    KP_PADDING_CORNER = 2
    KP_PADDING_SYMMETRIC = 3


class ResetMode(KpEnum):
    KP_RESET_REBOOT = 0
    KP_RESET_INFERENCE = 1
    KP_RESET_SHUTDOWN = 2
    KP_RESET_REBOOT_SYSTEM = 3


class UsbSpeed(KpEnum):
    KP_USB_SPEED_UNKNOWN = 0
    KP_USB_SPEED_LOW = 1
    KP_USB_SPEED_FULL = 2
    KP_USB_SPEED_HIGH = 3
    KP_USB_SPEED_SUPER = 4


_F = ImageFormat
# Bytes per pixel as the host computes image sizes (§5.2). YUV420 is 1.5 (floor(W*H*1.5)).
BYTES_PER_PIXEL: dict[int, float] = {
    _F.KP_IMAGE_FORMAT_RGB565: 2,
    _F.KP_IMAGE_FORMAT_YUYV: 2,
    **{fmt: 2 for fmt in range(0x30, 0x38)},
    _F.KP_IMAGE_FORMAT_RGBA8888: 4,
    _F.KP_IMAGE_FORMAT_RAW8: 1,
    _F.KP_IMAGE_FORMAT_YUV420: 1.5,
}
