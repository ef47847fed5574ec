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
LINKTYPE_PPP = 9
LINKTYPE_C_HDLC = 104
LINKTYPE_PPI = 192
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
        LINKTYPE_PPP,
        LINKTYPE_C_HDLC,
        LINKTYPE_PPI,
        *_RAW_ALIASES,
    )
)

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
_VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
_MAX_VLAN_TAGS = 3
_MPLS = (0x8847, 0x8848)  # unicast, multicast label stacks
_MAX_MPLS_LABELS = 4
_PPP_IP = {0x0021: ETH_IPV4, 0x0057: ETH_IPV6}  # PPP protocol numbers (RFC 1332, RFC 5072)


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

    def le16(self, off: np.ndarray) -> np.ndarray:
        return self.u8(off).astype(np.uint16) | (self.u8(off + 1).astype(np.uint16) << 8)

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
    off, et = _outer_layer(f, linktype, n)
    return _mpls(f, off, et)


def _ethernet(f: _Frames, base: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    et = f.be16(base + 12)
    off = base + 14
    for _ in range(_MAX_VLAN_TAGS):
        tagged = np.isin(et, _VLAN_TPIDS) & f.has(off, 4)
        if not tagged.any():
            break
        et = np.where(tagged, f.be16(off + 2), et)
        off = np.where(tagged, off + 4, off)
    return off, np.where(f.has(base, 14), et, 0)


def _mpls(f: _Frames, off: np.ndarray, et: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step over MPLS label stacks; the payload's IP version gives its EtherType."""
    inside = np.isin(et, _MPLS)
    if not inside.any():
        return off, et
    for _ in range(_MAX_MPLS_LABELS):
        bottom = (f.u8(off + 2) & 1).astype(bool)
        off = np.where(inside, off + 4, off)
        inside &= ~bottom & f.has(off, 4)
    stacked = np.isin(et, _MPLS)
    return off, np.where(stacked, _ethertype_from_version(f.u8(off)), et).astype(np.uint16)


def _outer_layer(f: _Frames, linktype: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    zero = np.zeros(n, dtype=np.int64)
    if linktype == LINKTYPE_ETHERNET:
        return _ethernet(f, zero)
    if linktype == LINKTYPE_PPP:
        # HDLC-like framing (FF 03) before the protocol, or none; a Cisco HDLC frame (0F/8F)
        # may travel under this link type too (libpcap reads it so).
        b0 = f.u8(zero)
        hdlc = (b0 == 0xFF) & (f.u8(zero + 1) == 0x03)
        cisco = (b0 == 0x0F) | (b0 == 0x8F)
        start = np.where(hdlc | cisco, 2, 0)
        proto = f.be16(start)
        ppp = np.zeros(n, dtype=np.uint16)
        for number, ether in _PPP_IP.items():
            ppp[proto == number] = ether
        et = np.where(cisco, proto, ppp)
        return start + 2, np.where(f.has(start, 2), et, 0).astype(np.uint16)
    if linktype == LINKTYPE_C_HDLC:
        return zero + 4, np.where(f.has(zero, 4), f.be16(zero + 2), 0)
    if linktype == LINKTYPE_PPI:
        # A PPI header (little-endian length and inner link type) before the frame; Ethernet inside.
        base = f.le16(zero + 2).astype(np.int64)
        inner = f.le32(zero + 4)
        off, et = _ethernet(f, base)
        return off, np.where(f.has(zero, 8) & (inner == LINKTYPE_ETHERNET), et, 0)
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
