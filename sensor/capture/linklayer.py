"""Link layers: where each frame's network header starts, and what it carries.

Batch functions like ``decode.py``'s: ``buf`` is the capture bytes, ``data`` each
frame's offset in it, ``caplen`` how many of its bytes were captured.  New link
types (802.11, radiotap, …) go here.
"""

from __future__ import annotations

import numpy as np

# Link-layer header types (https://www.tcpdump.org/linktypes.html).
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
# DLT_RAW's value differs between platforms; files from OpenBSD/BSD may carry these.
_RAW_ALIASES = (12, 14)

SUPPORTED_LINKTYPES = frozenset(
    (
        LINKTYPE_NULL,
        LINKTYPE_ETHERNET,
        LINKTYPE_RAW,
        LINKTYPE_LOOP,
        LINKTYPE_LINUX_SLL,
        LINKTYPE_IPV4,
        LINKTYPE_IPV6,
        LINKTYPE_LINUX_SLL2,
        *_RAW_ALIASES,
    )
)

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
_VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
_MAX_VLAN_TAGS = 3


class _Frames:
    """Bounds-checked gathers over the frames of one batch."""

    def __init__(self, buf: np.ndarray, data: np.ndarray, caplen: np.ndarray):
        self.buf = buf
        self.data = data
        self.caplen = caplen.astype(np.int64)
        self.last = len(buf) - 1

    def has(self, off: np.ndarray, n: int) -> np.ndarray:
        """Where bytes [off, off+n) of each frame were captured."""
        return off + n <= self.caplen

    def u8(self, off: np.ndarray) -> np.ndarray:
        idx = np.minimum(self.data + off, self.last)
        return np.where(off < self.caplen, self.buf[idx], 0).astype(np.uint8)

    def be16(self, off: np.ndarray) -> np.ndarray:
        hi = self.u8(off).astype(np.uint16)
        lo = self.u8(off + 1).astype(np.uint16)
        return (hi << 8) | lo

    def le32(self, off: np.ndarray) -> np.ndarray:
        out = np.zeros(len(off), dtype=np.uint32)
        for k in range(4):
            out |= self.u8(off + k).astype(np.uint32) << np.uint32(8 * k)
        return out

    def block(self, off: np.ndarray, n: int, rows: np.ndarray) -> np.ndarray:
        """n consecutive bytes at off for the selected rows, as an (len(rows), n) array."""
        idx = self.data[rows, None] + off[rows, None] + np.arange(n)
        out: np.ndarray = self.buf[np.minimum(idx, self.last)]
        return out


def _link_layer(f: _Frames, linktype: int, n: int, swapped: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: offset of the network header, and its EtherType (0 if unknown)."""
    zero = np.zeros(n, dtype=np.int64)
    if linktype == LINKTYPE_ETHERNET:
        et = f.be16(zero + 12)
        off = zero + 14
        for _ in range(_MAX_VLAN_TAGS):
            tagged = np.isin(et, _VLAN_TPIDS) & f.has(off, 4)
            if not tagged.any():
                break
            et = np.where(tagged, f.be16(off + 2), et)
            off = np.where(tagged, off + 4, off)
        return off, np.where(f.has(zero, 14), et, 0)
    if linktype == LINKTYPE_LINUX_SLL:
        return zero + 16, np.where(f.has(zero, 16), f.be16(zero + 14), 0)
    if linktype == LINKTYPE_LINUX_SLL2:
        return zero + 20, np.where(f.has(zero, 20), f.be16(zero), 0)
    if linktype in (LINKTYPE_RAW, *_RAW_ALIASES):
        return zero, _ethertype_from_version(f.u8(zero))
    if linktype == LINKTYPE_IPV4:
        return zero, np.full(n, ETH_IPV4, dtype=np.uint16)
    if linktype == LINKTYPE_IPV6:
        return zero, np.full(n, ETH_IPV6, dtype=np.uint16)
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        # The family is in the capturing host's byte order (NULL) or network
        # order (LOOP); try both orders since NULL files travel between hosts.
        fam = f.le32(zero)
        swapped_fam = fam.byteswap()
        fam = np.where(fam > 0xFFFF, swapped_fam, fam)
        is4 = fam == 2
        is6 = np.isin(fam, (10, 24, 28, 30))
        et = np.where(is4, ETH_IPV4, np.where(is6, ETH_IPV6, 0)).astype(np.uint16)
        return zero + 4, np.where(f.has(zero, 4), et, 0)
    raise ValueError(f"unsupported link type {linktype}")


def _ethertype_from_version(first: np.ndarray) -> np.ndarray:
    v = first >> 4
    return np.where(v == 4, ETH_IPV4, np.where(v == 6, ETH_IPV6, 0)).astype(np.uint16)


def network_offsets(buf: np.ndarray, data: np.ndarray, caplen: np.ndarray, linktype: int) -> np.ndarray:
    """Per frame, where its network header starts (after the link header and any VLAN tags)."""
    f = _Frames(buf, data.astype(np.int64), caplen)
    off, _ = _link_layer(f, linktype, len(data), False)
    return off
