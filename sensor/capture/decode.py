"""Vectorized header decoding: raw frames in a byte buffer → ``PACKET_DTYPE`` records.

Every function here works on whole batches: ``buf`` is the capture bytes as a
uint8 array, ``data`` the offset of each frame in it and ``caplen`` how many of
its bytes were captured.  A field is read only where ``caplen`` covers it; a
header cut by the snaplen is read as far as it goes and flagged ``HDR_TRUNC``.
"""

from __future__ import annotations

import numpy as np

from ..addresses import IPV4_MAPPED_PREFIX
from .linklayer import (
    ETH_IPV4,
    ETH_IPV6,
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_RAW,
    _Frames,
    _link_layer,
)
from .records import (
    FRAG_DF,
    FRAG_FRAGMENT,
    FRAG_MF,
    FRAG_NONFIRST,
    HDR_L3,
    HDR_L4,
    HDR_OPTIONS,
    HDR_TRUNC,
    ICMP_PROTOS,
    PACKET_DTYPE,
    PORT_PROTOS,
)

# IPv6 extension headers walked to reach the transport header.
_IPV6_EXT_8 = (0, 43, 60, 135, 139, 140)  # length field in 8-octet units, excluding the first 8
_IPV6_FRAG = 44
_IPV6_AH = 51  # length in 4-octet units, excluding the first 2
_MAX_IPV6_EXT = 8


_MAPPED = np.frombuffer(IPV4_MAPPED_PREFIX + bytes(4), dtype=np.uint8)  # ::ffff:0.0.0.0


# Bytes of each frame gathered into one 2-D window for the fast path: enough for
# Ethernet (+ one VLAN tag) + IPv6 + the fixed TCP header.
WINDOW = 80
# Link types whose network header sits at a fixed offset: (offset, where the EtherType
# is or None, which IP versions the link type can carry).
_FIXED_L3 = {
    LINKTYPE_ETHERNET: (14, 12, (4, 6)),
    LINKTYPE_LINUX_SLL: (16, 14, (4, 6)),
    LINKTYPE_LINUX_SLL2: (20, 0, (4, 6)),
    LINKTYPE_RAW: (0, None, (4, 6)),
    12: (0, None, (4, 6)),
    14: (0, None, (4, 6)),
    LINKTYPE_IPV4: (0, None, (4,)),
    LINKTYPE_IPV6: (0, None, (6,)),
}
_FAST = True  # tests turn the fast path off to prove it equals the general one
_PORT_LUT = np.zeros(256, dtype=bool)
_PORT_LUT[list(PORT_PROTOS)] = True
_ICMP_LUT = np.zeros(256, dtype=bool)
_ICMP_LUT[list(ICMP_PROTOS)] = True


def frame_windows(buf: np.ndarray, start: np.ndarray, width: int) -> np.ndarray:
    """``buf[start[i] : start[i] + width]`` for every i as one (n, width) array.

    One row copy per frame (a fancy index over a sliding-window view), not one
    gather per byte.  Bytes past the end of ``buf`` read as 0; bytes past a
    frame's captured length are whatever follows it, so callers gate every field
    on the captured length.
    """
    n = len(start)
    limit = len(buf) - width
    if n and limit >= 0 and int(start.max()) <= limit:
        view: np.ndarray = np.lib.stride_tricks.sliding_window_view(buf, width)[start]
        return view
    out = np.zeros((n, width), dtype=np.uint8)
    ok = start <= limit
    if limit >= 0 and ok.any():
        out[ok] = np.lib.stride_tricks.sliding_window_view(buf, width)[start[ok]]
    rest = np.flatnonzero(~ok)
    if len(rest):
        idx = start[rest, None] + np.arange(width)
        out[rest] = np.where(idx < len(buf), buf[np.minimum(idx, len(buf) - 1)], 0)
    return out


