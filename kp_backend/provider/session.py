"""``KneronSession``: one NEF model id on one or more dongles, ORT-shaped.

``run`` is ``submit(...).result()``; ``submit`` encodes the feeds in the caller's thread
(so bad inputs raise at once), picks the next live dongle round-robin (reopening a dongle that died and is back on the bus) and hands the
request to its :class:`~kp_backend.provider.dispatcher.DeviceWorker`; the returned future
resolves to the decoded outputs. ``run_many`` keeps up to ``in_flight`` requests per
dongle outstanding and yields results in input order.
"""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import logging
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from kp_runtime.errors import (
    DeviceDisconnected, EPFail, InvalidGraph, NotImplemented, RuntimeException)
from kp_runtime.model_source import ModelSource
from kp_runtime.node_arg import NodeArg
from kp_runtime.provider import ProviderSession
from kp_runtime.quantization import QuantizationInfo

from kp_backend.nef import read_nef
from kp_backend.npu_types import Chip
from kp_backend.provider import codec
from kp_backend.provider.companion import (
    build_signature, find_companion, load_companion, select_model)
from kp_backend.provider.devices import (
    REGISTRY, DeviceHandle, DeviceTarget, resolve_targets, virtual_dongle)
from kp_backend.provider.dispatcher import Buffer, InferenceRequest
from kp_backend.provider.io_map import FLOAT_TYPE, UINT8_TYPE
from kp_backend.provider.options import KneronOptions
from kp_backend.usb import find_devices

__all__ = ["KneronSession", "SUPPORTED_CHIPS"]

log = logging.getLogger(__name__)

SUPPORTED_CHIPS = (Chip.KL520, Chip.KL720)
_owner_ids = itertools.count(1)


