"""``kp.DeviceGroup``: the handle ``connect_devices`` returns, wrapping a
:class:`kp_backend.device.DeviceGroup`. Garbage collection disconnects it, as in Kneron's
package (but a failed connect never produces a half-made group that crashes later)."""

from __future__ import annotations

import weakref

from kp_backend.device import DeviceGroup as _LowGroup
from kp_backend.kp.value import (
    DdrManageAttributes,
    DeviceGroupContent,
    ModelNefDescriptor,
    ValueBase,
)

__all__ = ["DeviceGroup"]


class DeviceGroup(ValueBase):
    """A connected group. ``address`` is an opaque id; ``content`` describes the group.
    ``group`` (an extension) is the device-layer object the provider uses."""

    def __init__(self, address: int = 0, *, group: _LowGroup | None = None) -> None:
        self._group = group
        self._address = int(address) if group is None else id(group)
        self._descriptor = ModelNefDescriptor()
        if group is not None:
            self._finalizer = weakref.finalize(self, group.close)

    @property
    def address(self) -> int:
        return self._address

    @property
    def group(self) -> _LowGroup | None:
        return self._group

    @property
    def content(self) -> DeviceGroupContent:
        g = self._group
        if g is None:
            return DeviceGroupContent()
        fifo = g.fifo
        ddr = DdrManageAttributes(
            model_size=fifo.model_size if fifo else g.ddr_attributes.model_size,
            input_buffer_size=fifo.input_buffer_size if fifo else 0,
            input_buffer_count=fifo.input_buffer_count if fifo else 0,
            result_buffer_size=fifo.result_buffer_size if fifo else 0,
            result_buffer_count=fifo.result_buffer_count if fifo else 0)
        return DeviceGroupContent(timeout=g.timeout_ms, num_device=len(g.links),
                                  product_id=g.product_id,
                                  loaded_model_nef_descriptor=self._descriptor,
                                  ddr_manage_attributes=ddr)

    def get_member_variable_dict(self) -> dict:
        return {"address": f"0x{self._address:X}"}
