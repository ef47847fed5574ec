"""Reader for Aguri-2.0 text, the output format of aguri3 and agurim.

A file is a series of blocks, each a header (``%!AGURI-2.0``, ``%%StartTime:``,
``%%EndTime:``, ``%AvgRate:``, ``%total:``, ``% criteria:``, ...) followed by
ranked entries of two lines::

    [ 1] 163.221.27.217 52.92.66.94: 121400 (27.03%)\t73 (11.08%)
    \t[6:51355:587] 100.00% 100.00%

Times in the header are the writer's local time; pass ``utc_offset`` (seconds
east of UTC) to read them as epoch seconds.
"""

from __future__ import annotations

import calendar
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

_ENTRY = re.compile(r"^\[\s*(\d+)\]\s+(\S+)\s+(\S+):\s+(\d+)\s+\(([\d.]+)%\)\s+(\d+)\s+\(([\d.]+)%\)\s*$")
_PROTO = re.compile(r"\[([^\]]+)\]\s+([\d.]+)%\s+([\d.]+)%")
_TIME = re.compile(r"\((\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2})\)")


_LABEL = re.compile(r"^(\*|\d+):(\*|\d+(?:-\d+)?):(\*|\d+(?:-\d+)?)$")


def parse_proto_label(label: str) -> tuple[int | None, tuple[int, int] | None, tuple[int, int] | None]:
    """``"6:1024-2047:*"`` → (6, (1024, 2047), None); ``*`` is None. ValueError if malformed."""
    m = _LABEL.match(label)
    if not m:
        raise ValueError(f"malformed protocol label {label!r}")

    def rng(text: str) -> tuple[int, int] | None:
        if text == "*":
            return None
        lo, _, hi = text.partition("-")
        r = (int(lo), int(hi or lo))
        if not r[0] <= r[1] <= 65535:
            raise ValueError(f"bad port range {text!r} in {label!r}")
        return r

    proto = None if m[1] == "*" else int(m[1])
    if proto is not None and proto > 255:
        raise ValueError(f"bad protocol number in {label!r}")
    return proto, rng(m[2]), rng(m[3])


@dataclass(frozen=True)
class AguriProto:
    label: str  # e.g. "6:443:*", as written without the brackets
    byte_pct: float
    packet_pct: float

    @property
    def proto(self) -> int | None:
        """IP protocol number, None for ``*``."""
        return parse_proto_label(self.label)[0]

    @property
    def sport(self) -> tuple[int, int] | None:
        """Source port range (lo, hi), None for ``*``."""
        return parse_proto_label(self.label)[1]

    @property
    def dport(self) -> tuple[int, int] | None:
        return parse_proto_label(self.label)[2]


@dataclass(frozen=True)
class AguriEntry:
    rank: int
    src: str  # as written: "1.2.3.4", "163.221.0.0/17", "*"
    dst: str
    bytes: int
    byte_pct: float
    packets: int
    packet_pct: float
    protocols: tuple[AguriProto, ...] = ()


@dataclass
class AguriBlock:
    start: int | None = None  # epoch seconds
    end: int | None = None
    total_bytes: int | None = None
    total_packets: int | None = None
    criteria: str = ""
    input_odflows: dict[str, int] = field(default_factory=dict)
    entries: list[AguriEntry] = field(default_factory=list)


def _time(text: str, utc_offset: int, where: str) -> int:
    m = _TIME.search(text)
    if not m:
        raise ValueError(f"{where}: cannot read a time in {text.strip()!r}")
    return calendar.timegm(tuple(int(v) for v in m.groups()) + (0, 0, 0)) - utc_offset


def read_aguri(fh: TextIO, name: str = "<input>", utc_offset: int = 0) -> Iterator[AguriBlock]:
    """Yield each block of an Aguri-2.0 text stream; malformed lines raise ValueError."""
    block: AguriBlock | None = None
    last: AguriEntry | None = None
    for no, raw in enumerate(fh, 1):
        line = raw.rstrip("\n")
        where = f"{name}:{no}"
        if not line.strip():
            continue
        if line.startswith("%!AGURI"):
            if block is not None:
                yield block
            block, last = AguriBlock(), None
            continue
        if block is None:
            raise ValueError(f"{where}: content before the first %!AGURI header")
        if line.startswith("%%StartTime:"):
            block.start = _time(line, utc_offset, where)
        elif line.startswith("%%EndTime:"):
            block.end = _time(line, utc_offset, where)
        elif line.startswith("%total:"):
            m = re.match(r"%total:\s*(\d+) bytes\s+(\d+) packets", line)
            if not m:
                raise ValueError(f"{where}: malformed %total line")
            block.total_bytes, block.total_packets = int(m[1]), int(m[2])
        elif line.startswith("% criteria:"):
            block.criteria = line.split(":", 1)[1].strip()
        elif line.startswith("%input odflows:"):
            block.input_odflows = {k: int(v) for k, v in re.findall(r"(IPv\d):(\d+)", line)}
        elif line.startswith("%"):
            continue  # %AvgRate, %aggregated in: informative only
        elif line.startswith("["):
            m = _ENTRY.match(line)
            if not m:
                raise ValueError(f"{where}: malformed entry line {line!r}")
            last = AguriEntry(int(m[1]), m[2], m[3], int(m[4]), float(m[5]), int(m[6]), float(m[7]))
            block.entries.append(last)
        elif line.startswith(("\t", " ")):
            if last is None:
                raise ValueError(f"{where}: protocol line without an entry")
            found = _PROTO.findall(line)
            if not found or _PROTO.sub("", line).strip():
                raise ValueError(f"{where}: malformed protocol line {line!r}")
            for lbl, _, _ in found:
                try:
                    parse_proto_label(lbl)
                except ValueError as e:
                    raise ValueError(f"{where}: {e}") from None
            protos = tuple(AguriProto(lbl, float(b), float(p)) for lbl, b, p in found)
            last = AguriEntry(**{**last.__dict__, "protocols": last.protocols + protos})
            block.entries[-1] = last
        else:
            raise ValueError(f"{where}: unexpected line {line!r}")
    if block is not None:
        yield block


def read_aguri_file(path: str | os.PathLike[str], utc_offset: int = 0) -> list[AguriBlock]:
    with open(path, encoding="ascii", errors="replace") as fh:
        return list(read_aguri(fh, str(path), utc_offset))