def decode_frames(
    buf: np.ndarray,
    data: np.ndarray,
    caplen: np.ndarray,
    wirelen: np.ndarray,
    ts: np.ndarray,
    linktype: int,
    swapped: bool = False,
    iface: np.ndarray | int = 0,
    window: np.ndarray | None = None,
) -> np.ndarray:
    """Decode frames of one link type into a ``PACKET_DTYPE`` batch.

    ``buf`` holds the raw bytes, ``data`` each frame's offset in it; ``caplen``,
    ``wirelen`` and ``ts`` (ns) come from the capture's record headers.
    ``window``, if given, is ``frame_windows(buf, data, WINDOW)`` already gathered
    (the pcap reader gathers it together with the record headers).

    The common case (IPv4 without options, or IPv6 with TCP/UDP/ICMP right after
    the fixed header, at a fixed link-header length) is read column-wise from the
    window; every other frame goes through the general decoder, which walks VLAN
    tags, IPv4 options and IPv6 extension headers.  Both give identical records.
    """
    n = len(data)
    out = np.zeros(n, dtype=PACKET_DTYPE)
    out["ts"] = ts
    out["wire_len"] = wirelen
    out["cap_len"] = caplen
    out["iface"] = iface
    if n == 0:
        return out
    data = np.asarray(data, dtype=np.int64)
    caplen = np.asarray(caplen, dtype=np.int64)
    rest = None
    fixed = _FIXED_L3.get(linktype)
    if _FAST and fixed is not None:
        if window is None:
            window = frame_windows(buf, data, WINDOW)
        rest = _decode_fast(out, window, caplen, *fixed)
    if rest is None:
        _decode_general(out, buf, data, caplen, linktype)
    elif len(rest):
        sub = out[rest]
        _decode_general(sub, buf, data[rest], caplen[rest], linktype)
        out[rest] = sub
    return out


def _be16(w: np.ndarray, k: int) -> np.ndarray:
    out: np.ndarray = (w[:, k].astype(np.uint16) << 8) | w[:, k + 1]
    return out


