#!/usr/bin/env python3
"""Regenerate the 802.11 captures in tests/data/wifi/ (see its README).

No real 802.11 capture is in the project's data set, so these are made by recipe from
real Ethernet captures in tests/data: each IP packet (its Ethernet addresses, EtherType,
payload and timestamp) becomes an 802.11 data frame with an LLC/SNAP header, in every
addressing and QoS variant, with or without a radiotap (or AVS, Prism, PPI) header in
front; management, control, null, EAPOL and encrypted (CCMP) frames are written between
them as a real monitor-mode capture has them.  Deterministic: the same sources give the
same bytes (``tests/sensor/test_wifi.py`` checks the committed files against a rerun)::

    .venv/sensor/bin/python scripts/make_wifi_fixtures.py [OUT_DIR]
"""

from __future__ import annotations

import hashlib
import struct
import sys
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
FTP = DATA / "zeek" / "ftp_bruteforce.pcap"
AMP = DATA / "attacks" / "amp.dns.RRSIG.fragmented.pcap"

BSSID = bytes.fromhex("02c0ffee0001")  # locally administered: a made-up access point
PEER_AP = bytes.fromhex("02c0ffee0002")  # the other end of a WDS link

Frame = tuple[int, bytes, int]  # (timestamp ns, frame bytes, wire length)


# -- sources -------------------------------------------------------------------------------


def read_pcap(path: Path) -> list[tuple[int, bytes, int]]:
    """A little-endian microsecond pcap → [(ts ns, frame, wire length)]."""
    raw = path.read_bytes()
    assert raw[:4] == b"\xd4\xc3\xb2\xa1" and struct.unpack_from("<I", raw, 20)[0] == 1
    out, off = [], 24
    while off + 16 <= len(raw):
        sec, usec, cap, wire = struct.unpack_from("<IIII", raw, off)
        out.append((sec * 1_000_000_000 + usec * 1000, raw[off + 16 : off + 16 + cap], wire))
        off += 16 + cap
    return out


def _kind(eth: bytes) -> str:
    et = eth[12:14]
    if et == b"\x86\xdd":
        return f"v6/{eth[20]}"
    if et == b"\x08\x00":
        frag = int.from_bytes(eth[20:22], "big") & 0x3FFF
        return f"v4/{eth[23]}" + ("/frag" if frag else "")
    return et.hex()


def pick(path: Path, want: dict[str, int]) -> list[tuple[int, bytes, int]]:
    """The first ``want[kind]`` packets of each kind, in file order."""
    left = dict(want)
    out = []
    for rec in read_pcap(path):
        k = _kind(rec[1])
        if left.get(k, 0) > 0:
            left[k] -= 1
            out.append(rec)
    assert not any(left.values()), left
    return out


def sources() -> list[tuple[int, bytes, int]]:
    ftp = read_pcap(FTP)[:48]
    amp = pick(AMP, {"v6/6": 5, "v6/17": 4, "v4/17/frag": 5, "v4/17": 5, "v4/1": 4, "v4/47": 1, "v4/6": 4})
    return ftp + amp


# -- 802.11 frames ---------------------------------------------------------------------------

SNAP = b"\xaa\xaa\x03\x00\x00\x00"


def _stream(seed: bytes, n: int) -> bytes:
    out = b""
    i = 0
    while len(out) < n:
        out += hashlib.sha256(seed + i.to_bytes(4, "little")).digest()
        i += 1
    return out[:n]


def data_frame(
    eth: bytes,
    seq: int,
    ds: int,
    qos: bool = False,
    htc: bool = False,
    amsdu: bool = False,
    protected: bool = False,
    vlan: int | None = None,
    pad: bool = False,
    order: bool = False,
) -> bytes:
    """An Ethernet frame as the 802.11 data frame a station or access point sends.

    ds: 1 station → AP (ToDS), 2 AP → station (FromDS), 3 WDS (both), 0 IBSS.
    """
    da, sa, body = eth[0:6], eth[6:12], eth[12:]
    if vlan is not None:
        body = b"\x81\x00" + struct.pack(">H", vlan) + body
    subtype = 8 if qos else 0
    flags = ds | (0x40 if protected else 0) | (0x80 if htc or order else 0)
    addrs = {
        0: da + sa + BSSID,
        1: BSSID + sa + da,
        2: da + BSSID + sa,
        3: PEER_AP + BSSID + da,
    }[ds]
    hdr = bytes([(subtype << 4) | 0x08, flags]) + struct.pack("<H", 0x2C) + addrs + struct.pack("<H", seq << 4)
    if ds == 3:
        hdr += sa
    if qos:
        hdr += bytes([(seq % 8) | (0x80 if amsdu else 0), 0])
    if htc:
        hdr += b"\x00\x00\x00\x00"
    if pad:
        hdr += bytes(-len(hdr) % 4)
    payload = SNAP + body
    if amsdu:
        # two subframes: this packet, then a second copy, each padded to 4 bytes but the last
        sub = da + sa + struct.pack(">H", len(payload)) + payload
        payload = sub + bytes(-len(sub) % 4) + sub
    if protected:
        pn = seq + 1
        ccmp = struct.pack("<BBBB", pn & 0xFF, (pn >> 8) & 0xFF, 0, 0x20) + struct.pack("<I", pn >> 16)
        payload = ccmp + _stream(hdr + payload, len(payload) + 8)  # ciphertext and MIC
    return hdr + payload


