"""Byte-level transforms that derive other capture formats from the real fixtures.

Each transform keeps the packets (and their timestamps) of a real capture and
changes only the framing under test, so the original stays the ground truth.
Plain-Python and per-packet: test tooling, not the fast path.
"""

from __future__ import annotations

import struct
from pathlib import Path


def read_pcap(path) -> tuple[dict, list[tuple[int, int, int, int, bytes]]]:
    """A little-endian classic pcap → (header fields, [(sec, frac, caplen, wirelen, data)])."""
    raw = Path(path).read_bytes()
    magic, vmaj, vmin, zone, sigfigs, snaplen, linktype = struct.unpack("<IHHiIII", raw[:24])
    assert magic in (0xA1B2C3D4, 0xA1B23C4D), "fixtures are little-endian pcap"
    recs, off = [], 24
    while off + 16 <= len(raw):
        sec, frac, cap, wire = struct.unpack("<IIII", raw[off : off + 16])
        recs.append((sec, frac, cap, wire, raw[off + 16 : off + 16 + cap]))
        off += 16 + cap
    return {"magic": magic, "snaplen": snaplen, "linktype": linktype}, recs


def write_pcap(path, head: dict, recs, endian: str = "<", linktype: int | None = None) -> Path:
    out = [
        struct.pack(
            endian + "IHHiIII",
            head["magic"],
            2,
            4,
            0,
            0,
            head["snaplen"],
            head["linktype"] if linktype is None else linktype,
        )
    ]
    for sec, frac, _cap, wire, data in recs:
        out.append(struct.pack(endian + "IIII", sec, frac, len(data), wire) + data)
    Path(path).write_bytes(b"".join(out))
    return Path(path)


def relink(src, dst, linktype: int) -> Path:
    """Re-frame an Ethernet pcap as Linux SLL (113), SLL2 (276), raw IP (101), NULL (0) or LOOP (108)."""
    head, recs = read_pcap(src)
    assert head["linktype"] == 1
    out = []
    for sec, frac, _cap, wire, data in recs:
        et = data[12:14]
        payload = data[14:]
        v6 = et == b"\x86\xdd"
        if linktype == 113:
            hdr = struct.pack(">HHH", 0, 1, 6) + data[6:12] + b"\x00\x00" + et
        elif linktype == 276:
            hdr = et + b"\x00\x00" + struct.pack(">IHBB", 2, 1, 0, 6) + data[6:12] + b"\x00\x00"
        elif linktype == 101:
            hdr = b""
        elif linktype == 0:
            hdr = struct.pack("<I", 30 if v6 else 2)  # BSD host order (little-endian host)
        elif linktype == 108:
            hdr = struct.pack(">I", 24 if v6 else 2)
        else:
            raise ValueError(linktype)
        new = hdr + payload
        out.append((sec, frac, len(new), wire - 14 + len(hdr), new))
    return write_pcap(dst, head, out, linktype=linktype)


def byteswap_pcap(src, dst) -> Path:
    """The same capture written big-endian (as a SPARC or PowerPC host would)."""
    head, recs = read_pcap(src)
    return write_pcap(dst, head, recs, endian=">")


def add_ipv6_extensions(src, dst, frag_offset: int = 0) -> tuple[Path, int]:
    """Insert hop-by-hop, routing, destination-options and a fragment header (offset
    ``frag_offset`` in 8-byte units, M=0) in front of the transport header of every IPv6
    packet; return (path, count)."""
    head, recs = read_pcap(src)
    out, n = [], 0
    for sec, frac, cap, wire, data in recs:
        if data[12:14] == b"\x86\xdd" and len(data) >= 54:
            ip = data[14:54]
            nxt = ip[6]
            ext = (
                bytes([43, 0])
                + bytes(6)  # hop-by-hop (8 bytes) → routing
                + bytes([60, 0, 0, 0])
                + bytes(4)  # routing type 0, no segments left → dest opts
                + bytes([44, 0])
                + bytes(6)  # destination options (8 bytes) → fragment
                + bytes([nxt, 0])
                + struct.pack(">HI", frag_offset << 3, 0x1234)  # fragment, M=0
            )
            plen = struct.unpack(">H", ip[4:6])[0] + len(ext)
            ip = ip[:4] + struct.pack(">H", plen) + bytes([0]) + ip[7:]
            data = data[:14] + ip + ext + data[54:]
            n += 1
            out.append((sec, frac, len(data), wire + len(ext), data))
        else:
            out.append((sec, frac, cap, wire, data))
    return write_pcap(dst, head, out), n


