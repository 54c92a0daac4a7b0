"""Parse ``../shared/models/nef/MANIFEST.md`` into expected values, so every value the
manifest lists is checked against the reader (and a manifest edit cannot drift from the
tests). The parser asserts it found what it expects, so a format change fails loudly."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Node:
    kind: str
    index: int
    shape: tuple[int, ...]
    layout: str
    code: int
    radix: int
    scale: float


@dataclass
class Model:
    id: int
    version: int
    fw: dict[str, tuple[int, int]]
    setup_offset: int
    setup_len: int
    n_setup_nodes: int
    nodes: list[Node] = field(default_factory=list)


@dataclass
class Entry:
    path: str
    size: int
    sha256: str
    chip: str
    target_raw: int
    header: dict
    magic_stored: bool
    trailer_crc: int
    all_models_len: int
    all_models_offset: int
    all_models_crc: int
    fw_info_len: int
    tail: dict
    model_info: list[tuple[int, str, str]]
    models: list[Model] = field(default_factory=list)


def _hex(text: str) -> int:
    return int(text, 16)


def _one(pattern: str, text: str, what: str) -> re.Match:
    m = re.search(pattern, text, re.M)
    assert m, f"MANIFEST.md: cannot find {what}"
    return m


def parse_manifest(path: Path) -> dict[str, Entry]:
    text = path.read_text(encoding="utf-8")
    sections = re.split(r"^## `([^`]+\.nef)`\s*$", text, flags=re.M)
    entries = {}
    for name, body in zip(sections[1::2], sections[2::2]):
        size = _one(r"^- size: (\d+) bytes; sha256: `([0-9a-f]+)`", body, f"{name} size")
        target = _one(r"^- target chip: (KL\d+) \(header `target` raw (\d+)", body, "target")
        hdr = _one(r"^- header: crc `(0x[0-9a-f]+)`, kn_number `(0x[0-9a-f]+)`, "
                   r"encryption_mode (\d+), uuid `(0x[0-9a-f]+)`, compiler_version `([^`]*)`, "
                   r"toolchain_version (?:`([^`]*)`|\(empty\)), platform `([^`]*)`", body, "header")
        magic = _one(r"^- root `magic` stored: (True|False).*trailer CRC32 `(0x[0-9a-f]+)`",
                     body, "magic")
        am = _one(r"^- all_models: (\d+) bytes at file offset (\d+), CRC32 `(0x[0-9a-f]+)`.*"
                  r"fw_info: (\d+) bytes", body, "all_models")
        tail = _one(r"^- fw_info tail: dram_addr_end `(0x[0-9a-f]+)`, total_size (\d+), "
                    r"checksum `(0x[0-9a-f]+)`, trailing words (.*)$", body, "tail")
        info_line = _one(r"^- model_info: (.*)$", body, "model_info").group(1)
        infos = [] if info_line.startswith("present but empty") else [
            (int(i), v, n) for i, v, n in
            re.findall(r'id (\d+), version "([^"]*)", name `([^`]*)`', info_line)]
        entry = Entry(
            path=name, size=int(size.group(1)), sha256=size.group(2), chip=target.group(1),
            target_raw=int(target.group(2)),
            header=dict(crc=_hex(hdr.group(1)), kn_number=_hex(hdr.group(2)),
                        encryption_mode=int(hdr.group(3)), uuid=_hex(hdr.group(4)),
                        compiler_version=hdr.group(5),
                        toolchain_version=(hdr.group(6) or "").replace("\\n", "\n"),
                        platform=hdr.group(7)),
            magic_stored=magic.group(1) == "True", trailer_crc=_hex(magic.group(2)),
            all_models_len=int(am.group(1)), all_models_offset=int(am.group(2)),
            all_models_crc=_hex(am.group(3)), fw_info_len=int(am.group(4)),
            tail=dict(end=_hex(tail.group(1)), total=int(tail.group(2)),
                      checksum=_hex(tail.group(3)),
                      words=[_hex(w) for w in re.findall(r"`(0x[0-9a-f]+)`", tail.group(4))]),
            model_info=infos)
        parts = re.split(r"^### model id (\d+) \(version (0x[0-9a-f]+)\)\s*$", body, flags=re.M)
        for mid, version, mbody in zip(parts[1::3], parts[2::3], parts[3::3]):
            fw = {k: (_hex(a), int(n)) for k, a, n in
                  re.findall(r"(input|output|working|cmd|weight|setup) (0x[0-9a-f]+)\+(\d+)", mbody)}
            assert len(fw) == 6, f"MANIFEST.md: fw_info line of model {mid}"
            st = _one(r"setup\.bin at all_models offset (\d+) \(legacy, (\d+) bytes, (\d+) nodes\)",
                      mbody, "setup")
            model = Model(int(mid), _hex(version), fw, int(st.group(1)), int(st.group(2)),
                          int(st.group(3)))
            for row in re.findall(r"^\| (input|output) \| (\d+) \| \[([\d, ]+)\] \| (\S+) \[(\d+)\] "
                                  r"\| (-?\d+) \| [\d.e+-]+ \(`(0x[0-9a-f]+)`\) \|$", mbody, re.M):
                kind, idx, shape, layout, code, radix, bits = row
                model.nodes.append(Node(kind, int(idx), tuple(int(d) for d in shape.split(",")),
                                        layout, int(code), int(radix),
                                        struct.unpack("<f", struct.pack("<I", _hex(bits)))[0]))
            assert model.nodes, f"MANIFEST.md: node table of model {mid}"
            entry.models.append(model)
        assert entry.models, f"MANIFEST.md: models of {name}"
        entries[name] = entry
    assert entries, "MANIFEST.md: no file sections"
    return entries