def _ies(ssid: bytes) -> bytes:
    rates = b"\x82\x84\x8b\x96\x0c\x12\x18\x24"
    return b"\x00" + bytes([len(ssid)]) + ssid + b"\x01" + bytes([len(rates)]) + rates + b"\x03\x01\x06"


def management(subtype: int, seq: int, da: bytes = b"\xff" * 6, sa: bytes = BSSID) -> bytes:
    hdr = bytes([subtype << 4, 0]) + struct.pack("<H", 0 if da == b"\xff" * 6 else 0x3A)
    hdr += da + sa + BSSID + struct.pack("<H", seq << 4)
    if subtype in (8, 5):  # beacon, probe response
        body = struct.pack("<QHH", 0x1234_5678_0000 + seq * 102400, 100, 0x0431) + _ies(b"flowlstm-lab")
    elif subtype == 4:  # probe request
        body = _ies(b"")
    elif subtype == 11:  # authentication: open system, sequence 1
        body = struct.pack("<HHH", 0, 1, 0)
    elif subtype == 0:  # association request
        body = struct.pack("<HH", 0x0431, 10) + _ies(b"flowlstm-lab")
    else:  # deauthentication, reason 3
        body = struct.pack("<H", 3)
    return hdr + body


def control(kind: str, ra: bytes, ta: bytes) -> bytes:
    if kind == "ack":
        return b"\xd4\x00\x00\x00" + ra
    if kind == "cts":
        return b"\xc4\x00\x2c\x00" + ra
    if kind == "rts":
        return b"\xb4\x00\x5e\x00" + ra + ta
    # Block Ack: control, starting sequence, bitmap
    return b"\x94\x00\x00\x00" + ra + ta + b"\x05\x00" + b"\x10\x00" + b"\xff" * 8


def null_frame(sa: bytes, seq: int, qos: bool) -> bytes:
    fc0 = 0xC8 if qos else 0x48
    out = bytes([fc0, 0x11]) + b"\x2c\x00" + BSSID + sa + BSSID + struct.pack("<H", seq << 4)
    return out + (b"\x00\x00" if qos else b"")


def eapol(sta: bytes, seq: int) -> bytes:
    key = bytes([2, 3]) + struct.pack(">H", 95) + b"\x02\x00\x8a\x00\x10" + bytes(8) + _stream(b"nonce", 32)
    key += bytes(16 + 8 + 8 + 16) + b"\x00\x00"
    return (
        bytes([0x08, 0x02])
        + b"\x2c\x00"
        + sta
        + BSSID
        + BSSID
        + struct.pack("<H", seq << 4)
        + SNAP[:6]
        + b"\x88\x8e"
        + key
    )


def stp_llc(sta: bytes, seq: int) -> bytes:
    """A data frame with plain 802.2 LLC (spanning tree), not SNAP."""
    bpdu = b"\x00\x00\x00\x00" + bytes(31)
    return (
        bytes([0x08, 0x02])
        + b"\x2c\x00"
        + b"\x01\x80\xc2\x00\x00\x00"
        + BSSID
        + BSSID
        + struct.pack("<H", seq << 4)
        + b"\x42\x42\x03"
        + bpdu
    )


# The order data frames cycle through: (ds, qos, htc)
VARIANTS = (
    (1, False, False),
    (2, False, False),
    (1, True, False),
    (2, True, True),
    (3, True, False),
    (0, False, False),
    (2, True, False),
    (3, False, False),
)


