"""A bounded FlatBuffers reader and a small back-to-front builder (NEF.md §2).

Why by hand rather than the ``flatbuffers`` package: the package's generic ``Table``
does no bounds checking (a hostile offset gives ``IndexError``/``struct.error`` from deep
inside it, or silently reads the wrong bytes), and the reader must name the field and the
byte offset of every fault. The wire rules NEF needs fit in this module, and the project
gains no dependency.

Reader rules: every uoffset target, vtable, table, string and vector is checked against
the buffer it lives in before use; nothing is read through a size that has not been
checked; there is no recursion (callers walk tables explicitly). Offsets in errors are
file offsets: a :class:`Buffer` knows where its byte 0 sits in the file (``base``).

Builder: like the official builders it writes the buffer from the end towards the start,
so every uoffset points forward; objects are identified by their distance from the end.
"""

from __future__ import annotations

import struct
from typing import NoReturn

from kp_backend.nef.errors import NefError

__all__ = ["Buffer", "Table", "Builder", "pack", "U8", "I8", "U16", "I32", "U32", "U64", "F32"]

U8 = struct.Struct("<B")
I8 = struct.Struct("<b")
U16 = struct.Struct("<H")
I32 = struct.Struct("<i")
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")
F32 = struct.Struct("<f")


class Buffer:
    """One FlatBuffer: ``data`` (its own byte 0 is the root offset), its ``base`` offset
    in the file, and a ``label`` used in error messages."""

    __slots__ = ("data", "size", "base", "label")

    def __init__(self, data: memoryview | bytes, base: int = 0, label: str = "NEF") -> None:
        self.data = memoryview(data).cast("B") if not isinstance(data, bytes) else data
        self.size = len(self.data)
        self.base = base
        self.label = label

    def fail(self, field: str, pos: int, problem: str) -> NoReturn:
        raise NefError(field, self.base + pos, problem)

    def check(self, field: str, pos: int, nbytes: int) -> None:
        """Fail unless ``[pos, pos + nbytes)`` lies inside the buffer."""
        if pos < 0 or nbytes < 0 or pos + nbytes > self.size:
            self.fail(field, pos, f"{nbytes} bytes needed here, but the {self.label} "
                                  f"has {self.size} bytes (ends at {self.base + self.size})")

    def read(self, fmt: struct.Struct, pos: int, field: str):
        self.check(field, pos, fmt.size)
        return fmt.unpack_from(self.data, pos)[0]

    def deref(self, pos: int, field: str, nbytes: int = 4) -> int:
        """Follow the uoffset stored at ``pos``; the target must have ``nbytes`` in bounds."""
        value = self.read(U32, pos, field)
        target = pos + value
        if value == 0 or target + nbytes > self.size:
            self.fail(field, pos, f"offset {value} points to {self.base + target}, outside "
                                  f"the {self.label} (ends at {self.base + self.size})")
        return target

    def root(self, name: str) -> Table:
        return Table(self, self.deref(0, f"{name} (root offset)"), name)