def _decode_fast(
    out: np.ndarray, w: np.ndarray, caplen: np.ndarray, L: int, et_at: int | None, versions: tuple[int, ...]
) -> np.ndarray | None:
    """Fill the records of plain IPv4/IPv6 frames from the window; return the other rows."""
    first = w[:, L]
    if et_at is None:
        v4 = (first == 0x45) & (4 in versions)
        v6 = ((first >> 4) == 6) & (6 in versions)
    else:
        et_hi, et_lo = w[:, et_at], w[:, et_at + 1]
        v4 = (et_hi == 0x08) & (et_lo == 0x00) & (first == 0x45)
        v6 = (et_hi == 0x86) & (et_lo == 0xDD) & ((first >> 4) == 6)
    v4 &= caplen >= L + 20
    # IPv6 is fast only when the transport header follows the fixed header directly.
    nxt6 = w[:, L + 6]
    v6 &= (caplen >= L + 40) & (_PORT_LUT[nxt6] | _ICMP_LUT[nxt6] | (nxt6 == 59))
    fast = v4 | v6
    nfast = int(np.count_nonzero(fast))
    if nfast == 0:
        return None
    if nfast == len(out):
        rows: slice | np.ndarray = slice(None)
        rest = np.zeros(0, dtype=np.int64)
    else:
        rows = np.flatnonzero(fast)
        rest = np.flatnonzero(~fast)
        w, caplen, v4, v6 = w[rows], caplen[rows], v4[rows], v6[rows]
    any6 = bool(v6.any())
    all4 = not any6

    if all4:
        l4: int | np.ndarray = L + 20
        proto = w[:, L + 9]
        ff = _be16(w, L + 6)
        fo = ff & 0x1FFF
        mf = (ff >> 13) & 1
        frag = (mf * 1 + ((ff >> 14) & 1) * 2).astype(np.uint8)  # FRAG_MF | FRAG_DF
        isfrag = (mf != 0) | (fo != 0)
        nonfirst = fo != 0
        frag |= isfrag.astype(np.uint8) * FRAG_FRAGMENT
        frag |= nonfirst.astype(np.uint8) * FRAG_NONFIRST
        src = np.empty((len(w), 16), dtype=np.uint8)
        src[:, :12] = _MAPPED[:12]
        dst = src.copy()
        src[:, 12:] = w[:, L + 12 : L + 16]
        dst[:, 12:] = w[:, L + 16 : L + 20]
        l3v: int | np.ndarray = 4
        ip_len = _be16(w, L + 2)
        ttl = w[:, L + 8]
        frag_off = fo
        frag_id = _be16(w, L + 4) * isfrag
        has_l4 = ~nonfirst
    else:
        # A mix: compute both layouts and pick per row.
        l4 = np.where(v6, L + 40, L + 20)
        proto = np.where(v6, w[:, L + 6], w[:, L + 9])
        ff = np.where(v6, 0, _be16(w, L + 6))
        fo = ff & 0x1FFF
        mf = (ff >> 13) & 1
        frag = (mf * 1 + ((ff >> 14) & 1) * 2).astype(np.uint8)
        nonfirst = fo != 0
        frag |= ((mf != 0) | nonfirst).astype(np.uint8) * FRAG_FRAGMENT
        frag |= nonfirst.astype(np.uint8) * FRAG_NONFIRST
        src = np.empty((len(w), 16), dtype=np.uint8)
        src[:, :12] = _MAPPED[:12]
        dst = src.copy()
        src[:, 12:] = w[:, L + 12 : L + 16]
        dst[:, 12:] = w[:, L + 16 : L + 20]
        r6 = np.flatnonzero(v6)
        src[r6] = w[r6, L + 8 : L + 24]
        dst[r6] = w[r6, L + 24 : L + 40]
        l3v = np.where(v6, 6, 4).astype(np.uint8)
        ip_len = np.where(v6, _be16(w, L + 4).astype(np.uint32) + 40, _be16(w, L + 2))
        ttl = np.where(v6, w[:, L + 7], w[:, L + 8])
        frag_off = fo
        # the fast path's IPv6 packets carry no fragment header: their ``ff`` reads 0
        frag_id = np.where((mf != 0) | nonfirst, _be16(w, L + 4), 0)
        has_l4 = ~nonfirst

    ports = has_l4 & _PORT_LUT[proto]
    tcp = has_l4 & (proto == 6)
    icmp = has_l4 & _ICMP_LUT[proto]
    left = caplen - l4  # captured bytes of the transport header
    ports_ok = ports & (left >= 4)
    flags_ok = tcp & (left >= 14)
    win_ok = tcp & (left >= 16)
    icmp_ok = icmp & (left >= 2)
    if all4:
        t = w[:, l4 : l4 + 16]
        sport = _be16(t, 0)
        dport = _be16(t, 2)
        flags = ((t[:, 12].astype(np.uint16) & 1) << 8) | t[:, 13]
        twin = _be16(t, 14)
        itype, icode = t[:, 0], t[:, 1]
    else:
        t = np.where(v6[:, None], w[:, L + 40 : L + 56], w[:, L + 20 : L + 36])
        sport = _be16(t, 0)
        dport = _be16(t, 2)
        flags = ((t[:, 12].astype(np.uint16) & 1) << 8) | t[:, 13]
        twin = _be16(t, 14)
        itype, icode = t[:, 0], t[:, 1]
    hdr = HDR_L3 | ((ports_ok | icmp_ok).astype(np.uint8) * HDR_L4)
    wanted = (ports & ~ports_ok) | (icmp & ~icmp_ok) | (tcp & ~win_ok)
    hdr |= wanted.astype(np.uint8) * HDR_TRUNC

    o = out if isinstance(rows, slice) else np.zeros(len(w), dtype=PACKET_DTYPE)
    o["src"] = src
    o["dst"] = dst
    o["l3"] = l3v
    o["ip_len"] = ip_len
    o["ttl"] = ttl
    o["proto"] = proto
    o["frag"] = frag
    o["frag_off"] = frag_off
    o["frag_id"] = frag_id
    o["sport"] = sport * ports_ok
    o["dport"] = dport * ports_ok
    o["tcp_flags"] = flags * flags_ok
    o["tcp_win"] = twin * win_ok
    o["icmp_type"] = itype * icmp_ok
    o["icmp_code"] = icode * icmp_ok
    o["hdr"] = hdr
    if not isinstance(rows, slice):
        for name in _DECODED:
            out[name][rows] = o[name]
    return rest


_DECODED = (
    "src",
    "dst",
    "l3",
    "ip_len",
    "ttl",
    "proto",
    "frag",
    "frag_off",
    "frag_id",
    "sport",
    "dport",
    "tcp_flags",
    "tcp_win",
    "icmp_type",
    "icmp_code",
    "hdr",
)


