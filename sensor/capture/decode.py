"""Vectorized header decoding: raw frames in a byte buffer → ``PACKET_DTYPE`` records.

Every function here works on whole batches: ``buf`` is the capture bytes as a
uint8 array, ``data`` the offset of each frame in it and ``caplen`` how many of
its bytes were captured.  A field is read only where ``caplen`` covers it; a
header cut by the snaplen is read as far as it goes and flagged ``HDR_TRUNC``.
"""
from __future__ import annotations

import numpy as np

from .records import (
    FRAG_DF,
    FRAG_FRAGMENT,
    FRAG_MF,
    FRAG_NONFIRST,
    HDR_L3,
    HDR_L4,
    HDR_TRUNC,
    PACKET_DTYPE,
)

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

# IPv6 extension headers walked to reach the transport header.
_IPV6_EXT_8 = (0, 43, 60, 135, 139, 140)  # length field in 8-octet units, excluding the first 8
_IPV6_FRAG = 44
_IPV6_AH = 51  # length in 4-octet units, excluding the first 2
_MAX_IPV6_EXT = 8

_PORT_PROTOS = (6, 17, 33, 132, 136)  # TCP, UDP, DCCP, SCTP, UDP-Lite
_ICMP_PROTOS = (1, 58)

_MAPPED = np.zeros(16, dtype=np.uint8)
_MAPPED[10:12] = 0xFF


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
        return self.buf[np.minimum(idx, self.last)]


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