class KneronSession(ProviderSession):
    """A NEF model loaded on Kneron dongle(s) (see the module docstring)."""

    def __init__(self, model: ModelSource, options: KneronOptions) -> None:
        self.options = options
        self._owner = next(_owner_ids)
        self._handles: list[tuple[DeviceHandle, int]] = []
        self._lock = threading.Lock()  # round-robin index and the outstanding set
        self._outstanding: set[concurrent.futures.Future] = set()
        self._closed = False
        nef = read_nef(model.data)
        self.nef_model = select_model(nef, options.model_id, model.display)
        self.chip = self.nef_model.target_chip
        if self.chip not in SUPPORTED_CHIPS:
            raise NotImplemented(f"KneronExecutionProvider runs KL520 and KL720 NEFs; "
                                 f"{model.display} is for {self.chip.name}")
        if len(self.nef_model.inputs) != 1 and options.input_mode == "image":
            raise NotImplemented(f"model {self.nef_model.id} has {len(self.nef_model.inputs)} "
                                 "inputs; image inputs (job 10) take one, use input_mode=float")
        path = find_companion(model, options.onnx)
        proto = load_companion(path) if path is not None else None
        self.signature = build_signature(nef, self.nef_model, proto,
                                         f"companion ONNX {path}" if path else "companion ONNX")
        self.signature.onnx_path = path
        self._image_inputs = options.input_mode == "image"
        self._normalize = options.normalize
        if self._image_inputs and self._normalize is None:
            radix = self.signature.inputs[0].node.quantization.radix[0]
            self._normalize = codec.auto_normalize(radix)
        self._ordering = None if options.channel_ordering == "onnx" else options.kneron_ordering
        self.inputs = [self._input_arg(t) for t in self.signature.inputs]
        self._float_inputs: list[codec.FloatInput] | None = None  # made on first float run
        self._decoders: dict = {}  # prepared output node decoders (codec.decode_outputs)
        if options.input_mode == "auto" and len(self.signature.inputs) == 1:
            # auto: a float tensor goes as job 17, a uint8 image as job 10 (see _request)
            name = self.signature.inputs[0].name
            self.alternative_inputs = {name: [NodeArg(name, UINT8_TYPE, None)]}
        self.outputs = [self._output_arg(t) for t in self.signature.outputs]
        self.metadata = self.signature.metadata
        self._out_index = {t.name: i for i, t in enumerate(self.signature.outputs)}
        self._open_devices(model, proto)
        self._rr = itertools.cycle(range(len(self._handles)))

    # -- set-up ----------------------------------------------------------------------------
    def _input_arg(self, tmap) -> NodeArg:
        if self._image_inputs:
            return NodeArg(tmap.name, UINT8_TYPE, None)  # H x W [x C] or 1 x H x W x C
        return NodeArg(tmap.name, FLOAT_TYPE, list(tmap.onnx_shape))

    def _output_arg(self, tmap) -> NodeArg:
        if self._ordering is None:
            return tmap.node_arg
        return NodeArg(tmap.name, FLOAT_TYPE,
                       list(codec.node_shape_for_ordering(tmap, self._ordering, self.chip)))

    def _open_devices(self, model: ModelSource, proto: Any) -> None:
        opts = self.options
        self._model, self._proto = model, proto  # kept to reopen a dongle that came back
        targets = resolve_targets(opts.device, self.chip)
        try:
            for target in targets:
                self._handles.append(self._acquire(target))
        except BaseException:
            self.close()
            raise
        self._slots = [threading.BoundedSemaphore(opts.in_flight or handle.fifo_depth)
                       for handle, _ in self._handles]

    def _acquire(self, target: DeviceTarget) -> tuple[DeviceHandle, int]:
        """Open (or share) one dongle with this session's NEF, and give a virtual dongle
        the companion ONNX as its twin (after the load, so that it is checked)."""
        opts, model = self.options, self._model
        handle = REGISTRY.acquire(target, self._owner, model.data, model.sha256,
                                  timeout_ms=opts.timeout_ms, frame_drop=opts.frame_drop,
                                  allow_reload=opts.allow_reload)
        entry = (handle, handle.generation)
        dongle = virtual_dongle(target)
        if dongle is not None and self._proto is not None:
            try:
                dongle.set_twin(self.nef_model.id, self._proto)
            except ValueError as exc:
                REGISTRY.release(handle, self._owner)
                raise InvalidGraph(f"the companion ONNX cannot be the virtual "
                                   f"dongle's twin: {exc}") from exc
        return entry

    def _reopen(self, index: int) -> bool:
        """A dongle of this session died (unplugged, rebooted): when it is on the bus again,
        reconnect it and reload the NEF in place (the registry replaces the dead handle,
        shared with the other sessions of this NEF). Called with ``self._lock`` held."""
        handle = self._handles[index][0]
        target = handle.target
        try:
            present = any(info.port_id == target.port_id
                          for info in find_devices(target.backend, probe=False))
            if not present:
                return False
            entry = self._acquire(target)
        except Exception as exc:  # noqa: BLE001 - still dead: the caller reports why
            log.info("%s: reopening failed: %s", handle.name, exc)
            return False
        REGISTRY.release(handle, self._owner)
        self._handles[index] = entry
        log.info("%s is back; reopened with the session's NEF", handle.name)
        return True

    @property
    def devices(self) -> list[str]:
        """Names of the dongles this session uses."""
        return [handle.name for handle, _ in self._handles]

    @property
    def completed(self) -> dict[str, int]:
        """Results each dongle of this session has delivered (to any session sharing it)."""
        return {h.name: h.worker.completed if h.worker else 0 for h, _ in self._handles}

    @property
    def in_flight(self) -> list[int]:
        return [self.options.in_flight or handle.fifo_depth for handle, _ in self._handles]

    # -- requests ----------------------------------------------------------------------------
    def _request(self, feeds: dict[str, Any]) -> tuple[InferenceRequest, int]:
        tmaps = self.signature.inputs
        value = feeds[tmaps[0].name]
        as_image = len(tmaps) == 1 and (self._image_inputs or (
            isinstance(value, np.ndarray) and value.dtype == np.uint8))
        if as_image:
            normalize = self._normalize or codec.auto_normalize(
                tmaps[0].node.quantization.radix[0])
            payload, params = codec.encode_image(tmaps[0], value, self.options, normalize)
            payloads: tuple[Buffer, ...] = (payload,)
        else:
            params = None
            encoders = self._float_inputs
            if encoders is None:  # bad quantisation parameters raise here, at the run
                encoders = [codec.FloatInput(t, self.chip) for t in tmaps]
                self._float_inputs = encoders
            payloads = tuple(enc.encode(feeds[enc.tmap.name]) for enc in encoders)
        index = self._next_device()
        return InferenceRequest(self.nef_model.id, payloads, params, self._slots[index]), index

    def _next_device(self) -> int:
        if self._closed:
            raise RuntimeException("this Kneron session has been closed")
        with self._lock:
            for _ in range(len(self._handles)):
                index = next(self._rr)
                handle, generation = self._handles[index]
                if handle.generation != generation:
                    raise EPFail(f"{handle.name}: this session's NEF was replaced by another "
                                 "session (allow_reload=True); create the session again")
                if not handle.dead or self._reopen(index):
                    return index
        errors = [h.worker.dead for h, _ in self._handles if h.worker and h.worker.dead]
        raise errors[0] if errors else DeviceDisconnected("no dongle of this session is usable")

    def _wanted(self, output_names: list[str] | None) -> list[int]:
        if not output_names:
            return list(range(len(self.outputs)))
        return [self._out_index[n] for n in output_names]

    def _decode(self, raw: bytes, wanted: list[int], device: str) -> list[np.ndarray]:
        return codec.decode_outputs(raw, self.signature.outputs, wanted, self._ordering, device,
                                    self._decoders)

    def submit(self, feeds: dict[str, Any], output_names: list[str],
               run_options: Any = None) -> concurrent.futures.Future:
        """Start one inference; the future resolves to the outputs ``output_names``."""
        wanted = self._wanted(output_names)
        request, index = self._request(feeds)
        return self._queue(request, self._handles[index][0], wanted)

    def _queue(self, request: InferenceRequest, handle: DeviceHandle,
               wanted: list[int]) -> concurrent.futures.Future:
        """Hand ``request`` to the dongle's worker threads; decode in the receiver thread."""
        assert handle.worker is not None
        result: concurrent.futures.Future = concurrent.futures.Future()
        name = handle.name

        def done(raw_future: concurrent.futures.Future) -> None:
            if result.cancelled():
                return
            try:
                values = self._decode(raw_future.result(), wanted, name)
            except BaseException as exc:  # noqa: BLE001 - delivered to the caller
                result.set_exception(exc)
            else:
                result.set_result(values)

        with self._lock:
            self._outstanding.add(result)
        result.add_done_callback(self._forget)
        handle.worker.submit(request).add_done_callback(done)
        return result

    def _forget(self, future: concurrent.futures.Future) -> None:
        with self._lock:
            self._outstanding.discard(future)

    def run(self, output_names: list[str], feeds: dict[str, Any],
            run_options: Any = None) -> list[Any]:
        """One inference. On an idle dongle the exchange happens in the calling thread
        (:meth:`DeviceWorker.run_inline`, no thread hand-offs); otherwise the request
        queues behind the others like ``submit``."""
        wanted = self._wanted(output_names)
        request, index = self._request(feeds)
        handle = self._handles[index][0]
        assert handle.worker is not None
        future = request.future
        with self._lock:
            self._outstanding.add(future)  # close() waits for it like for a submitted one
        try:
            inline = handle.worker.run_inline(request)
        finally:
            self._forget(future)  # done now, or untouched and about to be queued
        if not inline:
            return self._queue(request, handle, wanted).result()
        return self._decode(future.result(), wanted, handle.name)

    def run_many(self, feeds: Iterable[dict[str, Any]],
                 output_names: list[str]) -> Iterator[list[Any]]:
        """Pipelined runs: up to ``in_flight`` per dongle outstanding, results in order."""
        window = sum(self.in_flight) + len(self._handles)
        pending: collections.deque[concurrent.futures.Future] = collections.deque()
        for feed in feeds:
            pending.append(self.submit(feed, output_names))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

    # -- quantisation, lifetime ---------------------------------------------------------------
    def quantization(self) -> QuantizationInfo:
        """``{"inputs": {name: TensorQuantization}, "outputs": {...}}`` from the NEF."""
        return {"inputs": {t.name: t.quantization() for t in self.signature.inputs},
                "outputs": {t.name: t.quantization() for t in self.signature.outputs}}

    get_quantization = quantization

    def close(self) -> None:
        """Wait for this session's outstanding requests (each is bounded by ``timeout_ms``,
        all together by twice that), then release the dongles; idempotent."""
        if self._closed:
            return
        self._closed = True
        with self._lock:
            outstanding = list(self._outstanding)
        if outstanding:
            concurrent.futures.wait(outstanding, timeout=2 * self.options.timeout_ms / 1000)
        handles, self._handles = self._handles, []
        for handle, _ in handles:
            try:
                REGISTRY.release(handle, self._owner)
            except Exception:  # noqa: BLE001 - closing must not raise
                log.exception("releasing %s failed", handle.name)
        super().close()

    def __repr__(self) -> str:
        return (f"<KneronSession model {self.nef_model.id} ({self.chip.name}) on "
                f"{', '.join(self.devices) or 'no device'}>")