class Table:
    """A table at ``pos``; fields are read by id with their schema default."""

    __slots__ = ("buf", "pos", "name", "_vt", "_vt_size", "_size")

    def __init__(self, buf: Buffer, pos: int, name: str) -> None:
        self.buf, self.pos, self.name = buf, pos, name
        vt = pos - buf.read(I32, pos, f"{name} (vtable offset)")
        if vt < 0 or vt + 4 > buf.size:
            buf.fail(f"{name} (vtable)", pos, f"vtable offset points to {buf.base + vt}, "
                                              f"outside the {buf.label} (ends at "
                                              f"{buf.base + buf.size})")
        vt_size = buf.read(U16, vt, f"{name} (vtable size)")
        size = buf.read(U16, vt + 2, f"{name} (table size)")
        if vt_size < 4 or vt_size % 2:
            buf.fail(f"{name} (vtable size)", vt, f"vtable size {vt_size} is not an even number >= 4")
        buf.check(f"{name} (vtable)", vt, vt_size)
        if size < 4:
            buf.fail(f"{name} (table size)", vt + 2, f"table size {size} is below 4")
        buf.check(f"{name} (table)", pos, size)
        self._vt, self._vt_size, self._size = vt, vt_size, size

    def _field(self, fid: int, fname: str, nbytes: int) -> int | None:
        """Absolute position of field ``fid`` or ``None`` when absent."""
        slot = 4 + 2 * fid
        if slot + 2 > self._vt_size:
            return None
        off = U16.unpack_from(self.buf.data, self._vt + slot)[0]
        if off == 0:
            return None
        if off < 4 or off + nbytes > self._size:
            self.buf.fail(f"{self.name}.{fname}", self._vt + slot,
                          f"field at table offset {off} ({nbytes} bytes) lies outside the "
                          f"table of {self._size} bytes")
        return self.pos + off

    def has(self, fid: int) -> bool:
        slot = 4 + 2 * fid
        return slot + 2 <= self._vt_size and U16.unpack_from(self.buf.data, self._vt + slot)[0] != 0

    def scalar(self, fid: int, fname: str, fmt: struct.Struct, default: int | float = 0):
        pos = self._field(fid, fname, fmt.size)
        return default if pos is None else fmt.unpack_from(self.buf.data, pos)[0]

    def _target(self, fid: int, fname: str, nbytes: int = 4) -> int | None:
        pos = self._field(fid, fname, 4)
        return None if pos is None else self.buf.deref(pos, f"{self.name}.{fname}", nbytes)

    def table(self, fid: int, fname: str) -> Table | None:
        target = self._target(fid, fname)
        return None if target is None else Table(self.buf, target, f"{self.name}.{fname}")

    def vector(self, fid: int, fname: str, elem_size: int) -> tuple[int, int] | None:
        """``(first element position, count)`` of a vector field, bounds-checked."""
        target = self._target(fid, fname)
        if target is None:
            return None
        count = U32.unpack_from(self.buf.data, target)[0]
        self.buf.check(f"{self.name}.{fname}", target + 4, count * elem_size)
        return target + 4, count

    def string(self, fid: int, fname: str, default: str = "") -> str:
        vec = self.vector(fid, fname, 1)
        if vec is None:
            return default
        start, count = vec
        try:
            return str(self.buf.data[start:start + count], "utf-8")
        except UnicodeDecodeError as exc:
            self.buf.fail(f"{self.name}.{fname}", start + exc.start, "string is not valid UTF-8")

    def bytes(self, fid: int, fname: str) -> memoryview | None:
        vec = self.vector(fid, fname, 1)
        if vec is None:
            return None
        start, count = vec
        return memoryview(self.buf.data)[start:start + count]

    def scalars(self, fid: int, fname: str, code: str) -> tuple | None:
        """A vector of scalars (``code`` is a :mod:`struct` letter), ``None`` when absent."""
        vec = self.vector(fid, fname, struct.calcsize(code))
        if vec is None:
            return None
        start, count = vec
        return struct.unpack_from(f"<{count}{code}", self.buf.data, start)

    def tables(self, fid: int, fname: str) -> list[Table] | None:
        vec = self.vector(fid, fname, 4)
        if vec is None:
            return None
        start, count = vec
        return [Table(self.buf, self.buf.deref(start + 4 * i, f"{self.name}.{fname}[{i}]"),
                      f"{self.name}.{fname}[{i}]") for i in range(count)]


# --------------------------------------------------------------------------- builder


def pack(fmt: str, *values) -> bytes:
    """:func:`struct.pack` raising ``ValueError`` (a value the field cannot hold)."""
    try:
        return struct.pack(fmt, *values)
    except struct.error as exc:
        raise ValueError(f"cannot store {values[:8]} as {fmt!r}: {exc}") from None


