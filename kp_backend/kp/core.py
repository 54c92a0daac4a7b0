"""``kp.core``: devices, firmware, models, timeouts (KP_PYTHON_API.md §3).

A class used as a namespace of static functions, as in Kneron's package. Extensions: the
keyword-only ``backend=`` of :meth:`core.scan_devices` / :meth:`core.connect_devices`
(a pyusb backend object, ``"libusb"``, or a virtual-device spec such as ``"KL520,KL720"``).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Sequence

from kp_backend.device import DdrManageAttributes as _LowDdr
from kp_backend.device import DeviceGroup as _LowGroup
from kp_backend.device import KpError
from kp_backend.kp._convert import (
    device_descriptor,
    models_descriptor,
    nef_descriptor,
    system_info,
)
from kp_backend.kp._group import DeviceGroup
from kp_backend.kp.exception import ApiKPException, api_function
from kp_backend.kp.enum import ResetMode
from kp_backend.kp.value import (
    DdrManageAttributes,
    DeviceDescriptorList,
    ModelNefDescriptor,
    SystemInfo,
)
from kp_backend.nef import NefError
from kp_backend.nef.fw_info import parse_fw_info
from kp_backend.nef.reader import models_from_fw_info
from kp_backend.protocol.codes import ApiReturnCode
from kp_backend.usb import find_devices

__all__ = ["core", "PLUS_VERSION"]

log = logging.getLogger(__name__)
RC = ApiReturnCode

#: The Kneron PLUS release whose behaviour and wire format this package reproduces.
PLUS_VERSION = "2.2.0"


def _low(device_group: DeviceGroup, function_name: str) -> _LowGroup:
    group = getattr(device_group, "group", None)
    if not isinstance(device_group, DeviceGroup) or group is None:
        raise ApiKPException(RC.KP_ERROR_DEVICE_NOT_EXIST_10, function_name,
                             detail=f"expected a connected kp.DeviceGroup, got "
                                    f"{type(device_group).__name__}")
    return group


def _read_file(path: Any, function_name: str) -> bytes:
    try:
        with open(os.fspath(path), "rb") as fh:
            return fh.read()
    except (OSError, TypeError) as exc:
        raise ApiKPException(RC.KP_ERROR_FILE_OPEN_FAILED_20, function_name,
                             detail=f"cannot read {path!r}: {exc}") from exc


def _port_ids(usb_port_ids: Any, function_name: str) -> list[int]:
    if isinstance(usb_port_ids, (int, str, bytes)) or not hasattr(usb_port_ids, "__iter__"):
        raise ApiKPException(RC.KP_ERROR_INVALID_PARAM_12, function_name,
                             detail=f"usb_port_ids must be a list of ints, got {usb_port_ids!r}")
    try:
        return [int(p) for p in usb_port_ids]
    except (TypeError, ValueError) as exc:
        raise ApiKPException(RC.KP_ERROR_INVALID_PARAM_12, function_name,
                             detail=f"usb_port_ids must be ints: {exc}") from exc


class core:  # noqa: N801 - Kneron's name
    """Device management (``kp.core``)."""

    @staticmethod
    @api_function
    def scan_devices(*, backend: Any = None) -> DeviceDescriptorList:
        """Every Kneron device (vendor 0x3231), connectable or not: a snapshot."""
        return DeviceDescriptorList([device_descriptor(i) for i in find_devices(backend)])

    @staticmethod
    def _connect(usb_port_ids: Sequence[int], backend: Any, check: bool, name: str) -> DeviceGroup:
        ids = _port_ids(usb_port_ids, name)
        try:
            low = _LowGroup.connect(ids, backend, check=check)
        except KpError as exc:
            raise ApiKPException(exc.kp_code, name, detail=exc.text) from exc
        return DeviceGroup(group=low)

    @staticmethod
    def connect_devices(usb_port_ids: Sequence[int], *, backend: Any = None) -> DeviceGroup:
        """Connect the devices at ``usb_port_ids`` (``[0]`` = the first one found)."""
        return core._connect(usb_port_ids, backend, True, "connect_devices")

    @staticmethod
    def connect_devices_without_check(usb_port_ids: Sequence[int], *,
                                      backend: Any = None) -> DeviceGroup:
        """As :meth:`connect_devices` without reading the firmware version."""
        return core._connect(usb_port_ids, backend, False, "connect_devices_without_check")

    @staticmethod
    def disconnect_devices(device_group: DeviceGroup) -> None:
        """Release the devices; a second call is a no-op."""
        group = getattr(device_group, "group", None)
        if group is not None:
            group.close()

    @staticmethod
    @api_function
    def set_timeout(device_group: DeviceGroup, milliseconds: int) -> None:
        """One timeout (ms) for every later USB transfer of the group; 0 = forever."""
        _low(device_group, "set_timeout").set_timeout(int(milliseconds))

    @staticmethod
    def reset_device(device_group: DeviceGroup, reset_mode: ResetMode,
                     sleep_secs: float = 0) -> None:
        """Reboot, reset the inference queues, or shut down; then sleep ``sleep_secs``
        (before any error is raised, as Kneron does)."""
        error: ApiKPException | None = None
        try:
            _low(device_group, "reset_device").reset(int(reset_mode))
        except KpError as exc:
            error = ApiKPException(exc.kp_code, "reset_device", detail=exc.text)
            error.__cause__ = exc
        if sleep_secs:
            time.sleep(sleep_secs)
        if error is not None:
            raise error

    @staticmethod
    @api_function
    def load_firmware(device_group: DeviceGroup, scpu_fw_buffer: bytes,
                      ncpu_fw_buffer: bytes) -> None:
        """Upload SCPU + NCPU firmware (KL520 USB-boot dongles; flash-boot devices skip)."""
        _low(device_group, "load_firmware").load_firmware(bytes(scpu_fw_buffer),
                                                          bytes(ncpu_fw_buffer))
        device_group._descriptor = ModelNefDescriptor()

    @staticmethod
    @api_function
    def load_firmware_from_file(device_group: DeviceGroup, scpu_fw_path: str,
                                ncpu_fw_path: str) -> None:
        scpu = _read_file(scpu_fw_path, "load_firmware_from_file")
        ncpu = _read_file(ncpu_fw_path, "load_firmware_from_file")
        _low(device_group, "load_firmware_from_file").load_firmware(scpu, ncpu)
        device_group._descriptor = ModelNefDescriptor()

    @staticmethod
    def _load(device_group: DeviceGroup, data: bytes, name: str) -> ModelNefDescriptor:
        low = _low(device_group, name)
        try:
            nef = low.load_model(data)
        except KpError as exc:
            raise ApiKPException(exc.kp_code, name, detail=exc.text) from exc
        device_group._descriptor = nef_descriptor(nef)
        return device_group._descriptor

    @staticmethod
    def load_model(device_group: DeviceGroup, nef_buffer: bytes) -> ModelNefDescriptor:
        """Upload a NEF (bytes) and size the device queues; returns its descriptor."""
        if not isinstance(nef_buffer, (bytes, bytearray, memoryview)):
            raise ApiKPException(RC.KP_ERROR_INVALID_PARAM_12, "load_model",
                                 detail=f"nef_buffer must be bytes, got "
                                        f"{type(nef_buffer).__name__}")
        return core._load(device_group, bytes(nef_buffer), "load_model")

    @staticmethod
    def load_model_from_file(device_group: DeviceGroup, file_path: str) -> ModelNefDescriptor:
        """As :meth:`load_model` from a file path (20 when it cannot be read)."""
        data = _read_file(file_path, "load_model_from_file")
        return core._load(device_group, data, "load_model_from_file")

    @staticmethod
    @api_function
    def get_system_info(device_group: DeviceGroup, usb_port_id: int) -> SystemInfo:
        """KN number and firmware version of the device at ``usb_port_id``."""
        return system_info(_low(device_group, "get_system_info").get_system_info(int(usb_port_id)))

    @staticmethod
    @api_function
    def get_model_info(device_group: DeviceGroup, usb_port_id: int) -> ModelNefDescriptor:
        """The device's own view of its loaded models (rebuilt from its setup data)."""
        reply = _low(device_group, "get_model_info").get_model_info(int(usb_port_id))
        try:
            fw = parse_fw_info(reply.fw_info)
            models = models_from_fw_info(reply.target_chip, reply.fw_info, list(reply.setups))
        except (NefError, ValueError) as exc:
            raise ApiKPException(RC.KP_ERROR_OTHER_99, "get_model_info",
                                 detail=f"unreadable model info from the device: {exc}") from exc
        return models_descriptor(reply.target_chip, fw.model_checksum, models)

    @staticmethod
    @api_function
    def store_ddr_management_attributes(device_group: DeviceGroup,
                                        ddr_manage_attributes: DdrManageAttributes) -> None:
        """Fix FIFO/DDR sizing for the next model load (0 = computed)."""
        a = ddr_manage_attributes
        _low(device_group, "store_ddr_management_attributes").ddr_attributes = _LowDdr(
            a.model_size, a.input_buffer_size, a.input_buffer_count, a.result_buffer_size,
            a.result_buffer_count)

    @staticmethod
    def install_driver_for_windows(product_id: int) -> None:
        """Windows driver installation is not provided (38 on every host)."""
        detail = ("not a Windows host" if not sys.platform.startswith("win")
                  else "use Zadig/WinUSB to install the driver; kp_backend does not ship one")
        raise ApiKPException(RC.KP_ERROR_INVALID_HOST_38, "install_driver_for_windows",
                             detail=detail)

    @staticmethod
    def get_version() -> str:
        """The Kneron PLUS version reproduced (``"2.2.0"``)."""
        return PLUS_VERSION
