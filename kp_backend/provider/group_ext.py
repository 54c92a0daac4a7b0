"""What the provider needs from the device group beyond its public API.

One function, kept here until :class:`~kp_backend.device.DeviceGroup` offers it.
"""

from __future__ import annotations

from collections.abc import Sequence

from kp_backend.device import DeviceGroup
from kp_backend.protocol.constants import BYPASS_REQUEST_HEADER_SIZE
from kp_backend.protocol.wire import BypassRequestHeader

__all__ = ["send_bypass_inputs"]


def send_bypass_inputs(group: DeviceGroup, model_id: int, inference_number: int,
                       payloads: Sequence[bytes], device_index: int = 0) -> None:
    """Job 17 for a model with N input nodes (PROTOCOL.md §5.5): N header + data pairs with
    the same inference number, ``total_image`` N and ``image_index`` 0…N-1, back to back
    under the device's OUT lock, after the group's own host checks (§5.3)."""
    # TODO(lead): DeviceGroup.send_bypass sends total_image = 1 only; this uses its private
    # _check_send/_send_pair. Replace with a public DeviceGroup.send_bypass(..., payloads).
    link = group._link_at(device_index)
    count = len(payloads)
    for data in payloads:
        group._check_send(model_id, BYPASS_REQUEST_HEADER_SIZE + len(data), count)
    with link.out_lock:
        for index, data in enumerate(payloads):
            header = BypassRequestHeader(int(inference_number), int(model_id), len(data),
                                         total_image=count, image_index=index).pack()
            group._send_pair(link, header, memoryview(data), "bypass inference")