def add_ipv4_options(src, dst, words: int = 2) -> tuple[Path, int]:
    """Give every whole IPv4 header of an Ethernet capture ``words`` 4-byte words of options
    (NOPs, then end of options), fixing its length fields and checksum; return (path, count)."""
    head, recs = read_pcap(src)
    out, n = [], 0
    opts = b"\x01" * (4 * words - 1) + b"\x00"
    for sec, frac, cap, wire, data in recs:
        if data[12:14] == b"\x08\x00" and len(data) >= 34 and data[14] == 0x45:
            ip = bytearray(data[14:34])
            ip[0] = 0x45 + words
            ip[2:4] = struct.pack(">H", struct.unpack(">H", ip[2:4])[0] + len(opts))
            ip[10:12] = b"\x00\x00"
            hdr = bytes(ip) + opts
            total = sum(struct.unpack(f">{len(hdr) // 2}H", hdr))
            while total >> 16:
                total = (total & 0xFFFF) + (total >> 16)
            ip[10:12] = struct.pack(">H", ~total & 0xFFFF)
            data = data[:14] + bytes(ip) + opts + data[34:]
            n += 1
            out.append((sec, frac, len(data), wire + len(opts), data))
        else:
            out.append((sec, frac, cap, wire, data))
    return write_pcap(dst, head, out), n


def _swap_options(block: bytes, start: int, end: int) -> bytes:
    out = bytearray(block)
    p = start
    while p + 4 <= end:
        code, length = struct.unpack("<HH", block[p : p + 4])
        out[p : p + 4] = struct.pack(">HH", code, length)
        if code == 0:
            break
        if code == 14 and length == 8:  # if_tsoffset
            out[p + 4 : p + 12] = block[p + 4 : p + 12][::-1]
        p += 4 + ((length + 3) & ~3)
    return bytes(out)


def byteswap_pcapng(src, dst) -> Path:
    """A little-endian pcapng (SHB, IDB, EPB, SPB, others) rewritten big-endian."""
    raw = Path(src).read_bytes()
    out, off = [], 0
    while off + 12 <= len(raw):
        btype, blen = struct.unpack("<II", raw[off : off + 8])
        block = raw[off : off + blen]
        body = bytearray(block)
        body[0:4] = struct.pack(">I", btype) if btype != 0x0A0D0D0A else block[0:4]
        body[4:8] = struct.pack(">I", blen)
        body[-4:] = struct.pack(">I", blen)
        if btype == 0x0A0D0D0A:
            magic, vmaj, vmin = struct.unpack("<IHH", block[8:16])
            body[8:16] = struct.pack(">IHH", magic, vmaj, vmin)
            body[16:24] = block[16:24][::-1]
            body = bytearray(_swap_options(bytes(body), 24, blen - 4))
        elif btype == 1:
            lt, res, snap = struct.unpack("<HHI", block[8:16])
            body[8:16] = struct.pack(">HHI", lt, res, snap)
            body = bytearray(_swap_options(bytes(body), 16, blen - 4))
        elif btype == 6:
            iface, hi, lo, cap, orig = struct.unpack("<IIIII", block[8:28])
            body[8:28] = struct.pack(">IIIII", iface, hi, lo, cap, orig)
            body = bytearray(_swap_options(bytes(body), 28 + ((cap + 3) & ~3), blen - 4))
        elif btype == 3:
            body[8:12] = block[8:12][::-1]
        out.append(bytes(body))
        off += blen
    Path(dst).write_bytes(b"".join(out))
    return Path(dst)


def epb_to_spb(src, dst) -> Path:
    """Turn every Enhanced Packet Block of a one-interface pcapng into a Simple Packet Block."""
    raw = Path(src).read_bytes()
    out, off = [], 0
    while off + 12 <= len(raw):
        btype, blen = struct.unpack("<II", raw[off : off + 8])
        block = raw[off : off + blen]
        if btype == 6:
            cap, orig = struct.unpack("<II", block[20:28])
            data = block[28 : 28 + cap]
            pad = (-len(data)) % 4
            nlen = 16 + len(data) + pad
            block = struct.pack("<III", 3, nlen, orig) + data + bytes(pad) + struct.pack("<I", nlen)
        out.append(block)
        off += blen
    Path(dst).write_bytes(b"".join(out))
    return Path(dst)


def pcap_record_offsets(path) -> list[int]:
    """Start of every record of a classic pcap, then the end of the last one."""
    raw = Path(path).read_bytes()
    endian = "<" if raw[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    offs, off = [], 24
    while off + 16 <= len(raw):
        offs.append(off)
        off += 16 + struct.unpack(endian + "I", raw[off + 8 : off + 12])[0]
    return offs + [off]


def pcapng_blocks(path) -> list[tuple[int, int, int]]:
    """(offset, type, length) of every block of a little-endian pcapng."""
    raw = Path(path).read_bytes()
    out, off = [], 0
    while off + 12 <= len(raw):
        btype, blen = struct.unpack("<II", raw[off : off + 8])
        out.append((off, btype, blen))
        off += blen
    return out


def add_vlan(src, dst, tags: list[tuple[int, int]]) -> Path:
    """Insert 802.1Q/802.1ad tags [(tpid, vid), ...] (outermost first) after the MAC addresses."""
    head, recs = read_pcap(src)
    assert head["linktype"] == 1
    tag = b"".join(struct.pack(">HH", tpid, vid) for tpid, vid in tags)
    out = [(s, f, c + len(tag), w + len(tag), d[:12] + tag + d[12:]) for s, f, c, w, d in recs]
    return write_pcap(dst, head, out)