def decode_frames(
    buf: np.ndarray,
    data: np.ndarray,
    caplen: np.ndarray,
    wirelen: np.ndarray,
    ts: np.ndarray,
    linktype: int,
    swapped: bool = False,
    iface: np.ndarray | int = 0,
) -> np.ndarray:
    """Decode frames of one link type into a ``PACKET_DTYPE`` batch.

    ``buf`` holds the raw bytes, ``data`` each frame's offset in it; ``caplen``,
    ``wirelen`` and ``ts`` (ns) come from the capture's record headers.
    """
    n = len(data)
    out = np.zeros(n, dtype=PACKET_DTYPE)
    out["ts"] = ts
    out["wire_len"] = wirelen
    out["cap_len"] = caplen
    out["iface"] = iface
    if n == 0:
        return out
    f = _Frames(buf, data.astype(np.int64), caplen)
    l3, et = _link_layer(f, linktype, n, swapped)
    first = f.u8(l3)
    version = first >> 4

    is4 = (et == ETH_IPV4) & (version == 4) & f.has(l3, 20) & ((first & 0x0F) >= 5)
    is6 = (et == ETH_IPV6) & (version == 6) & f.has(l3, 40)
    # An IP EtherType whose header the snaplen cut short is still a truncated IP packet.
    wanted_ip = (et == ETH_IPV4) | (et == ETH_IPV6)
    hdr = np.where(wanted_ip & ~(is4 | is6), HDR_TRUNC, 0).astype(np.uint8)

    proto = np.zeros(n, dtype=np.uint8)
    l4 = np.zeros(n, dtype=np.int64)
    frag = np.zeros(n, dtype=np.uint8)
    frag_off = np.zeros(n, dtype=np.uint16)

    if is4.any():
        r = np.flatnonzero(is4)
        ihl = (first[r] & 0x0F).astype(np.int64) * 4
        base = l3[r]
        out["l3"][r] = 4
        out["ip_len"][r] = f.be16(l3 + 2)[r]
        out["ttl"][r] = f.u8(l3 + 8)[r]
        proto[r] = f.u8(l3 + 9)[r]
        ff = f.be16(l3 + 6)[r]
        fo = ff & 0x1FFF
        fbits = np.where(ff & 0x2000, FRAG_MF, 0) | np.where(ff & 0x4000, FRAG_DF, 0)
        fbits |= np.where((ff & 0x2000) | fo, FRAG_FRAGMENT, 0)
        fbits |= np.where(fo > 0, FRAG_NONFIRST, 0)
        frag[r] = fbits
        frag_off[r] = fo
        src = np.broadcast_to(_MAPPED, (len(r), 16)).copy()
        dst = src.copy()
        src[:, 12:] = f.block(l3 + 12, 4, r)
        dst[:, 12:] = f.block(l3 + 16, 4, r)
        out["src"][r] = src
        out["dst"][r] = dst
        l4[r] = base + ihl
        hdr[r] |= np.where(base + ihl <= f.caplen[r], HDR_L3, HDR_TRUNC).astype(np.uint8)

    if is6.any():
        r = np.flatnonzero(is6)
        out["l3"][r] = 6
        out["ip_len"][r] = f.be16(l3 + 4)[r].astype(np.uint32) + 40
        out["ttl"][r] = f.u8(l3 + 7)[r]
        out["src"][r] = f.block(l3 + 8, 16, r)
        out["dst"][r] = f.block(l3 + 24, 16, r)
        hdr[r] |= HDR_L3
        nxt = f.u8(l3 + 6)
        pos = l3 + 40
        active = is6.copy()
        for _ in range(_MAX_IPV6_EXT):
            ext8 = np.isin(nxt, _IPV6_EXT_8)
            isfrag = nxt == _IPV6_FRAG
            isah = nxt == _IPV6_AH
            step = active & (ext8 | isfrag | isah)
            if not step.any():
                break
            cut = step & ~f.has(pos, 8)
            hdr |= np.where(cut, HDR_TRUNC, 0).astype(np.uint8)
            step &= ~cut
            active &= ~cut
            fw = f.be16(pos + 2)
            fo = fw >> 3
            fr = step & isfrag
            frag = np.where(fr, frag | FRAG_FRAGMENT | np.where(fw & 1, FRAG_MF, 0), frag).astype(np.uint8)
            frag = np.where(fr & (fo > 0), frag | FRAG_NONFIRST, frag).astype(np.uint8)
            frag_off = np.where(fr, fo, frag_off).astype(np.uint16)
            hlen = np.where(
                isfrag, 8, np.where(isah, (f.u8(pos + 1).astype(np.int64) + 2) * 4, (f.u8(pos + 1).astype(np.int64) + 1) * 8)
            )
            nxt = np.where(step, f.u8(pos), nxt)
            pos = np.where(step, pos + hlen, pos)
            # Past a non-first fragment header lies payload, not another header.
            active &= ~(fr & (fo > 0))
        proto[r] = nxt[r]
        l4[r] = pos[r]

    ip = is4 | is6
    out["proto"] = proto
    out["frag"] = frag
    out["frag_off"] = frag_off

    has_l4 = ip & ((frag & FRAG_NONFIRST) == 0)
    ports = has_l4 & np.isin(proto, _PORT_PROTOS)
    ports_ok = ports & f.has(l4, 4)
    out["sport"] = np.where(ports_ok, f.be16(l4), 0)
    out["dport"] = np.where(ports_ok, f.be16(l4 + 2), 0)
    tcp = has_l4 & (proto == 6)
    flags_ok = tcp & f.has(l4, 14)
    out["tcp_flags"] = np.where(
        flags_ok, ((f.u8(l4 + 12).astype(np.uint16) & 1) << 8) | f.u8(l4 + 13), 0
    )
    out["tcp_win"] = np.where(tcp & f.has(l4, 16), f.be16(l4 + 14), 0)
    icmp = has_l4 & np.isin(proto, _ICMP_PROTOS)
    icmp_ok = icmp & f.has(l4, 2)
    out["icmp_type"] = np.where(icmp_ok, f.u8(l4), 0)
    out["icmp_code"] = np.where(icmp_ok, f.u8(l4 + 1), 0)

    l4_ok = ports_ok | icmp_ok
    hdr |= np.where(l4_ok, HDR_L4, 0).astype(np.uint8)
    wanted_l4 = (ports & ~ports_ok) | (icmp & ~icmp_ok) | (tcp & ~f.has(l4, 16))
    hdr |= np.where(wanted_l4, HDR_TRUNC, 0).astype(np.uint8)
    out["hdr"] = hdr
    return out


def network_offsets(buf: np.ndarray, data: np.ndarray, caplen: np.ndarray, linktype: int) -> np.ndarray:
    """Per frame, where its network header starts (after the link header and any VLAN tags)."""
    f = _Frames(buf, data.astype(np.int64), caplen)
    off, _ = _link_layer(f, linktype, len(data), False)
    return off
