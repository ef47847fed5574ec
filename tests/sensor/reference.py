"""Outside references for capture tests: capinfos and tshark runners and their output parsers.

Everything here shells out to Wireshark's own tools (Debian's `tshark`/`capinfos`, 4.0) and
parses their text, so that tests compare flowlstm with an independent implementation.
Other test modules import these (e.g. flow tests use `conversations(path, "tcp")`).

Notes on tshark 4.0 output, checked against its source behaviour and the fixtures:

* `-z io,stat,N` intervals are relative to the first packet, and tshark computes each
  packet's relative time in microseconds, rounding the nanoseconds half up
  (`rel_us = secs * 1e6 + (nsecs + 500) // 1000`); `io_stat_bucket()` does the same.
* `-z conv,tcp|udp` prints byte counts with SI prefixes ("871 bytes", "187 kB", "12 MB"),
  truncated to an integer: a `Conversation`'s `bytes_*` are then ranges, see `Size`.
  Rows are per `tcp.stream`/`udp.stream` (a 4-tuple reused after a close is a new row),
  in tshark's order, with A/B as tshark orients them. `conversation_bytes()` gives exact
  byte counts per stream from tshark's per-frame dissection instead.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

import numpy as np


def _run(args: list[str]) -> str:
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


# -- capinfos -------------------------------------------------------------------


def capinfos(path) -> tuple[int, int]:
    """(packets, bytes) of a capture as capinfos counts them; bytes are wire (original) lengths."""
    out = _run(["capinfos", "-T", "-m", "-r", "-c", "-d", str(path)]).strip().splitlines()[-1]
    fields = out.rsplit(",", 2)
    return int(fields[-2]), int(fields[-1])


# Every frame is counted as it is on the wire: no IP (or 802.11) reassembly (flowlstm does
# none; with it, tshark moves a fragmented datagram's ports to its last fragment).
_NO_REASSEMBLY = (
    "-o",
    "ip.defragment:FALSE",
    "-o",
    "ipv6.defragment:FALSE",
    "-o",
    "tcp.desegment_tcp_streams:FALSE",
    "-o",
    "wlan.defragment:FALSE",
)


# -- tshark -T fields -------------------------------------------------------------


def tshark_fields(
    path, fields: list[str], display_filter: str | None = None, extra: tuple[str, ...] = ()
) -> list[dict[str, str]]:
    """One dict per frame (in file order), field name → tshark's text ("" when absent).

    Reassembly is off so that every frame is reported as it is on the wire, and each field
    takes its first occurrence (the outer header of a tunnel).
    """
    args = [
        "tshark",
        "-n",
        *_NO_REASSEMBLY,
        "-r",
        str(path),
        *extra,
        "-T",
        "fields",
        "-E",
        "occurrence=f",
        "-E",
        "separator=/t",
    ]
    if display_filter:
        args += ["-Y", display_filter]
    for f in fields:
        args += ["-e", f]
    rows = []
    for line in _run(args).splitlines():
        cells = line.split("\t")
        cells += [""] * (len(fields) - len(cells))
        rows.append(dict(zip(fields, cells, strict=False)))  # tshark may print more cells than asked for
    return rows


# -- io,stat ----------------------------------------------------------------------


@dataclass(frozen=True)
class IoInterval:
    start: float  # seconds after the first packet
    end: float | None  # None for the last interval ("<> Dur")
    frames: int
    bytes: int


_IO_ROW = re.compile(r"^\|\s*([\d.]+)\s*<>\s*([\d.]+|Dur)\s*\|\s*(\d+)\s*\|\s*(\d+)\s*\|")


def parse_io_stat(text: str) -> list[IoInterval]:
    """Rows of a `tshark -q -z io,stat,N` table with the one default column (frames and bytes)."""
    rows = []
    for line in text.splitlines():
        m = _IO_ROW.match(line)
        if m:
            start, end, frames, nbytes = m.groups()
            rows.append(IoInterval(float(start), None if end == "Dur" else float(end), int(frames), int(nbytes)))
    return rows


def io_stat(path, interval: int = 1) -> list[IoInterval]:
    return parse_io_stat(_run(["tshark", "-n", "-q", "-r", str(path), "-z", f"io,stat,{interval}"]))


def io_stat_bucket(ts_ns: np.ndarray, interval_s: int = 1) -> np.ndarray:
    """tshark's io,stat interval index of each packet (timestamps in ns, file order)."""
    rel = ts_ns.astype(np.int64) - int(ts_ns[0])
    # nstime_delta keeps secs and nsecs with the same sign; ours are ≥ 0 for sorted captures.
    rel_us = (rel // 1_000_000_000) * 1_000_000 + (rel % 1_000_000_000 + 500) // 1000
    return rel_us // (interval_s * 1_000_000)


# -- conv,tcp / conv,udp -----------------------------------------------------------

_PREFIX = {"k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15}


@dataclass(frozen=True)
class Size:
    """A byte count as conv prints it: `value` × `unit`, truncated, so lo ≤ true < hi."""

    value: int
    unit: int

    @property
    def lo(self) -> int:
        return self.value * self.unit

    @property
    def hi(self) -> int:
        return (self.value + 1) * self.unit if self.unit > 1 else self.value + 1

    @property
    def exact(self) -> bool:
        return self.unit == 1

    def matches(self, n: int) -> bool:
        return self.lo <= n < self.hi


@dataclass(frozen=True)
class Conversation:
    """One row of `tshark -q -z conv,tcp|udp`: A is the left address, B the right."""

    addr_a: str
    port_a: int
    addr_b: str
    port_b: int
    frames_b_to_a: int  # the "<-" column
    bytes_b_to_a: Size
    frames_a_to_b: int  # the "->" column
    bytes_a_to_b: Size
    frames: int
    bytes: Size
    rel_start: float
    duration: float

    def key(self) -> tuple[str, int, str, int]:
        return (self.addr_a, self.port_a, self.addr_b, self.port_b)


def _endpoint(text: str) -> tuple[str, int]:
    # IPv4 "1.2.3.4:80"; IPv6 "2001:db8::1:80" (tshark 4.0 prints no brackets): split at the last colon.
    addr, _, port = text.rpartition(":")
    return addr.strip("[]"), int(port)


_SIZE = r"(\d+)\s+(bytes|[kMGTP]B)"
_CONV_ROW = re.compile(
    rf"^(\S+)\s+<->\s+(\S+)\s+(\d+)\s+{_SIZE}\s+(\d+)\s+{_SIZE}\s+(\d+)\s+{_SIZE}\s+([\d.]+)\s+([\d.]+)\s*$"
)


def _size(value: str, unit: str) -> Size:
    return Size(int(value), 1 if unit == "bytes" else _PREFIX[unit[0]])


def parse_conv(text: str) -> list[Conversation]:
    """Rows of a `tshark -q -z conv,tcp` or `conv,udp` table."""
    rows = []
    for line in text.splitlines():
        m = _CONV_ROW.match(line.strip())
        if not m:
            continue
        g = m.groups()
        a, pa = _endpoint(g[0])
        b, pb = _endpoint(g[1])
        rows.append(
            Conversation(
                a,
                pa,
                b,
                pb,
                int(g[2]),
                _size(g[3], g[4]),
                int(g[5]),
                _size(g[6], g[7]),
                int(g[8]),
                _size(g[9], g[10]),
                float(g[11]),
                float(g[12]),
            )
        )
    return rows


def conversations(path, proto: str) -> list[Conversation]:
    """`tshark -q -z conv,tcp` (proto "tcp") or `conv,udp` of a capture, parsed."""
    if proto not in ("tcp", "udp"):
        raise ValueError(proto)
    return parse_conv(_run(["tshark", "-n", *_NO_REASSEMBLY, "-q", "-r", str(path), "-z", f"conv,{proto}"]))


def conversation_bytes(path, proto: str) -> dict[int, dict]:
    """Exact frames and bytes each way per conversation, from tshark's per-frame dissection.

    tshark 4.0's conv table has one row per ``tcp.stream`` / ``udp.stream`` (a reused
    4-tuple after a close is a new row), so this is keyed by stream index. Each value:
    key (addr_a, port_a, addr_b, port_b, A = the first packet's source), first_ts (the
    first frame's ``frame.time_epoch`` text), frames_a_to_b, bytes_a_to_b, frames_b_to_a,
    bytes_b_to_a (frame lengths). Transport headers quoted inside ICMP errors are not
    counted, as the conv table does not count them either.
    """
    if proto not in ("tcp", "udp"):
        raise ValueError(proto)
    fields = [
        f"{proto}.stream",
        "ip.src",
        "ip.dst",
        "ipv6.src",
        "ipv6.dst",
        f"{proto}.srcport",
        f"{proto}.dstport",
        "frame.len",
        "frame.time_epoch",
    ]
    out: dict[int, dict] = {}
    for r in tshark_fields(path, fields, display_filter=f"{proto} && !icmp && !icmpv6"):
        if not r[f"{proto}.stream"]:
            continue
        src = r["ip.src"] or r["ipv6.src"]
        dst = r["ip.dst"] or r["ipv6.dst"]
        sp, dp = int(r[f"{proto}.srcport"]), int(r[f"{proto}.dstport"])
        c = out.setdefault(
            int(r[f"{proto}.stream"]),
            {
                "key": (src, sp, dst, dp),
                "first_ts": r["frame.time_epoch"],
                "frames_a_to_b": 0,
                "bytes_a_to_b": 0,
                "frames_b_to_a": 0,
                "bytes_b_to_a": 0,
            },
        )
        way = "a_to_b" if (src, sp) == c["key"][:2] else "b_to_a"
        c[f"frames_{way}"] += 1
        c[f"bytes_{way}"] += int(r["frame.len"])
    return out


def tshark_reads(path) -> bool:
    """Whether tshark opens the file at all (it does not know every byte-level variant)."""
    return subprocess.run(["capinfos", "-c", str(path)], capture_output=True).returncode == 0


__all__ = [
    "Conversation",
    "IoInterval",
    "Size",
    "capinfos",
    "conversation_bytes",
    "conversations",
    "io_stat",
    "io_stat_bucket",
    "parse_conv",
    "parse_io_stat",
    "tshark_fields",
    "tshark_reads",
]


# -- header anomalies ---------------------------------------------------------------

_ANOMALY_FIELDS = [
    "frame.protocols",
    "tcp.flags",
    "ip.flags.mf",
    "ip.frag_offset",
    "ip.len",
    "ip.hdr_len",
    "ipv6.plen",
    "ipv6.fraghdr.more",
    "ipv6.fraghdr.offset",
]


def header_anomalies(path) -> np.ndarray:
    """Per frame, tshark's view of ``sensor.flows.header_anomalies``'s four counts: a fragment,
    a bad one (tiny and not the last, ending past 65,535 bytes, IPv6 atomic), IP options, an
    impossible TCP flag combination.  Headers quoted in ICMP errors are not the packet's own."""
    out = []
    for r in tshark_fields(path, _ANOMALY_FIELDS):
        protos = r["frame.protocols"].split(":")
        own = protos[: next((i for i, p in enumerate(protos) if p in ("icmp", "icmpv6")), len(protos))]
        v4 = "ip" in own
        if v4:
            mf, off, length = int(r["ip.flags.mf"] or 0), int(r["ip.frag_offset"] or 0), int(r["ip.len"] or 0)
            frag = bool(mf or off)
            bad = frag and ((mf and length < 400) or off * 8 + length > 65535)
        elif "ipv6.fraghdr" in own:
            mf, off = r["ipv6.fraghdr.more"] in ("1", "True"), int(r["ipv6.fraghdr.offset"])
            length = int(r["ipv6.plen"]) + 40
            frag, bad = True, (mf and length < 400) or off * 8 + length > 65535 or (not mf and off == 0)
        else:
            frag = bad = False
        options = (v4 and int(r["ip.hdr_len"] or 20) > 20) or any(
            p in ("ipv6.hopopts", "ipv6.dstopts", "ipv6.routing", "ah") for p in own
        )
        flags = int(r["tcp.flags"], 16) if "tcp" in own and r["tcp.flags"] else -1
        syn, fin, rst, ack, urg = (flags >= 0 and bool(flags & b) for b in (2, 1, 4, 16, 32))
        bad_tcp = flags >= 0 and ((flags & 0xFF) == 0 or (syn and fin) or (syn and rst) or ((fin or urg) and not ack))
        out.append((frag, bad, options, bad_tcp))
    return np.array(out, dtype=np.int64).reshape(-1, 4)