def wlan_frames() -> list[Frame]:
    """The 802.11 frames every fixture wraps: data frames of real packets and what goes between them."""
    out: list[Frame] = []
    srcs = sources()
    seq = 0
    sta = srcs[0][1][6:12]
    for i, (ts, eth, wire) in enumerate(srcs):
        seq += 1
        extra = wire - len(eth)  # bytes the source's snaplen left out (none in these sources)
        if i % 10 == 3:
            out.append((ts - 40_000, management(8, seq), 0))
        if i % 13 == 5:
            f = data_frame(eth, seq, 1 + i % 2, qos=True, protected=True)
            out.append((ts - 20_000, f, 0))
            seq += 1
        if i == 7:
            out.append((ts - 10_000, control("rts", BSSID, sta), 0))
            out.append((ts - 9_000, control("cts", sta, b""), 0))
        if i == 9:
            out.append((ts - 5_000, null_frame(sta, seq, qos=False), 0))
            out.append((ts - 4_000, null_frame(sta, seq + 1, qos=True), 0))
            seq += 2
        ds, qos, htc = VARIANTS[i % len(VARIANTS)]
        kwargs: dict = {}
        if i == 11:
            kwargs["vlan"] = 0x2064  # priority 1, VLAN 100
        if i == 17:
            kwargs["amsdu"] = True
            qos = True
        if i == 33:
            kwargs["order"] = True  # strictly ordered, not QoS: no HT Control field
        f = data_frame(eth, seq, ds, qos=qos, htc=htc, **kwargs)
        if i == 30:
            # sent in two fragments: the first ends inside the TCP header
            cut = len(f) - len(eth) + 40
            first = bytes([f[0], f[1] | 0x04]) + f[2:cut]
            second = f[:22] + struct.pack("<H", (seq << 4) | 1) + f[cut:]
            out.append((ts - 300_000, first, 0))
            f = second
        out.append((ts, f, len(f) + extra))
        if i % 6 == 0:
            out.append((ts + 12_000, control("ack", eth[6:12], b""), 0))
        if i == 20:
            out.append((ts + 20_000, control("ba", BSSID, sta), 0))
            for k, sub in enumerate((4, 5, 11, 11, 0, 12)):
                out.append((ts + 30_000 + k * 1000, management(sub, seq + k, da=sta if sub != 4 else b"\xff" * 6), 0))
            seq += 6
            out.append((ts + 40_000, eapol(sta, seq), 0))
            out.append((ts + 41_000, stp_llc(sta, seq + 1), 0))
            seq += 2
    return [(ts, f, wire or len(f)) for ts, f, wire in out]


# -- capture headers in front of the frame -----------------------------------------------------

# radiotap fields: bit → (alignment, size)
_RT_FIELDS = {0: (8, 8), 1: (1, 1), 2: (1, 1), 3: (2, 4), 5: (1, 1), 11: (1, 1), 14: (2, 2), 19: (1, 3)}


def radiotap(words: list[int], values: dict[tuple[int, int], bytes] | None = None) -> bytes:
    """A radiotap header with these it_present words (bit 31 set where another follows) and their fields."""
    values = values or {}
    out = bytearray(struct.pack("<BBH", 0, 0, 0))
    for w in words:
        out += struct.pack("<I", w)
    for wi, w in enumerate(words):
        for bit in range(29):
            if w & (1 << bit):
                align, size = _RT_FIELDS[bit]
                out += bytes(-len(out) % align)
                out += values.get((wi, bit), bytes(size))
    struct.pack_into("<H", out, 2, len(out))
    return bytes(out)


def _channel(mhz: int) -> bytes:
    return struct.pack("<HH", mhz, 0x00A0 if mhz < 3000 else 0x0140)


RADIOTAPS: list[tuple[str, bytes, int]] = [
    # (what, header, radiotap flags)
    ("bare", radiotap([0]), 0),
    (
        "flags-rate-channel-signal",
        radiotap([0x0000002E], {(0, 2): b"\x0c", (0, 3): _channel(2437), (0, 5): b"\xc4"}),
        0,
    ),
    (
        "tsft-flags-fcs",
        radiotap(
            [0x0000482F],
            {
                (0, 0): struct.pack("<Q", 0x1F2E3D),
                (0, 1): b"\x10",
                (0, 2): b"\x6c",
                (0, 3): _channel(5180),
                (0, 5): b"\xbd",
                (0, 11): b"\x01",
                (0, 14): b"\x00\x00",
            },
        ),
        0x10,
    ),
    (
        "extended-present-fcs",
        radiotap(
            [0xA000402F, 0xA0000820, 0x00000820],
            {
                (0, 0): struct.pack("<Q", 0xABCDEF),
                (0, 1): b"\x10",
                (0, 2): b"\x02",
                (0, 3): _channel(2412),
                (0, 5): b"\xc8",
                (1, 5): b"\xc6",
                (1, 11): b"\x00",
                (2, 5): b"\xca",
                (2, 11): b"\x01",
            },
        ),
        0x10,
    ),
    ("mcs-no-fcs", radiotap([0x0008002A], {(0, 1): b"\x00", (0, 3): _channel(2462), (0, 19): b"\x07\x00\x05"}), 0),
]


