"""The one error type of :mod:`kp_backend.nef`."""

from __future__ import annotations

from kp_runtime.errors import InvalidGraph

__all__ = ["NefError"]


class NefError(InvalidGraph):
    """A NEF file (or one of its parts) is truncated, corrupt or not supported.

    ``field`` names the structure member that was wrong (``"header.schema_version"``,
    ``"model[1].setup.outputs[3].quantization"``) and ``offset`` is the byte offset in the
    file (or in the blob that was parsed, for :func:`~kp_backend.nef.models_from_fw_info`)
    where it was found; ``None`` when no single byte is to blame.
    """

    def __init__(self, field: str, offset: int | None, problem: str) -> None:
        where = f" at byte {offset} (0x{offset:x})" if offset is not None else ""
        super().__init__(f"NEF {field}{where}: {problem}")
        self.field = field
        self.offset = offset
        self.problem = problem

    def __reduce__(self):  # picklable across processes despite the 3-argument __init__
        return (type(self), (self.field, self.offset, self.problem))
