"""``ModelSource``: what the user passed as a model, with lazy access to its bytes.

It does not decide which format a model is: providers do that in ``can_run``,
using the helpers here (``suffix``, ``data``, ``onnx_model()``).
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError

from kp_runtime.errors import InvalidProtobuf, NoSuchFile

ModelInput = str | os.PathLike | bytes | bytearray | memoryview | onnx.ModelProto


class ModelSource:
    """A model given as a path, as bytes or as an ``onnx.ModelProto``.

    Raises ``TypeError`` (onnxruntime's text) for any other type and
    :class:`~kp_runtime.errors.NoSuchFile` (onnxruntime's text) for a missing file.
    """

    def __init__(self, model: ModelInput | ModelSource) -> None:
        self._lock = threading.Lock()
        self._data: bytes | None = None
        self._proto: onnx.ModelProto | None = None
        self._proto_error: InvalidProtobuf | None = None
        self._sha256: str | None = None
        self.path: Path | None = None
        self.display: str = ""
        if isinstance(model, ModelSource):
            self.__dict__.update({k: v for k, v in model.__dict__.items() if k != "_lock"})
            return
        if isinstance(model, onnx.ModelProto):
            self._proto = model
            self.display = f"<onnx.ModelProto graph {model.graph.name!r}>"
        elif isinstance(model, (bytes, bytearray, memoryview)):
            self._data = bytes(model)
            self.display = f"<{len(self._data)} bytes>"
        elif isinstance(model, (str, os.PathLike)):
            self.display = os.fspath(model)
            self.path = Path(self.display)
            if not self.path.is_file():
                raise NoSuchFile(
                    f"Load model from {self.display} failed:Load model {self.display} failed. "
                    "File doesn't exist"
                )
        else:
            raise TypeError(f"Unable to load from type '{type(model)}'")

    @property
    def suffix(self) -> str:
        """Lower-case file suffix with the dot (``'.onnx'``), ``''`` for bytes and protos."""
        return self.path.suffix.lower() if self.path is not None else ""

    @property
    def is_proto(self) -> bool:
        """True when the user passed an ``onnx.ModelProto`` object."""
        return self.path is None and self._data is None

    @property
    def data(self) -> bytes:
        """The model's bytes (read from the file on first access)."""
        with self._lock:
            if self._data is None:
                if self.path is not None:
                    self._data = self.path.read_bytes()
                else:
                    assert self._proto is not None
                    self._data = self._proto.SerializeToString()
            return self._data

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of :attr:`data` (cached), handy as a cache key."""
        if self._sha256 is None:
            self._sha256 = hashlib.sha256(self.data).hexdigest()
        return self._sha256

    def onnx_model(self) -> onnx.ModelProto:
        """Parse (once) and return the ONNX model.

        External data next to a model file is loaded. Raises
        :class:`~kp_runtime.errors.InvalidProtobuf` with onnxruntime's text when
        the content is not an ONNX protobuf.
        """
        with self._lock:
            if self._proto is None and self._proto_error is None:
                self._proto, self._proto_error = self._parse()
        if self._proto_error is not None:
            raise self._proto_error
        assert self._proto is not None
        return self._proto

    def try_onnx_model(self) -> onnx.ModelProto | None:
        """:meth:`onnx_model`, or ``None`` when the content is not ONNX."""
        try:
            return self.onnx_model()
        except InvalidProtobuf:
            return None

    def _parse(self) -> tuple[onnx.ModelProto | None, InvalidProtobuf | None]:
        if self.path is not None:
            failure = f"Load model from {self.display} failed:Protobuf parsing failed."
        else:
            failure = "Failed to load model because protobuf parsing failed."
        try:
            if self.path is not None:  # by path so that external data is found
                model = onnx.load_model(self.display)
            else:
                model = onnx.load_model_from_string(self._data)
        except OSError as exc:
            # The model file was there; external data next to it is not.
            error = InvalidProtobuf(f"Load model from {self.display} failed:{exc}")
            error.__cause__ = exc
            return None, error
        except (DecodeError, RuntimeWarning, ValueError) as exc:
            error = InvalidProtobuf(failure)
            error.__cause__ = exc
            return None, error
        if not model.HasField("graph"):
            # Arbitrary bytes sometimes decode as an (empty) protobuf message.
            return None, InvalidProtobuf(failure)
        return model, None

    def __repr__(self) -> str:
        return f"ModelSource({self.display})"