def with_fcs(frame: bytes) -> bytes:
    return frame + struct.pack("<I", zlib.crc32(frame) & 0xFFFFFFFF)


def radiotap_frames(frames: list[Frame]) -> Iterator[Frame]:
    """Each frame behind one of the radiotap headers in turn (FCS appended where its flags say so)."""
    for i, (ts, f, wire) in enumerate(frames):
        _, head, rflags = RADIOTAPS[i % len(RADIOTAPS)]
        extra = wire - len(f)
        body = with_fcs(f) if rflags & 0x10 else f
        yield ts + i, head + body, len(head) + len(body) + extra


def datapad(frames: list[Frame]) -> Iterator[Frame]:
    """QoS data frames with the radiotap DATAPAD flag: 2 bytes after the 26-byte header."""
    head = radiotap([0x00000002], {(0, 1): b"\x30"})  # DATAPAD | FCS
    for ts, eth, wire in sources()[:6]:
        f = with_fcs(data_frame(eth, 77, 1, qos=True, pad=True))
        yield ts + 7, head + f, len(head) + len(f) + wire - len(eth)
    del frames


def bad_fcs(frames: list[Frame]) -> Iterator[Frame]:
    """Frames whose radiotap flags say they failed the FCS check (the FCS is wrong)."""
    head = radiotap([0x00000002], {(0, 1): b"\x50"})  # BADFCS | FCS
    for ts, eth, _wire in sources()[20:24]:
        f = data_frame(eth, 88, 2) + b"\xde\xad\xbe\xef"
        yield ts + 9, head + f, len(head) + len(f)
    del frames


def header_only(frames: list[Frame]) -> Iterator[Frame]:
    """IPv4 headers with nothing after them (total length 20), the FCS right behind: it is not a TCP header."""
    head = radiotap([0x00000002], {(0, 1): b"\x10"})  # FCS
    for ts, eth, _wire in sources()[24:27]:
        ip = bytearray(eth[14:34])
        ip[2:4] = (20).to_bytes(2, "big")
        ip[10:12] = b"\x00\x00"
        csum = sum(struct.unpack(">10H", bytes(ip)))
        csum = (csum & 0xFFFF) + (csum >> 16)
        ip[10:12] = struct.pack(">H", ~csum & 0xFFFF)
        f = with_fcs(data_frame(eth[:14] + bytes(ip), 99, 1))
        yield ts + 11, head + f, len(head) + len(f)
    del frames