class Builder:
    """Back-to-front FlatBuffer builder.

    Every ``create_*``/``end_table`` returns a *reference*: the object's distance from the
    end of the finished buffer. Children must be created before the table that points to
    them. ``finish(root)`` pads so that every alignment used holds in absolute terms.
    """

    def __init__(self) -> None:
        self._chunks: list[bytes] = []  # in reverse order: last chunk is the start
        self._size = 0
        self._max_align = 4
        self._fields: list[tuple[int, str, object]] | None = None

    def _prepend(self, data: bytes) -> None:
        self._chunks.append(data)
        self._size += len(data)

    def _prep(self, align: int, additional: int) -> None:
        """Pad so that after ``additional`` more bytes the size is a multiple of ``align``."""
        self._max_align = max(self._max_align, align)
        pad = (-(self._size + additional)) % align
        if pad:
            self._prepend(bytes(pad))

    def create_string(self, text: str) -> int:
        raw = text.encode("utf-8")
        self._prep(4, len(raw) + 1)
        self._prepend(raw + b"\0")
        self._prepend(U32.pack(len(raw)))
        return self._size

    def create_vector(self, code: str, values, align: int | None = None) -> int:
        """A vector of scalars; ``align`` (>= element size) aligns the element data."""
        values = list(values)
        data = pack(f"<{len(values)}{code}", *values)
        return self.create_bytes(data, align or max(4, struct.calcsize(code)), len(values))

    def create_bytes(self, data: bytes | memoryview, align: int = 4, count: int | None = None) -> int:
        self._prep(max(align, 4), len(data))
        self._prepend(bytes(data))
        self._prep(4, 4)
        self._prepend(U32.pack(len(data) if count is None else count))
        return self._size

    def create_table_vector(self, refs: list[int]) -> int:
        self._prep(4, 4 * len(refs) + 4)
        for ref in reversed(refs):
            self._prepend(U32.pack(self._size + 4 - ref))
        self._prepend(U32.pack(len(refs)))
        return self._size

    def start_table(self) -> None:
        self._fields = []

    def add(self, fid: int, code: str, value) -> None:
        """A scalar field (``code`` a :mod:`struct` letter); ``None`` leaves it absent."""
        if value is not None:
            self._fields.append((fid, code, value))

    def add_ref(self, fid: int, ref: int | None) -> None:
        if ref is not None:
            self._fields.append((fid, "ref", ref))

    def end_table(self) -> int:
        fields, self._fields = self._fields, None
        # Lay fields out inside the table, biggest first, after the 4-byte soffset.
        sized = sorted(fields, key=lambda f: -(4 if f[1] == "ref" else struct.calcsize(f[1])))
        layout, pos, align = [], 4, 4
        for fid, code, value in sized:
            size = 4 if code == "ref" else struct.calcsize(code)
            pos += (-pos) % size
            layout.append((fid, code, value, pos))
            pos += size
            align = max(align, size)
        table_size = pos + (-pos) % align
        self._prep(align, table_size)
        table_ref = self._size + table_size
        body = bytearray(table_size)
        n_slots = max((f[0] for f in fields), default=-1) + 1
        slots = [0] * n_slots
        for fid, code, value, off in layout:
            if code == "ref":
                U32.pack_into(body, off, table_ref - off - value)
            else:
                body[off:off + struct.calcsize(code)] = pack("<" + code, value)
            slots[fid] = off
        vt_size = 4 + 2 * n_slots
        I32.pack_into(body, 0, vt_size)  # the vtable sits right before the table
        self._prepend(bytes(body))
        self._prepend(struct.pack(f"<HH{n_slots}H", vt_size, table_size, *slots))
        return table_ref

    def finish(self, root: int) -> bytes:
        self._prep(self._max_align, 4)
        self._prepend(U32.pack(self._size + 4 - root))
        return b"".join(reversed(self._chunks))
