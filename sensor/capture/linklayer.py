"""Link layers: where each frame's network header starts, and what it carries.

Batch functions like ``decode.py``'s: ``buf`` is the capture bytes, ``data`` each
frame's offset in it, ``caplen`` how many of its bytes were captured.  New link
types go here.

802.11 (105, and inside radiotap 127, AVS 163, Prism 119 and PPI 192): only data frames
carry IP, after an LLC/SNAP header; protected (encrypted) data frames and management and
control frames are read as non-IP.  A link header that is damaged or cut short before
the network header is marked in ``_Frames.cut`` (the decoder flags it ``HDR_TRUNC``); a
radiotap FCS at the end of the frame is left out of the bytes the decoder reads.
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
LINKTYPE_IEEE802_11 = 105
LINKTYPE_IEEE802_11_PRISM = 119
LINKTYPE_IEEE802_11_RADIOTAP = 127
LINKTYPE_IEEE802_11_AVS = 163
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
        LINKTYPE_IEEE802_11,
        LINKTYPE_IEEE802_11_PRISM,
        LINKTYPE_IEEE802_11_RADIOTAP,
        LINKTYPE_IEEE802_11_AVS,
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
# 802.11 frame control flags (the second byte) and radiotap Flags bits.
_WLAN_TODS_FROMDS = 0x03
_WLAN_PROTECTED = 0x40
_WLAN_ORDER = 0x80  # on a QoS data frame: an HT/VHT/HE Control field follows the QoS Control
_RADIOTAP_FCS = 0x10  # the frame ends with its 4-byte FCS
_RADIOTAP_DATAPAD = 0x20  # padding after the 802.11 header, to a 4-byte boundary
_RADIOTAP_BADFCS = 0x40  # the frame failed its FCS check
_RADIOTAP_EXT = 1 << 31  # another it_present word follows
_MAX_RADIOTAP_PRESENT = 16  # it_present words followed (real headers have up to ~5)
# SNAP OUIs whose protocol id is an EtherType: RFC 1042 and 802.1H bridge tunnel.
_SNAP_OUI_LAST = (0x00, 0xF8)
_AVS_MAGICS = (0x80211001, 0x80211002)  # AVS capture header versions 1 and 2
_PRISM_HEADER = 144


class _Frames:
    """Bounds-checked gathers over the frames of one batch."""

    def __init__(self, buf: np.ndarray, data: np.ndarray, caplen: np.ndarray, wirelen: np.ndarray | None = None):
        self.buf = buf
        self.data = data
        self.caplen = caplen.astype(np.int64)
        self.wirelen = self.caplen if wirelen is None else wirelen.astype(np.int64)
        self.last = len(buf) - 1
        # Frames whose link header is damaged or cut short before the network header.
        self.cut = np.zeros(len(data), dtype=bool)

    def drop_fcs(self, fcs: np.ndarray) -> None:
        """Read no further than the FCS of the selected frames (the last 4 bytes on the wire, if captured)."""
        self.caplen = np.where(fcs, np.minimum(self.caplen, self.wirelen - 4), self.caplen)

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

    def be32(self, off: np.ndarray) -> np.ndarray:
        out = np.zeros(len(off), dtype=np.uint32)
        for k in range(4):
            out |= self.u8(off + k).astype(np.uint32) << np.uint32(24 - 8 * k)
        return out

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
    off, et = _vlan(f, base + 14, f.be16(base + 12))
    return off, np.where(f.has(base, 14), et, 0)


def _vlan(f: _Frames, off: np.ndarray, et: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step over up to three VLAN tags at off, which follows EtherType et."""
    for _ in range(_MAX_VLAN_TAGS):
        tagged = np.isin(et, _VLAN_TPIDS) & f.has(off, 4)
        if not tagged.any():
            break
        et = np.where(tagged, f.be16(off + 2), et)
        off = np.where(tagged, off + 4, off)
    return off, et