def avs(ts: int, version: int) -> bytes:
    """An AVS capture header, big-endian: version 1 (64 bytes: times, PHY, channel, rate, antenna, signal,
    preamble, encoding), or 2 (80 bytes: also a sequence number, dropped frames and the receiver's address)."""
    head = struct.pack(">QQIIIIIIiiII", ts // 1000, ts // 1000, 6, 6, 540, 1, 0, 1, -50, -95, 1, 1)
    if version == 2:
        head += struct.pack(">II", ts // 1000 % 100000, 0) + BSSID + b"\x00\x00"
    return struct.pack(">II", 0x80211000 + version, 8 + len(head)) + head


def prism(frame: bytes) -> bytes:
    """A Prism header: message code, length 144, device name, ten items (DID, status, length, value)."""
    out = struct.pack("<II", 0x00000041, 144) + b"wlan0".ljust(16, b"\x00")
    for k, value in enumerate((0, 0, 6, 40, 0, 40, 0, 108, 0, len(frame))):
        out += struct.pack("<IHHI", 0x00010044 + (k << 12), 0, 4, value)
    assert len(out) == 144
    return out


def ppi(frame: bytes) -> bytes:
    """A PPI header with one 802.11-Common field, inner link type 105."""
    field = struct.pack("<HH", 2, 20) + struct.pack("<QHHHHBBbb", 0, 0, 100, 2437, 0x00A0, 0, 0, -45, -90)
    return struct.pack("<BBHI", 0, 0, 8 + len(field), 105) + field


# -- files ---------------------------------------------------------------------------------------


def write_pcap(path: Path, linktype: int, frames: list[Frame], nanos: bool, snaplen: int = 262144) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B23C4D if nanos else 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype)]
    for ts, f, wire in frames:
        sec, frac = divmod(ts, 1_000_000_000)
        cap = f[:snaplen]
        out.append(struct.pack("<IIII", sec, frac if nanos else frac // 1000, len(cap), wire) + cap)
    path.write_bytes(b"".join(out))


def _block(btype: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + bytes(-len(value) % 4)


def write_pcapng(path: Path, interfaces: list[tuple[int, int]], frames: list[tuple[int, int, bytes, int]]) -> None:
    """interfaces: (link type, snaplen), ns timestamps; frames: (interface, ts ns, frame, wire length)."""
    out = [_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _option(0, b""))]
    for lt, snap in interfaces:
        out.append(_block(1, struct.pack("<HHI", lt, 0, snap) + _option(9, b"\x09") + _option(0, b"")))
    for iface, ts, f, wire in frames:
        snap = interfaces[iface][1]
        cap = f[:snap] if snap else f
        out.append(_block(6, struct.pack("<IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(cap), wire) + cap))
    path.write_bytes(b"".join(out))


def malformed(base: list[Frame]) -> list[tuple[int, int, bytes, int]]:
    """Damaged and cut frames, on a radiotap interface (0) and a plain 802.11 one (1)."""
    ts0 = base[0][0]
    d = [f for _, f, _ in base if (f[0] & 0x0C) == 0x08 and not f[1] & 0x40 and len(f) > 80]
    qos4 = next(f for f in d if f[0] == 0x88 and f[1] & 3 == 3)
    rt = radiotap([0x0000002E], {(0, 2): b"\x0c", (0, 3): _channel(2437), (0, 5): b"\xc4"})
    cases: list[tuple[int, bytes]] = [
        (0, rt[:2] + struct.pack("<H", 400) + rt[4:] + d[0]),  # it_len beyond the frame
        (0, rt[:2] + struct.pack("<H", 4) + rt[4:] + d[1]),  # it_len shorter than the fixed header
        (0, b"\x01" + rt[1:] + d[2]),  # radiotap version 1 (tshark reads it as version 0)
        (0, rt[:6]),  # cut inside the radiotap header
        (
            0,
            radiotap([0x80000000, 0x80000000, 0x80000000]) + d[3],
        ),  # it_present says a 4th word follows: it_len ends first
        (0, rt + d[4][:20]),  # data frame cut inside the MAC header
        (0, rt + qos4[:32]),  # four-address QoS data cut before its LLC header ends
        (0, rt + d[5][: 24 + 4]),  # cut inside the LLC/SNAP header
        (0, rt + d[6][:40]),  # cut inside the IP header
        (0, rt + d[7]),  # intact, between the damaged ones
        (0, radiotap([0x00000002], {(0, 1): b"\x10"}) + d[8][:2]),  # FCS flag on a frame shorter than an FCS
        (1, d[9][:10]),
        (1, d[10][:24]),
        (1, d[11][:28]),
        (1, d[12]),
        (1, b"\x88"),
        (1, b""),
    ]
    return [(iface, ts0 + k * 1000, f, len(f)) for k, (iface, f) in enumerate(cases)]


def build(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    frames = wlan_frames()
    paths = {
        "wlan.pcap": lambda p: write_pcap(p, 105, frames, nanos=False),
        "radiotap.pcap": lambda p: write_pcap(
            p, 127, [*radiotap_frames(frames), *datapad(frames), *bad_fcs(frames), *header_only(frames)], nanos=True
        ),
    }
    # one pcapng: radiotap with a snaplen that cuts the FCS off, AVS, Prism, PPI and plain 802.11
    ng: list[tuple[int, int, bytes, int]] = []
    for i, (ts, f, wire) in enumerate(frames[:60]):
        kind = i % 5
        if kind == 0:
            _, head, _ = RADIOTAPS[2]
            g = head + with_fcs(f)
        elif kind == 1:
            g = avs(ts, 1 + i // 5 % 2) + f
        elif kind == 2:
            g = prism(f) + f
        elif kind == 3:
            g = ppi(f) + f
        else:
            g = f
        ng.append((kind, ts, g, len(g) + wire - len(f)))
    builders: dict[str, Callable[[Path], None]] = {
        **paths,
        "wlan-mixed.pcapng": lambda p: write_pcapng(p, [(127, 104), (163, 0), (119, 0), (192, 0), (105, 0)], ng),
        "malformed.pcapng": lambda p: write_pcapng(p, [(127, 0), (105, 0)], malformed(frames)),
    }
    written = []
    for name, make in builders.items():
        make(out / name)
        written.append(out / name)
    return written


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DATA / "wifi"
    for p in build(out):
        print(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}  {p.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
