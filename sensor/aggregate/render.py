"""Aggregates as text: prefixes and protocol labels as aguri3 prints them, and ``inspect --json``."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .results import AggregateSet


def render_prefix(addr: bytes, plen: int, family: int) -> str:
    """A prefix as aguri3 prints it: ``*`` / ``*::`` for length 0, the bare
    address at full length, ``address/len`` otherwise.

    aguri3 formats with the C library's ``inet_ntop``, and so do we: glibc's writes
    ``::ffff:a.b.c.d`` and ``::a.b.c.d`` with a dotted tail and turns the first
    longest run of two or more zero words into ``::`` (``ipaddress`` differs on the
    dotted tails, so it is not used here).
    """
    if plen == 0:
        return "*" if family == 4 else "*::"
    addr = bytes(addr)
    if family == 4:
        text = socket.inet_ntop(socket.AF_INET, addr[12:16])
        return text if plen == 32 else f"{text}/{plen}"
    text = socket.inet_ntop(socket.AF_INET6, addr)
    return text if plen == 128 else f"{text}/{plen}"


def proto_label(proto: int, sport: int, sport_len: int, dport: int, dport_len: int) -> str:
    """``[6:443:*]``, ``[17:1024-2047:53]``: a protocol/port entry in aguri3's notation.

    A port range is its first port and a prefix length of the 16-bit port; port 0
    and protocol 0 read ``*``, as in aguri3.
    """

    def port(p: int, n: int) -> str:
        if p == 0:
            return "*"
        return str(p) if n >= 16 else f"{p}-{p + (1 << (16 - n)) - 1}"

    return f"[{proto or '*'}:{port(sport, sport_len)}:{port(dport, dport_len)}]"


def to_json_dict(agg: AggregateSet) -> list[dict[str, Any]]:
    """Aggregates as ``inspect --json`` writes them, in rank order."""
    return [
        {
            "src": a.src_text,
            "dst": a.dst_text,
            "bytes": a.bytes,
            "packets": a.packets,
            "protocols": [{"label": p.label(), "bytes": p.bytes, "packets": p.packets} for p in a.protocols],
        }
        for a in agg.aggregates
    ]
