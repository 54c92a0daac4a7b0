"""FIFO queue sizing after a model load (PROTOCOL.md §4.5): a pure function.

Given the device's free DDR range (GET_DDR_CONFIG) and the loaded models, choose how many
input/result buffers of which size the device allocates (control 0x82), and where the DDR
heap's lower boundary goes (control 0x84). The numbers decide when a send fails with 15
(image larger than an input buffer) and how many requests the device holds before blocking.

Decision where the spec is loose (the downward search of step 5): while the inputs do not
reach the minimum buffer size, decrement the larger of the two counts (inputs never below
``min_inputs``, results never below 1); when neither can shrink the sizing fails with 43.
The transcripts' loads (3 inputs, 3 results) never reach this branch.
"""

from __future__ import annotations

from dataclasses import dataclass

from kp_backend.protocol.codes import ApiReturnCode
from kp_backend.protocol.constants import (
    DEFAULT_INPUT_COUNT,
    DEFAULT_RESULT_COUNT,
    FIFO_UNIT,
    MAX_INPUT_BUFFER,
    MIN_INPUT_BUFFER,
    MIN_INPUT_COUNT,
    PID_KL520,
    PID_KL720,
    PID_KL720_LEGACY,
    RESULT_HEADROOM,
    SYSTEM_RESERVE,
)
from kp_backend.protocol.wire import DdrConfigReply
from kp_backend.usb.errors import KpError

__all__ = ["DdrManageAttributes", "FifoPlan", "plan_fifo", "ceil_unit"]

RC = ApiReturnCode

_RESERVE_BY_PID = {PID_KL520: SYSTEM_RESERVE, PID_KL720: SYSTEM_RESERVE,
                   PID_KL720_LEGACY: SYSTEM_RESERVE, 0x0630: 0}


def ceil_unit(size: int) -> int:
    """Round up to a multiple of 10 KiB, the device's FIFO allocation unit."""
    return -(-int(size) // FIFO_UNIT) * FIFO_UNIT


@dataclass(frozen=True)
class DdrManageAttributes:
    """User-fixed sizing (Kneron's ``kp_ddr_manage_attr_t``); 0 = computed."""

    model_size: int = 0
    input_buffer_size: int = 0
    input_buffer_count: int = 0
    result_buffer_size: int = 0
    result_buffer_count: int = 0


@dataclass(frozen=True)
class FifoPlan:
    """The chosen FIFO layout. ``boundary`` is the control 0x84 address (``None`` when the
    device already had its queues and the plan was read back with GET_FIFOQ_CONFIG)."""

    model_size: int
    input_buffer_count: int
    input_buffer_size: int
    result_buffer_count: int
    result_buffer_size: int
    boundary: int | None = None


def plan_fifo(
    ddr: DdrConfigReply,
    product_id: int,
    max_raw_out_size: int,
    max_input_nodes: int = 1,
    fixed: DdrManageAttributes = DdrManageAttributes(),
) -> FifoPlan:
    """Size the queues as Kneron's host does (§4.5 steps 2–6). Raises ``KpError`` 44 for an
    unsupported product id and 43 when the queues cannot fit."""
    if product_id not in _RESERVE_BY_PID:
        raise KpError(RC.KP_ERROR_UNSUPPORTED_DEVICE_44,
                      f"no FIFO sizing rule for product id 0x{product_id:04X}")
    begin, end = ddr.ddr_available_begin, ddr.ddr_available_end
    model_size = fixed.model_size or (ddr.ddr_model_end - begin)
    heap = (end - begin) - model_size
    boundary = end - heap
    heap -= _RESERVE_BY_PID[product_id]

    result_size = ceil_unit(fixed.result_buffer_size or (max_raw_out_size + RESULT_HEADROOM))
    min_inputs = max(MIN_INPUT_COUNT, max_input_nodes)
    inputs = fixed.input_buffer_count or max(DEFAULT_INPUT_COUNT, min_inputs)
    results = fixed.result_buffer_count or DEFAULT_RESULT_COUNT
    if inputs < max_input_nodes:
        raise KpError(RC.KP_ERROR_FIFOQ_SETTING_FAILED_43,
                      f"{inputs} input buffers cannot hold a model with {max_input_nodes} inputs")

    while True:
        if inputs < 1 or results < 1 or heap <= 0:
            raise KpError(RC.KP_ERROR_FIFOQ_SETTING_FAILED_43,
                          f"DDR heap of {max(heap, 0)} bytes (after the model and the system "
                          "reserve) cannot hold the FIFO queues")
        result_total = results * result_size
        if result_total >= heap:
            if fixed.result_buffer_count:
                raise KpError(RC.KP_ERROR_FIFOQ_SETTING_FAILED_43,
                              f"{results} result buffers of {result_size} bytes exceed the "
                              f"DDR heap of {heap} bytes")
            results -= 1
            continue
        if fixed.input_buffer_size:
            input_size = ceil_unit(fixed.input_buffer_size)
            break
        per_input = (heap - result_total) // inputs // FIFO_UNIT * FIFO_UNIT
        if per_input > MIN_INPUT_BUFFER:
            input_size = min(per_input, MAX_INPUT_BUFFER)
            break
        can_inputs = not fixed.input_buffer_count and inputs > min_inputs
        can_results = not fixed.result_buffer_count and results > 1
        if can_inputs and (inputs >= results or not can_results):
            inputs -= 1
        elif can_results:
            results -= 1
        else:
            raise KpError(RC.KP_ERROR_FIFOQ_SETTING_FAILED_43,
                          f"DDR heap of {heap} bytes leaves less than {MIN_INPUT_BUFFER} bytes "
                          f"per input buffer")
    if inputs * input_size + results * result_size > heap:
        raise KpError(RC.KP_ERROR_FIFOQ_SETTING_FAILED_43,
                      f"{inputs}x{input_size} + {results}x{result_size} bytes of FIFO buffers "
                      f"exceed the DDR heap of {heap} bytes")
    return FifoPlan(model_size, inputs, input_size, results, result_size, boundary)