def _ieee80211(f: _Frames, base: np.ndarray, datapad: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An 802.11 MAC frame at base: the network header and EtherType of its data frames.

    Only data frames (protocol version 0, type 2) of a subtype with a body carry IP, after
    an LLC/SNAP header; a protected one's body is encrypted and reads as non-IP, as do
    management and control frames; a frame shorter than 10 bytes is damaged.  The header
    is 24 bytes, 30 with four addresses (ToDS and FromDS), +2 for QoS Control and +4 for
    an HT Control field (a QoS data frame with the Order bit); ``datapad`` (radiotap)
    rounds it up to 4 bytes.  An A-MSDU (QoS Control bit 7) is read as its first
    subframe, a fragmented frame as its first fragment (like IP fragments, 802.11
    fragments are not reassembled).  A data frame cut before the end of its LLC/SNAP
    header is marked cut.
    """
    fc0 = f.u8(base)
    flags = f.u8(base + 1)
    subtype = fc0 >> 4
    qos = (subtype & 0x8) != 0
    four = (flags & _WLAN_TODS_FROMDS) == _WLAN_TODS_FROMDS
    qos_at = base + 24 + np.where(four, 6, 0)
    hlen = qos_at - base + np.where(qos, 2, 0) + np.where(qos & ((flags & _WLAN_ORDER) != 0), 4, 0)
    if datapad is not None:
        hlen = np.where(datapad, (hlen + 3) & ~3, hlen)
    amsdu = qos & ((f.u8(qos_at) & 0x80) != 0)
    llc = base + hlen + np.where(amsdu, 14, 0)  # an A-MSDU subframe header: DA, SA, length
    # Data frames with a body: subtype bit 2 marks those without (Null, QoS Null, CF-Ack/Poll only).
    wanted = ((fc0 & 0x0F) == 0x08) & ((subtype & 0x4) == 0) & ((flags & _WLAN_PROTECTED) == 0)
    # A fragment but the first holds the rest of a body: no LLC header (frames are not reassembled).
    wanted &= (f.u8(base + 22) & 0x0F) == 0
    captured = f.has(llc, 8)
    snap = (f.u8(llc) == 0xAA) & (f.u8(llc + 1) == 0xAA) & (f.u8(llc + 2) == 0x03)
    snap &= (f.u8(llc + 3) == 0) & (f.u8(llc + 4) == 0) & np.isin(f.u8(llc + 5), _SNAP_OUI_LAST)
    et = np.where(wanted & captured & snap, f.be16(llc + 6), 0).astype(np.uint16)
    # Any frame has frame control, duration and a first address (ACK and CTS have no more).
    f.cut |= (wanted & ~captured) | ~f.has(base, 10)
    return _vlan(f, llc + 8, et)


def _radiotap(f: _Frames, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A radiotap header (its length: the little-endian u16 at offset 2), then an 802.11 frame.

    Of its fields only Flags matters: whether the frame ends with an FCS, has padding after
    its 802.11 header, or failed its FCS check (then it is read as damaged: no station took
    it).  Flags follows the it_present words (more follow while bit 31 is set) and TSFT,
    which is 8-byte aligned, if present; a chain of it_present words running past the
    header leaves Flags unknown, and the frame is read without them (as Wireshark does; it
    also ignores it_version).  A header longer than the frame is damage.
    """
    zero = np.zeros(n, dtype=np.int64)
    it_len = f.le16(zero + 2).astype(np.int64)
    first = f.le32(zero + 4)
    ok = f.has(zero, 8) & (it_len >= 8) & (it_len <= f.caplen)
    pos = zero + 8  # after the last it_present word seen so far
    more = ok & ((first & _RADIOTAP_EXT) != 0)
    known = ok.copy()  # where the Flags field can be found
    for _ in range(_MAX_RADIOTAP_PRESENT - 1):
        if not more.any():
            break
        beyond = more & (pos + 4 > it_len)  # the chain of it_present words runs past the header
        known &= ~beyond
        more &= ~beyond
        pos = np.where(more, pos + 4, pos)
        more &= (f.le32(pos - 4) & _RADIOTAP_EXT) != 0
    known &= ~more  # longer still than any real chain
    tsft = (first & 1) != 0
    at = np.where(tsft, ((pos + 7) & ~7) + 8, pos)
    has_flags = known & ((first & 2) != 0) & (at < it_len)
    rflags = np.where(has_flags, f.u8(at), 0)
    bad_fcs = (rflags & _RADIOTAP_BADFCS) != 0
    f.cut |= ~ok | bad_fcs
    f.drop_fcs((rflags & _RADIOTAP_FCS) != 0)
    off, et = _ieee80211(f, it_len, (rflags & _RADIOTAP_DATAPAD) != 0)
    return off, np.where(ok & ~bad_fcs, et, 0)


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
        # A PPI header (little-endian length and inner link type) before the frame; Ethernet or 802.11 inside.
        base = f.le16(zero + 2).astype(np.int64)
        inner = f.le32(zero + 4)
        ok = f.has(zero, 8) & (base >= 8) & (base <= f.caplen)
        off, et = _ethernet(f, base)
        wifi = ok & (inner == LINKTYPE_IEEE802_11)
        if wifi.any():
            cut = f.cut.copy()
            off80211, et80211 = _ieee80211(f, base)
            f.cut = np.where(wifi, f.cut, cut)
            off = np.where(wifi, off80211, off)
            et = np.where(wifi, et80211, et)
        return off, np.where(ok & (wifi | (inner == LINKTYPE_ETHERNET)), et, 0)
    if linktype == LINKTYPE_IEEE802_11:
        return _ieee80211(f, zero)
    if linktype == LINKTYPE_IEEE802_11_RADIOTAP:
        return _radiotap(f, n)
    if linktype in (LINKTYPE_IEEE802_11_AVS, LINKTYPE_IEEE802_11_PRISM):
        # AVS: a big-endian header length at offset 4 after its magic.  Prism: a fixed 144-byte
        # header (message code, length, device name, ten items); an AVS header may come under 119
        # too (libpcap and Wireshark read it so).
        avs = np.isin(f.be32(zero), _AVS_MAGICS)
        hlen = f.be32(zero + 4).astype(np.int64)
        if linktype == LINKTYPE_IEEE802_11_AVS:
            hlen = np.where(avs, hlen, -1)
        else:
            hlen = np.where(avs, hlen, _PRISM_HEADER)
        ok = f.has(zero, 8) & (hlen >= 8) & (hlen <= f.caplen)
        f.cut |= ~ok
        off, et = _ieee80211(f, np.where(ok, hlen, 0))
        return off, np.where(ok, et, 0)
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