def _decode_general(out: np.ndarray, buf: np.ndarray, data: np.ndarray, caplen: np.ndarray, linktype: int) -> None:
    """The general decoder: any supported link type, VLAN tags, IPv4 options, IPv6 extension headers."""
    n = len(data)
    f = _Frames(buf, data, caplen, out["wire_len"])
    l3, et = _link_layer(f, linktype, n, False)
    first = f.u8(l3)
    version = first >> 4

    is4 = (et == ETH_IPV4) & (version == 4) & f.has(l3, 20) & ((first & 0x0F) >= 5)
    is6 = (et == ETH_IPV6) & (version == 6) & f.has(l3, 40)
    # An IP EtherType whose header the snaplen cut short is still a truncated IP packet, and
    # a link header damaged or cut before the network header (802.11, radiotap) is cut too.
    wanted_ip = (et == ETH_IPV4) | (et == ETH_IPV6)
    hdr = np.where((wanted_ip & ~(is4 | is6)) | f.cut, HDR_TRUNC, 0).astype(np.uint8)

    proto = np.zeros(n, dtype=np.uint8)
    l4 = np.zeros(n, dtype=np.int64)
    frag = np.zeros(n, dtype=np.uint8)
    frag_off = np.zeros(n, dtype=np.uint16)
    frag_id = np.zeros(n, dtype=np.uint32)

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
        frag_id[r] = np.where((ff & 0x2000) | fo, f.be16(l3 + 4)[r], 0)
        src = np.broadcast_to(_MAPPED, (len(r), 16)).copy()
        dst = src.copy()
        src[:, 12:] = f.block(l3 + 12, 4, r)
        dst[:, 12:] = f.block(l3 + 16, 4, r)
        out["src"][r] = src
        out["dst"][r] = dst
        l4[r] = base + ihl
        hdr[r] |= np.where(base + ihl <= f.caplen[r], HDR_L3, HDR_TRUNC).astype(np.uint8)
        hdr[r] |= np.where(ihl > 20, HDR_OPTIONS, 0).astype(np.uint8)

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
            hdr |= np.where(step & ~isfrag, HDR_OPTIONS, 0).astype(np.uint8)
            frag = np.where(fr, frag | FRAG_FRAGMENT | np.where(fw & 1, FRAG_MF, 0), frag).astype(np.uint8)
            frag = np.where(fr & (fo > 0), frag | FRAG_NONFIRST, frag).astype(np.uint8)
            frag_off = np.where(fr, fo, frag_off).astype(np.uint16)
            frag_id = np.where(fr, f.be32(pos + 4), frag_id).astype(np.uint32)
            hlen = np.where(
                isfrag,
                8,
                np.where(isah, (f.u8(pos + 1).astype(np.int64) + 2) * 4, (f.u8(pos + 1).astype(np.int64) + 1) * 8),
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
    out["frag_id"] = frag_id

    has_l4 = ip & ((frag & FRAG_NONFIRST) == 0)
    ports = has_l4 & np.isin(proto, PORT_PROTOS)
    ports_ok = ports & f.has(l4, 4)
    out["sport"] = np.where(ports_ok, f.be16(l4), 0)
    out["dport"] = np.where(ports_ok, f.be16(l4 + 2), 0)
    tcp = has_l4 & (proto == 6)
    flags_ok = tcp & f.has(l4, 14)
    out["tcp_flags"] = np.where(flags_ok, ((f.u8(l4 + 12).astype(np.uint16) & 1) << 8) | f.u8(l4 + 13), 0)
    out["tcp_win"] = np.where(tcp & f.has(l4, 16), f.be16(l4 + 14), 0)
    icmp = has_l4 & np.isin(proto, ICMP_PROTOS)
    icmp_ok = icmp & f.has(l4, 2)
    out["icmp_type"] = np.where(icmp_ok, f.u8(l4), 0)
    out["icmp_code"] = np.where(icmp_ok, f.u8(l4 + 1), 0)

    l4_ok = ports_ok | icmp_ok
    hdr |= np.where(l4_ok, HDR_L4, 0).astype(np.uint8)
    wanted_l4 = (ports & ~ports_ok) | (icmp & ~icmp_ok) | (tcp & ~f.has(l4, 16))
    hdr |= np.where(wanted_l4, HDR_TRUNC, 0).astype(np.uint8)
    out["hdr"] = hdr
