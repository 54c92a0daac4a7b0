"""Raw NPU output node -> Kneron fixed-point view or float32 tensor (LAYOUTS.md §2-§5).

Bit-identical to ``kp_generic_inference_retrieve_fixed_node`` /
``kp_generic_inference_retrieve_float_node`` (PLUS 3.1.1, and 2.2.0 for v1 chips): same
element order, same numpy shapes (CHW -> (1,C,H,W), HCW -> (1,H,C,W), HWC -> (1,H,W,C);
KL730 the ONNX shape), same float32 division, same quirks (§10).
"""

from __future__ import annotations

import numpy as np

from kp_backend.layouts.params import check_chip_layout, is_v2, scalar_factor
from kp_backend.layouts.plans import HL, I8, I16, I16_MASKED, Plan, decode_plan
from kp_backend.layouts.quant import dequantize, element_factors

__all__ = ["decode_node", "NodeDecoder", "as_byte_array", "gather", "strided"]


def as_byte_array(raw, what: str = "raw") -> np.ndarray:
    """A read-only uint8 view of bytes, bytearray, memoryview or a uint8 array (no copy)."""
    if isinstance(raw, np.ndarray):
        if raw.dtype != np.uint8:
            raise ValueError(f"{what} array has dtype {raw.dtype}; expected uint8 bytes")
        return raw.reshape(-1)
    try:
        return np.frombuffer(raw, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        raise ValueError(
            f"{what} must be bytes, bytearray, a contiguous memoryview or a uint8 array; "
            f"got {type(raw).__name__}"
        ) from None


def strided(elements: np.ndarray, plan: Plan, writeable: bool = False) -> np.ndarray:
    """The plan's elements as a strided view of ``elements`` (plans with ``affine`` only).

    Built with the ``ndarray`` constructor, which also checks that the view stays inside
    ``elements`` (``as_strided`` costs 3 us per call, more than decoding a small node)."""
    offset, strides = plan.affine
    size = elements.itemsize
    view = np.ndarray(plan.out_shape, dtype=elements.dtype, buffer=elements,
                      offset=offset * size, strides=tuple(s * size for s in strides))
    if not writeable:
        view.flags.writeable = False
    return view


def gather(buf: np.ndarray, plan: Plan) -> np.ndarray:
    """Fixed-point values of every element of ``plan`` (output order, flat)."""
    if plan.kind == HL:
        idx = plan.index
        low = buf.take(idx).astype(np.uint16)
        high = buf.take(idx + 16).astype(np.uint16)
        return (((low & 0x7F) | (high << 7)) << 1).view(np.int16)
    if plan.kind == I8:
        elements = buf.view(np.int8)
    elif plan.kind in (I16, I16_MASKED):
        elements = buf[: plan.nbytes].view("<i2")
    else:
        raise ValueError(f"layout element kind {plan.kind!r} cannot be decoded")
    if plan.affine is not None:
        values = np.array(strided(elements, plan)).reshape(-1)
    else:
        values = elements.take(plan.index)
    if plan.kind == I16_MASKED:
        values &= np.int16(-2)  # KL730 drops the LSB of 16-bit data (§4.3)
    return values.astype(np.int8 if plan.kind == I8 else np.int16, copy=False)


def decode_node(raw, *, chip, layout, shape, radix, scale, ordering="DEFAULT",
                as_float: bool = True, strides=None, quantized_axis: int = 1) -> np.ndarray:
    """Decode one output node's raw bytes.

    ``shape`` is ``(N, C, H, W)`` (``shape_npu``) for KL520/KL720/KL630 and the ONNX shape for
    KL730, whose ``stride_npu`` defaults to the inferred values of LAYOUTS.md §2.8.
    ``radix``/``scale`` are numbers, or per-channel sequences on KL730 (block rule along
    ``quantized_axis``, §4.2). ``as_float=False`` returns Kneron's fixed-point view (int8 or
    int16); otherwise float32. ``raw`` must be exactly the node's buffer size
    (:func:`~kp_backend.layouts.plans.node_buffer_size` with ``output=True``); on KL730, whose
    device states its own data length, longer buffers are accepted and the tail ignored.
    """
    plan = decode_plan(chip=chip, layout=layout, shape=shape, ordering=ordering, strides=strides)
    buf = as_byte_array(raw)
    chip_, layout_ = check_chip_layout(chip, layout)
    v2 = is_v2(chip_)
    # KL730 reports its own data length (npu_data_len), which may include alignment:
    # accept trailing bytes there; v1 node sizes follow from the layout alone.
    if buf.size != plan.nbytes and not (v2 and buf.size > plan.nbytes):
        expected = f"at least {plan.nbytes}" if v2 else str(plan.nbytes)
        raise ValueError(
            f"raw node buffer has {buf.size} bytes; expected {expected} for "
            f"{layout_.layout_name} {tuple(int(d) for d in shape)} on {chip_.name}"
        )
    if not as_float:
        return gather(buf, plan).reshape(plan.out_shape)
    factors = element_factors(
        radix, scale, plan.out_shape, quantized_axis=quantized_axis, per_channel=v2,
    )
    if factors.ndim == 0 and plan.affine is not None and plan.kind in (I8, I16):
        return _dequantize_strided(buf, plan, factors)
    return dequantize(gather(buf, plan), factors).reshape(plan.out_shape)


def _dequantize_strided(buf: np.ndarray, plan: Plan, factor: np.ndarray) -> np.ndarray:
    """:func:`dequantize` of :func:`gather` in one ufunc call, for affine int8/int16 plans
    and one factor: the division reads the strided fixed-point view and converts each value
    to float32 on the way (the same float32 division), so no gathered copy is made
    (benchmarks: ``host_overhead_us``)."""
    if plan.kind == I8:
        elements = buf.view(np.int8)
    else:
        elements = buf[: plan.nbytes].view("<i2")
    out = np.empty(plan.out_shape, dtype=np.float32)
    return np.divide(strided(elements, plan), factor, out=out)


class NodeDecoder:
    """:func:`decode_node` for one ``(chip, layout, shape, ordering)``, planned once; the
    radix and scale come with each call (a result reports its own). A runtime session
    decodes the same output node on every inference (benchmarks: ``host_overhead_us``).
    Construction raises ``ValueError`` where :func:`decode_node` would. Thread-safe."""

    def __init__(self, *, chip, layout, shape, ordering="DEFAULT", strides=None) -> None:
        self._args = dict(chip=chip, layout=layout, shape=shape, ordering=ordering,
                          strides=strides)
        self.plan = decode_plan(chip=chip, layout=layout, shape=shape, ordering=ordering,
                                strides=strides)
        chip_, _ = check_chip_layout(chip, layout)
        # v1 affine int8/int16 plans with one factor: one strided division, no checks to redo
        self._fast = (not is_v2(chip_) and self.plan.affine is not None
                      and self.plan.kind in (I8, I16))
        if self._fast:
            offset, strides = self.plan.affine
            self._dtype = np.dtype(np.int8 if self.plan.kind == I8 else "<i2")
            size = self._dtype.itemsize
            self._offset = offset * size
            self._strides = tuple(st * size for st in strides)

    @property
    def nbytes(self) -> int:
        """Size of the raw node in bytes."""
        return self.plan.nbytes

    def decode(self, raw, radix, scale, as_float: bool = True) -> np.ndarray:
        """The node in ``raw`` (exactly :attr:`nbytes` bytes) as :func:`decode_node`."""
        if self._fast and as_float and type(radix) is int and type(scale) in (int, float):
            buf = as_byte_array(raw)
            if buf.size == self.plan.nbytes:
                return self.decode_at(buf, 0, radix, scale)
        return decode_node(raw, radix=radix, scale=scale, as_float=as_float, **self._args)

    def decode_at(self, message, start: int, radix, scale, as_float: bool = True) -> np.ndarray:
        """:meth:`decode` of the :attr:`nbytes` bytes at ``start`` in ``message`` (bytes,
        or any byte buffer), without slicing it: a result's node is decoded where it lies.
        The fast case (v1 int8/int16 plan, one Python-number radix and scale: every v1
        result record) is a float32 division of a strided view of the message by the cached
        :func:`~kp_backend.layouts.params.scalar_factor` (benchmarks: ``host_overhead_us``).
        Raises ``ValueError`` when the node does not fit in ``message``."""
        end = start + self.plan.nbytes
        if start < 0 or end > len(message):
            raise ValueError(f"the node needs bytes {start}..{end} of a {len(message)}-byte "
                             "message")
        if self._fast and as_float and type(radix) is int and type(scale) in (int, float):
            view = np.ndarray(self.plan.out_shape, dtype=self._dtype, buffer=message,
                              offset=start + self._offset, strides=self._strides)
            return np.divide(view, scalar_factor(radix, scale), dtype=np.float32, order="C")
        return self.decode(memoryview(message).cast("B")[start:end], radix, scale, as_float)
