"""The lattice search of aguri3's ``hhh.c``, over any key space that fits in 64-bit words.

Keys are (source, destination) pairs of W uint64 words each, top-aligned. The
search walks the lattice of (source prefix length, destination prefix length)
from the most specific corner up, extracting every group whose residual
volume — what more specific groups extracted below it left — reaches the
threshold. The same search serves addresses (IPv4: 32 bits in one word, IPv6:
128 bits in two) and the (protocol, port) pairs of one aggregate (24 bits).

The recursion itself runs in C (``_lattice.c``: thousands of tiny groupings a
second cost more in numpy calls than in work); this module says which passes it
makes and with which steps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..capture.records import PACKET_DTYPE
from . import _lattice
from .config import BYTE, COMBINATION, PACKET

_CRITERIA = {COMBINATION: _lattice.COMBINATION, BYTE: _lattice.BYTE, PACKET: _lattice.PACKET}


def _offset(name: str) -> int:
    """Byte offset of a PACKET_DTYPE field within a record, where the C grouping reads it."""
    fields = PACKET_DTYPE.fields
    assert fields is not None  # PACKET_DTYPE is a structured dtype
    return fields[name][1]


_ODFLOW_OFFSETS = (_offset("l3"), _offset("src"), _offset("dst"), _offset("wire_len"))


@dataclass(frozen=True)
class Found:
    """The aggregates one search extracted, in extraction order; volumes are residual."""

    src: np.ndarray  # (M, W) uint64: masked words
    dst: np.ndarray
    src_len: np.ndarray  # (M,) int64
    dst_len: np.ndarray
    bytes: np.ndarray
    packets: np.ndarray
    owner: np.ndarray  # (N,) int64: the aggregate that took each input flow, -1 if none did

    def __len__(self) -> int:
        return len(self.bytes)


def odflows(ip: np.ndarray, family: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """aguri3's input odflows of one family's packets in ``ip`` (``PACKET_DTYPE`` records):
    one per (source, destination) address pair, in ascending pair order.

    Returns (keys (F, 2W) source then destination words, vol (F, 2) wire bytes and
    packets, first (F,) each flow's first record, flow (N,) each record's flow or -1).
    """
    ip = np.ascontiguousarray(ip, dtype=PACKET_DTYPE)
    n, words = len(ip), 1 if family == 4 else 2
    keys = np.empty((n, 2 * words), dtype=np.uint64)
    vol = np.empty((n, 2), dtype=np.int64)
    first = np.empty(n, dtype=np.int64)
    flow = np.empty(n, dtype=np.int64)
    f = _lattice.odflows(ip, ip.itemsize, *_ODFLOW_OFFSETS, family, keys, vol, first, flow)
    return keys[:f], vol[:f], first[:f], flow


def _search(
    keys: np.ndarray,
    vol: np.ndarray,
    bits: int,
    tb: int,
    tp: int,
    criterion: str,
    steps: tuple[int, int, int],
    passes: np.ndarray,
) -> Found:
    """``keys``: (N, 2W) source then destination words; ``vol``: (N, 2) bytes and packets;
    ``steps``: (minsize, cutoff, cutoffres); each pass starts at (source length, destination
    length) with a step, on an edge length."""
    words = keys.shape[1] // 2
    keys = np.ascontiguousarray(keys, dtype=np.uint64)
    vol = np.ascontiguousarray(vol, dtype=np.int64)
    owner = np.empty(len(keys), dtype=np.int64)
    minsize, cutoff, cutoffres = steps
    k, m = _lattice.hhh(keys, vol, words, bits, tb, tp, _CRITERIA[criterion], minsize, cutoff, cutoffres, passes, owner)
    out_keys = np.frombuffer(k, dtype=np.uint64).reshape(-1, 2 * words)
    meta = np.frombuffer(m, dtype=np.int64).reshape(-1, 4)
    return Found(out_keys[:, :words], out_keys[:, words:], meta[:, 0], meta[:, 1], meta[:, 2], meta[:, 3], owner)


# Each pass: (source length, destination length, step, edge length).  IPv6's last three
# have their edge at /64: the first two searched the interface identifiers whole.
_IPV4_PASSES = np.array([(32, 0, 32, 32), (0, 32, 32, 32), (0, 0, 32, 32)], dtype=np.int64)
_IPV6_PASSES = np.array(
    [(128, 0, 128, 128), (0, 128, 128, 128), (64, 0, 64, 64), (0, 64, 64, 64), (0, 0, 64, 64)], dtype=np.int64
)
_PROTOCOL_PASSES = np.array([(24, 8, 16, 24), (8, 24, 16, 24), (8, 8, 16, 24)], dtype=np.int64)


def hhh_addresses(family: int, keys: np.ndarray, vol: np.ndarray, tb: int, tp: int, criterion: str) -> Found:
    """Address aggregates of one family's input flows, in the order aguri3 extracts them.

    ``keys``, ``vol``: as ``odflows`` gives them. The bottom edges first (full source
    with every destination prefix, then full destination), then the whole lattice.
    IPv4 prefixes shorter than /16 move in 8-bit steps; IPv6 ones shorter than /32 in
    16-bit steps, and IPv6 searches /64../128 apart from the rest so an interface
    identifier is never split.
    """
    if family == 4:
        return _search(keys, vol, 32, tb, tp, criterion, (1, 16, 8), _IPV4_PASSES)
    return _search(keys, vol, 128, tb, tp, criterion, (1, 32, 16), _IPV6_PASSES)


def hhh_protocols(keys: np.ndarray, vol: np.ndarray, tb: int, tp: int, criterion: str) -> Found:
    """Protocol/port aggregation: (N, 2) keys are proto<<16|port, 24 bits each side, top-aligned;
    ``vol``: (N, 2) bytes and packets."""
    return _search(keys, vol, 24, tb, tp, criterion, (16, 0, 1), _PROTOCOL_PASSES)
