"""The capture-file reader against capinfos and tshark, across formats, and on damaged files.

Ground truth is always outside flowlstm: capinfos/tshark on the real fixtures in tests/data,
and on files derived from them at test time (Wireshark tools, tcprewrite, or the byte-level
transforms in pcaptools.py), which must also give the same records as their original.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import ipaddress
import json
import lzma
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from sensor.capture import CaptureReader, decode, files, read_packets
from sensor.capture.records import (
    FRAG_DF,
    FRAG_FRAGMENT,
    FRAG_MF,
    FRAG_NONFIRST,
    HDR_L4,
    HDR_OPTIONS,
    HDR_TRUNC,
    PACKET_DTYPE,
)
from sensor.errors import CaptureError, CorruptCaptureError

from ..conftest import ATTACKS, DATA, MAWI_PCAP
from . import pcaptools, reference

FIXTURES = [MAWI_PCAP, *sorted(ATTACKS.glob("*.pcap*")), *sorted((DATA / "zeek").glob("*.pcap"))]
FTP = DATA / "zeek" / "ftp_bruteforce.pcap"
AMP = ATTACKS / "amp.dns.RRSIG.fragmented.pcap"  # IPv4 and IPv6, real IPv4 fragments
ids = lambda p: p.name  # noqa: E731


def load(path, **kw) -> np.ndarray:
    batches = list(read_packets(path, **kw))
    return np.concatenate(batches) if batches else np.zeros(0, PACKET_DTYPE)


def run(*args) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True)


# -- comparison with tshark, field by field -------------------------------------------

FIELDS = [
    "frame.time_epoch",
    "frame.len",
    "frame.cap_len",
    "frame.protocols",
    "ip.src",
    "ip.dst",
    "ip.proto",
    "ip.ttl",
    "ip.len",
    "ip.frag_offset",
    "ip.flags.mf",
    "ip.flags.df",
    "ip.hdr_len",
    "ip.id",
    "ipv6.fraghdr.ident",
    "ipv6.src",
    "ipv6.dst",
    "ipv6.hlim",
    "ipv6.plen",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags",
    "tcp.window_size_value",
    "udp.srcport",
    "udp.dstport",
    "icmp.type",
    "icmp.code",
    "icmpv6.type",
    "icmpv6.code",
]


def _col(ref, name, conv=int) -> np.ndarray:
    return np.array([conv(r[name]) if r[name] else -1 for r in ref], dtype=np.int64)


def _ns(text: str) -> int:
    sec, _, frac = text.partition(".")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


def _first_int(text: str) -> int:
    return int(text.split(",")[0], 0)  # a tunnelled packet lists the outer header's first


def _v4(text: str) -> int:
    return int(ipaddress.IPv4Address(text))


def assert_fields_equal_tshark(path, ours: np.ndarray | None = None) -> dict[str, int]:
    """Every record of ``path`` against tshark's dissection of the same frame; returns counts."""
    ours = load(path) if ours is None else ours
    ref = reference.tshark_fields(path, FIELDS)
    assert len(ref) == len(ours)
    assert np.array_equal(ours["ts"], [_ns(r["frame.time_epoch"]) for r in ref])
    assert np.array_equal(ours["wire_len"], _col(ref, "frame.len"))
    assert np.array_equal(ours["cap_len"], _col(ref, "frame.cap_len"))

    # An IP header: ours when it was captured whole; tshark shows also a cut one's
    # leading fields, which ours flags HDR_TRUNC instead.
    t4 = _col(ref, "ip.src", _v4) >= 0
    t6 = np.array([bool(r["ipv6.src"]) for r in ref]) & ~t4  # (6in4 counts as IPv4, the outer header)
    v4, v6 = ours["l3"] == 4, ours["l3"] == 6
    assert np.all(t4[v4]) and np.all(t6[v6])
    assert np.all(ours["hdr"][(t4 & ~v4) | (t6 & ~v6)] & HDR_TRUNC)
    o4 = ours[v4]
    src32 = o4["src"][:, 12:].astype(np.uint32)
    assert np.all(o4["src"][:, :12] == reference_mapped_prefix())
    assert np.array_equal((src32 * [1 << 24, 1 << 16, 1 << 8, 1]).sum(1), _col(ref, "ip.src", _v4)[v4])
    dst32 = o4["dst"][:, 12:].astype(np.uint32)
    assert np.array_equal((dst32 * [1 << 24, 1 << 16, 1 << 8, 1]).sum(1), _col(ref, "ip.dst", _v4)[v4])
    for ours_f, ref_f in (("ttl", "ip.ttl"), ("ip_len", "ip.len"), ("frag_off", "ip.frag_offset")):
        assert np.array_equal(o4[ours_f], _col(ref, ref_f)[v4]), ours_f
    assert np.array_equal(o4["frag"] & FRAG_MF != 0, _col(ref, "ip.flags.mf")[v4] == 1)
    assert np.array_equal(o4["frag"] & FRAG_DF != 0, _col(ref, "ip.flags.df")[v4] == 1)
    # A fragment carries its identification, the key reassembly pairs fragments by.
    isfrag = (ours["frag"] & FRAG_FRAGMENT) != 0
    ident = np.where(v4, _col(ref, "ip.id", _first_int), _col(ref, "ipv6.fraghdr.ident", _first_int))
    assert np.array_equal(ours["frag_id"], np.where(isfrag, ident, 0))
    ip_proto = _col(ref, "ip.proto")
    # (tshark's ip.proto is the IPv4 header's; ours is the same for IPv4)
    assert np.array_equal(o4["proto"], ip_proto[v4])

    o6 = ours[v6]
    r6 = [r for r, m in zip(ref, v6, strict=True) if m]
    assert [bytes(x) for x in o6["src"]] == [ipaddress.IPv6Address(r["ipv6.src"]).packed for r in r6]
    assert [bytes(x) for x in o6["dst"]] == [ipaddress.IPv6Address(r["ipv6.dst"]).packed for r in r6]
    assert np.array_equal(o6["ttl"], _col(r6, "ipv6.hlim"))
    assert np.array_equal(o6["ip_len"], _col(r6, "ipv6.plen") + 40)

    # Transport: compare where the transport header is the packet's own (not quoted in an
    # ICMP error) and, for ours, where the record says it was read.
    protos = [r["frame.protocols"].split(":") for r in ref]
    # IPv4 options, IPv6 extension headers other than a fragment header (the outer header's,
    # before any quoted one).
    own = [p[: next((i for i, x in enumerate(p) if x in ("icmp", "icmpv6", "tcp", "udp")), len(p))] for p in protos]
    ext6 = np.array([any(x in ("ipv6.hopopts", "ipv6.dstopts", "ipv6.routing", "ah") for x in p) for p in own])
    options = np.where(v4, _col(ref, "ip.hdr_len") > 20, v6 & ext6)
    assert np.array_equal(ours["hdr"] & HDR_OPTIONS != 0, options)
    quoted = np.array(["icmp" in p or "icmpv6" in p for p in protos])
    nonfirst = (ours["frag"] & FRAG_NONFIRST) != 0
    ip = v4 | v6
    counts = {"ipv4": int(v4.sum()), "ipv6": int(v6.sum()), "nonfirst_fragments": int(nonfirst.sum())}
    counts["options"] = int(options.sum())
    # Non-first fragments carry no transport header: no ports here, none in tshark.
    assert np.all(ours["sport"][nonfirst] == 0) and np.all(ours["dport"][nonfirst] == 0)
    assert np.all(_col(ref, "tcp.srcport")[nonfirst] < 0) and np.all(_col(ref, "udp.srcport")[nonfirst] < 0)
    for proto, name in ((6, "tcp"), (17, "udp")):
        sp = _col(ref, f"{name}.srcport")
        dp = _col(ref, f"{name}.dstport")
        mine = ip & (ours["proto"] == proto) & ~quoted & ~nonfirst
        got = mine & (sp >= 0)
        assert np.array_equal(ours["sport"][got], sp[got]) and np.array_equal(ours["dport"][got], dp[got])
        # tshark shows no ports ⇔ ours were not captured either
        assert np.all(ours["sport"][mine & (sp < 0)] == 0)
        assert np.all((ours["hdr"][mine] & HDR_L4 != 0) == (sp[mine] >= 0))
        counts[name] = int(got.sum())
    tcp = ip & (ours["proto"] == 6) & ~quoted & ~nonfirst
    flags = _col(ref, "tcp.flags", lambda t: int(t, 16))
    win = _col(ref, "tcp.window_size_value")
    got = tcp & (flags >= 0)
    assert np.array_equal(ours["tcp_flags"][got], flags[got] & 0x1FF)
    assert np.all(ours["tcp_flags"][tcp & (flags < 0)] == 0)
    got = tcp & (win >= 0)
    assert np.array_equal(ours["tcp_win"][got], win[got])
    assert np.all(ours["tcp_win"][tcp & (win < 0)] == 0)
    for proto, name, fam in ((1, "icmp", v4), (58, "icmpv6", v6)):
        t, c = _col(ref, f"{name}.type"), _col(ref, f"{name}.code")
        mine = fam & (ours["proto"] == proto) & ~nonfirst
        got = mine & (t >= 0)
        assert np.array_equal(ours["icmp_type"][got], t[got]) and np.array_equal(ours["icmp_code"][got], c[got])
        counts[name] = int(got.sum())
    # A frame with no IP header of ours carries no IP fields.
    assert np.all(ours["proto"][~ip] == 0) and np.all(ours["sport"][~ip] == 0)
    return counts


def reference_mapped_prefix() -> np.ndarray:
    return np.array([0] * 10 + [0xFF, 0xFF], dtype=np.uint8)


# -- 1. outside references on the real fixtures -------------------------------------------


@pytest.mark.parametrize("path", FIXTURES, ids=ids)
def test_totals_equal_capinfos(path):
    p = load(path)
    assert (len(p), int(p["wire_len"].sum())) == reference.capinfos(path)


@pytest.mark.parametrize("path", FIXTURES, ids=ids)
def test_per_second_counts_equal_tshark_io_stat(path):
    p = load(path)
    rows = reference.io_stat(path, 1)
    bucket = reference.io_stat_bucket(p["ts"], 1)
    frames = np.bincount(bucket, minlength=len(rows))
    nbytes = np.bincount(bucket, weights=p["wire_len"], minlength=len(rows)).astype(np.int64)
    assert [(r.frames, r.bytes) for r in rows] == list(zip(frames.tolist(), nbytes.tolist(), strict=True))
    assert [r.start for r in rows] == list(range(len(rows)))


def test_epoch_second_buckets_equal_tshark(tmp_path):
    """Our per-second bucket is floor(ts) in epoch seconds; shift the capture so that its
    first packet falls on a whole second and tshark's intervals are epoch seconds too."""
    p = load(MAWI_PCAP)
    frac = int(p["ts"][0]) % 1_000_000_000
    shifted = tmp_path / "shifted.pcap"
    run("editcap", "-t", f"-0.{frac:09d}", MAWI_PCAP, shifted)
    q = load(shifted)
    assert np.array_equal(q["ts"], p["ts"] - frac)  # (MAWI's timestamps are whole microseconds)
    sec = q["ts"] // 1_000_000_000
    rows = reference.io_stat(shifted, 1)
    counts = np.bincount(sec - sec[0], minlength=len(rows))
    nbytes = np.bincount(sec - sec[0], weights=q["wire_len"], minlength=len(rows)).astype(np.int64)
    assert [(r.frames, r.bytes) for r in rows] == list(zip(counts.tolist(), nbytes.tolist(), strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("path", FIXTURES, ids=ids)
def test_header_fields_equal_tshark(path):
    counts = assert_fields_equal_tshark(path)
    assert counts["ipv4"] + counts["ipv6"] > 0.5 * len(load(path))


def test_fixtures_cover_the_cases_that_matter():
    amp = assert_fields_equal_tshark(AMP)
    assert amp["ipv6"] > 0 and amp["nonfirst_fragments"] > 100 and amp["udp"] > 0
    mawi = load(MAWI_PCAP)
    tcp = mawi[mawi["proto"] == 6]
    assert np.mean(tcp["cap_len"] < tcp["wire_len"]) > 0.5  # options and payload were cut
    assert np.all(tcp["hdr"] & HDR_L4)


@pytest.mark.slow
@pytest.mark.parametrize("snaplen", [30, 38, 40, 47, 50], ids=lambda s: f"snaplen{s}")
def test_snaplen_cut_headers_are_read_as_far_as_they_go(tmp_path, snaplen):
    """editcap -s cuts every frame (inside the IPv4 header, the ports, the TCP flags, the window)."""
    cut = tmp_path / "cut.pcap"
    run("editcap", "-s", snaplen, MAWI_PCAP, cut)
    ours = load(cut)
    assert_fields_equal_tshark(cut, ours)
    orig = load(MAWI_PCAP)
    tcp = orig["proto"] == 6
    if snaplen < 34:
        assert np.all(ours["l3"] == 0) and np.all(ours["hdr"] == HDR_TRUNC)
        return
    same_records(
        ours, orig, ignore=("cap_len", "sport", "dport", "tcp_flags", "tcp_win", "icmp_type", "icmp_code", "hdr")
    )
    l4 = snaplen - 34
    assert np.array_equal(ours["sport"][tcp], orig["sport"][tcp] * (l4 >= 4))
    assert np.array_equal(ours["tcp_flags"][tcp], orig["tcp_flags"][tcp] * (l4 >= 14))
    assert np.array_equal(ours["tcp_win"][tcp], orig["tcp_win"][tcp] * (l4 >= 16))
    assert np.all((ours["hdr"][tcp] & HDR_TRUNC != 0) == (l4 < 16))


def test_reference_conv_parser_matches_tshark_per_frame():
    conv = reference.conversations(FTP, "tcp")
    exact = {tuple(sorted([c["key"][:2], c["key"][2:]])): c for c in reference.conversation_bytes(FTP, "tcp").values()}
    assert len(conv) == len(exact) == 30
    for c in conv:
        e = exact[tuple(sorted([(c.addr_a, c.port_a), (c.addr_b, c.port_b)]))]
        ab, ba = ("a_to_b", "b_to_a") if e["key"][:2] == (c.addr_a, c.port_a) else ("b_to_a", "a_to_b")
        assert (c.frames_a_to_b, c.frames_b_to_a) == (e[f"frames_{ab}"], e[f"frames_{ba}"])
        assert c.bytes_a_to_b.matches(e[f"bytes_{ab}"]) and c.bytes_b_to_a.matches(e[f"bytes_{ba}"])
    # SI-prefixed sizes are ranges
    rows = reference.parse_conv(
        "1.2.3.4:53                 <-> 10.0.0.1:22                   0 0 bytes       164 187 kB        164 187 kB"
        "        2.858032000        24.9501\n"
    )
    assert rows[0].bytes_a_to_b.matches(187_999) and not rows[0].bytes_a_to_b.matches(188_000)
    assert rows[0].frames_a_to_b == 164 and rows[0].port_b == 22


# -- 2. formats: derived files give the original's records and tshark's ------------------


def same_records(a: np.ndarray, b: np.ndarray, ignore=()) -> None:
    assert len(a) == len(b)
    for name in a.dtype.names:
        if name not in ignore:
            assert np.array_equal(a[name], b[name]), name


def _editcap(fmt, suffix):
    def convert(src, d):
        out = d / f"x.{suffix}"
        run("editcap", "-F", fmt, src, out)
        return out

    return convert


def _compress(mod, suffix):
    def convert(src, d):
        out = d / f"x.pcap.{suffix}"
        out.write_bytes(mod.compress(src.read_bytes()))
        return out

    return convert


CONVERSIONS = {
    "pcapng-epb": _editcap("pcapng", "pcapng"),
    "nanosecond": _editcap("nsecpcap", "pcap"),
    "microsecond": _editcap("pcap", "pcap"),
    "big-endian": lambda src, d: pcaptools.byteswap_pcap(src, d / "be.pcap"),
    "big-endian-pcapng": lambda src, d: pcaptools.byteswap_pcapng(
        _editcap("pcapng", "pcapng")(src, d), d / "be.pcapng"
    ),
    "gzip": _compress(gzip, "gz"),
    "xz": _compress(lzma, "xz"),
    "bzip2": _compress(bz2, "bz2"),
}


@pytest.mark.slow
@pytest.mark.parametrize("convert", CONVERSIONS.values(), ids=CONVERSIONS.keys())
@pytest.mark.parametrize("src", [MAWI_PCAP, AMP], ids=["mawi", "amp"])
def test_formats_give_the_same_records(tmp_path, convert, src):
    derived = convert(src, tmp_path)
    ours = load(derived)
    same_records(ours, load(src))  # (MAWI and AMP timestamps are whole microseconds)
    if reference.tshark_reads(derived):
        assert_fields_equal_tshark(derived, ours)
    # small batches cross chunk and batch boundaries the same way
    same_records(load(derived, batch_size=997), ours)


def test_simple_packet_blocks(tmp_path):
    ng = _editcap("pcapng", "pcapng")(AMP, tmp_path)
    spb_path = pcaptools.epb_to_spb(ng, tmp_path / "spb.pcapng")
    assert any(t == 3 for _, t, _ in pcaptools.pcapng_blocks(spb_path))
    spb = load(spb_path)
    # SPBs carry no timestamp (the reader gives each the previous packet's): all else is identical.
    same_records(spb, load(AMP), ignore=("ts",))
    assert np.all(spb["ts"] == 0)  # no packet before them had one
    assert reference.capinfos(spb_path) == (len(spb), int(spb["wire_len"].sum()))
    same_records(load(pcaptools.byteswap_pcapng(spb_path, tmp_path / "be.pcapng")), spb)


def test_pcapng_with_several_interfaces_and_link_types(tmp_path):
    sll = pcaptools.relink(FTP, tmp_path / "sll.pcap", 113)
    out = tmp_path / "merged.pcapng"
    run("mergecap", "-F", "pcapng", "-w", out, FTP, sll, ATTACKS / "hping3.pcapng")
    r = CaptureReader(out)
    p = np.concatenate(list(r))
    assert [i.linktype for i in r.info.interfaces] == [1, 113, 1]
    assert set(np.unique(p["iface"])) == {0, 1, 2}
    assert (len(p), int(p["wire_len"].sum())) == reference.capinfos(out)
    assert np.all(np.diff(p["ts"]) >= 0)
    for i, src in enumerate([FTP, sll, ATTACKS / "hping3.pcapng"]):
        same_records(p[p["iface"] == i], load(src), ignore=("iface",))
    assert_fields_equal_tshark(out, p)


LINKTYPES = {"sll": 113, "sll2": 276, "raw": 101, "null": 0, "loop": 108}


@pytest.mark.parametrize("linktype", LINKTYPES.values(), ids=LINKTYPES.keys())
def test_link_types(tmp_path, linktype):
    derived = pcaptools.relink(AMP, tmp_path / "x.pcap", linktype)
    ours = load(derived)
    same_records(ours, load(AMP), ignore=("wire_len", "cap_len"))
    head = {113: 16, 276: 20, 101: 0, 0: 4, 108: 4}[linktype]
    orig = load(AMP)
    assert np.array_equal(ours["cap_len"], orig["cap_len"] - 14 + head)
    assert_fields_equal_tshark(derived, ours)


def test_null_link_type_in_either_byte_order(tmp_path):
    # DLT_NULL's family is in the capturing host's order: a big-endian host writes 00 00 00 02.
    head, recs = pcaptools.read_pcap(pcaptools.relink(AMP, tmp_path / "null.pcap", 0))
    swapped = [(s, f, c, w, d[:4][::-1] + d[4:]) for s, f, c, w, d in recs]
    be = pcaptools.write_pcap(tmp_path / "null_be.pcap", head, swapped, endian=">")
    same_records(load(be), load(AMP), ignore=("wire_len", "cap_len"))


@pytest.mark.parametrize(
    "tags",
    [[(0x8100, 100)], [(0x88A8, 200), (0x8100, 100)], [(0x9100, 7), (0x8100, 100)]],
    ids=["802.1Q", "QinQ-802.1ad", "QinQ-9100"],
)
def test_vlan_and_qinq(tmp_path, tags):
    derived = pcaptools.add_vlan(AMP, tmp_path / "vlan.pcap", tags)
    ours = load(derived)
    orig = load(AMP)
    same_records(ours, orig, ignore=("wire_len", "cap_len"))
    assert np.array_equal(ours["cap_len"], orig["cap_len"] + 4 * len(tags))
    assert_fields_equal_tshark(derived, ours)


def test_vlan_added_by_tcprewrite(tmp_path):
    one, two = tmp_path / "v1.pcap", tmp_path / "v2.pcap"
    base = ["tcprewrite", "--enet-vlan=add", "--enet-vlan-cfi=0", "--enet-vlan-pri=0"]
    run(*base, "--enet-vlan-tag=100", "-i", AMP, "-o", one)
    run(*base, "--enet-vlan-tag=200", "-i", one, "-o", two)
    for derived in (one, two):
        assert derived.read_bytes()[24 + 16 + 12 : 24 + 16 + 14] == b"\x81\x00"
        ours = load(derived)
        # tcprewrite also rewrites the IP length of frames with Ethernet padding: tshark decides
        same_records(ours, load(AMP), ignore=("wire_len", "cap_len", "ip_len"))
        assert_fields_equal_tshark(derived, ours)


@pytest.mark.parametrize("frag_offset", [0, 5], ids=["first-fragment", "non-first-fragment"])
def test_ipv6_extension_headers_are_walked(tmp_path, frag_offset):
    derived, n = pcaptools.add_ipv6_extensions(AMP, tmp_path / "x.pcap", frag_offset)
    assert n > 0
    ours = load(derived)
    orig = load(AMP)
    v6 = ours["l3"] == 6
    assert v6.sum() == n
    same_records(ours[~v6], orig[~v6])
    assert np.all(ours["frag"][v6] & 4)  # FRAG_FRAGMENT
    if frag_offset == 0:
        same_records(ours[v6], orig[v6], ignore=("wire_len", "cap_len", "ip_len", "frag", "frag_id", "hdr"))
    else:
        assert np.all(ours["sport"][v6] == 0) and np.all(ours["frag_off"][v6] == frag_offset)
    counts = assert_fields_equal_tshark(derived, ours)
    assert counts["ipv6"] == n and counts["options"] == n


def test_ipv4_options_are_flagged_and_skipped(tmp_path):
    derived, n = pcaptools.add_ipv4_options(MAWI_PCAP, tmp_path / "x.pcap", words=3)
    assert n > 1000
    ours, orig = load(derived), load(MAWI_PCAP)
    v4 = (ours["l3"] == 4) & (ours["hdr"] & HDR_OPTIONS != 0)
    assert v4.sum() == n and not np.any(orig["hdr"] & HDR_OPTIONS)
    same_records(ours, orig, ignore=("wire_len", "cap_len", "ip_len", "hdr"))
    assert np.array_equal(ours["ip_len"][v4], orig["ip_len"][v4] + 12)
    assert np.array_equal(ours["hdr"] ^ (v4 * HDR_OPTIONS), orig["hdr"])
    assert assert_fields_equal_tshark(derived, ours)["options"] == n


def test_fast_path_equals_general_decoder(tmp_path, monkeypatch):
    derived = [
        pcaptools.relink(AMP, tmp_path / "sll2.pcap", 276),
        pcaptools.relink(AMP, tmp_path / "raw.pcap", 101),
        pcaptools.add_ipv6_extensions(AMP, tmp_path / "ext.pcap")[0],
    ]
    files = [*FIXTURES, *derived]
    fast = [load(p) for p in files]
    monkeypatch.setattr(decode, "_FAST", False)
    for p, f in zip(files, fast, strict=True):
        assert load(p).tobytes() == f.tobytes(), p.name


# -- 3. damage ----------------------------------------------------------------------------


def read_until_error(path) -> tuple[np.ndarray, CorruptCaptureError]:
    got = []
    with pytest.raises(CorruptCaptureError) as err:
        for b in read_packets(path, batch_size=50):
            got.append(b)
    msg = str(err.value)
    assert msg.startswith(f"{path}: ") and f"byte offset {err.value.offset}" in msg
    return (np.concatenate(got) if got else np.zeros(0, PACKET_DTYPE)), err.value


PCAP_CUTS = [1, 3, 10, 23, 24 + 5, 24 + 16 + 7]


def test_truncated_pcap_delivers_every_whole_record(tmp_path):
    raw = FTP.read_bytes()
    bounds = pcaptools.pcap_record_offsets(FTP)
    whole = load(FTP)
    rng = np.random.default_rng(7)
    cuts = (
        PCAP_CUTS + [bounds[k] + d for k in (1, 100, 605) for d in (3, 16, 17)] + list(rng.integers(24, len(raw), 30))
    )
    for cut in cuts:
        bad = tmp_path / f"cut{cut}.pcap"
        bad.write_bytes(raw[:cut])
        if cut in bounds:
            assert len(load(bad)) == bounds.index(cut)  # a cut between records is a whole file
            continue
        got, err = read_until_error(bad)
        k = int(np.searchsorted(bounds, cut, side="right")) - 1  # records wholly before the cut
        if cut < 24:
            assert (len(got), err.offset) == (0, 0) and "file header is truncated" in str(err)
            continue
        assert len(got) == k and err.offset == bounds[k], cut
        same_records(got, whole[:k])
        assert "file ends inside a packet record" in str(err)


def test_truncated_pcapng_delivers_every_whole_block(tmp_path):
    ng = _editcap("pcapng", "pcapng")(FTP, tmp_path)
    raw = ng.read_bytes()
    blocks = pcaptools.pcapng_blocks(ng)
    whole = load(ng)
    cuts = [
        2,
        11,
        27,
        blocks[1][0] + 9,
        blocks[2][0] + 4,
        blocks[2][0] + 30,
        blocks[50][0] + 1,
        blocks[-1][0] + blocks[-1][2] - 1,
    ]
    for cut in cuts:
        bad = tmp_path / "cut.pcapng"
        bad.write_bytes(raw[:cut])
        got, err = read_until_error(bad)
        i = max(j for j, (off, _, _) in enumerate(blocks) if off <= cut)
        assert err.offset == blocks[i][0], cut
        k = sum(1 for off, t, ln in blocks[:i] if t == 6)
        assert len(got) == k
        same_records(got, whole[:k])


@pytest.mark.slow
def test_truncated_compressed_files_deliver_what_came_before(tmp_path):
    whole = load(MAWI_PCAP)
    # bzip2 decompresses whole 900 kB blocks (~13,000 of these records): allow one block
    for mod, suffix, slack in ((gzip, "gz", 0), (lzma, "xz", 0), (bz2, "bz2", 13_000)):
        packed = mod.compress(MAWI_PCAP.read_bytes())
        for frac in (0.3, 0.9):
            bad = tmp_path / f"cut.pcap.{suffix}"
            bad.write_bytes(packed[: int(len(packed) * frac)])
            got, err = read_until_error(bad)
            assert "uncompressed byte offset" in str(err)
            # every record decompressed before the cut is delivered (not a whole chunk lost)
            assert len(got) > 0.8 * frac * len(whole) - slack, (suffix, frac, len(got))
            same_records(got, whole[: len(got)])
    garbage = tmp_path / "x.pcap.gz"
    garbage.write_bytes(gzip.compress(FTP.read_bytes())[:30] + bytes(range(256)) * 4)
    with pytest.raises(CorruptCaptureError, match="compressed stream is damaged"):
        list(read_packets(garbage))


def _pcap_bytes():
    return bytearray(FTP.read_bytes()), pcaptools.pcap_record_offsets(FTP)


def test_corrupt_pcap_record_length(tmp_path):
    raw, bounds = _pcap_bytes()
    k = 200
    raw[bounds[k] + 8 : bounds[k] + 12] = (10**7).to_bytes(4, "little")  # record k claims 10 MB
    bad = tmp_path / "len.pcap"
    bad.write_bytes(bytes(raw))
    got, err = read_until_error(bad)
    assert err.offset == bounds[k] and "10000000 captured bytes" in str(err)
    same_records(got, load(FTP)[:k])


def _pcapng_case(tmp_path, edit):
    ng = _editcap("pcapng", "pcapng")(FTP, tmp_path)
    raw = bytearray(ng.read_bytes())
    blocks = pcaptools.pcapng_blocks(ng)
    epbs = [b for b in blocks if b[1] == 6]
    off = edit(raw, epbs[300][0])
    bad = tmp_path / "bad.pcapng"
    bad.write_bytes(bytes(raw))
    got, err = read_until_error(bad)
    assert err.offset == off
    same_records(got, load(FTP)[:300])
    return str(err)


def _u32(raw, at, value):
    raw[at : at + 4] = value.to_bytes(4, "little")
    return at


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda raw, off: _u32(raw, off + 4, 4097) - 4, "block length is invalid"),
        (lambda raw, off: _u32(raw, off + 4, 8) - 4, "block length is invalid"),
        (lambda raw, off: _u32(raw, off + 4, 12) - 4, "does not match its trailer"),
        (lambda raw, off: _u32(raw, off + 20, 5000) - 20, "captured bytes in a"),
        (lambda raw, off: _u32(raw, off + 8, 7) - 8, "refers to interface 7"),
    ],
    ids=["unaligned", "shorter-than-header", "trailer", "caplen", "interface"],
)
def test_corrupt_pcapng_blocks(tmp_path, edit, message):
    assert message in _pcapng_case(tmp_path, edit)


def test_too_short_packet_block(tmp_path):
    # a 12-byte EPB (type, length, trailer) is well-framed but cannot hold its fields
    ng = _editcap("pcapng", "pcapng")(FTP, tmp_path)
    raw = ng.read_bytes()
    epb = [b for b in pcaptools.pcapng_blocks(ng) if b[1] == 6][10][0]
    bad = tmp_path / "short.pcapng"
    bad.write_bytes(raw[:epb] + (6).to_bytes(4, "little") + (12).to_bytes(4, "little") * 2 + raw[epb:])
    got, err = read_until_error(bad)
    assert err.offset == epb and "too short" in str(err)
    same_records(got, load(FTP)[:10])


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: d / "missing.pcap", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: (d / "empty.pcap").write_bytes(b"") == 0 and d / "empty.pcap", "empty file"),
        (lambda d: (d / "t.txt").write_text("hello world") and d / "t.txt", "not a pcap or pcapng"),
        (lambda d: (d / "t.gz").write_bytes(gzip.compress(b"hello world")) and d / "t.gz", "not a pcap or pcapng"),
        (lambda d: (d / "e.xz").write_bytes(lzma.compress(b"")) and d / "e.xz", "empty file"),
    ],
    ids=["missing", "directory", "empty", "text", "gzip-text", "xz-empty"],
)
def test_unreadable_inputs(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(CaptureError, match=message) as err:
        list(read_packets(path))
    assert not isinstance(err.value, CorruptCaptureError)
    assert str(path) in str(err.value)


def test_unsupported_link_type_is_named(tmp_path):
    head, recs = pcaptools.read_pcap(FTP)
    bad = pcaptools.write_pcap(tmp_path / "x.pcap", head, recs[:3], linktype=147)  # LINKTYPE_USER0
    with pytest.raises(CaptureError, match="link type 147"):
        list(read_packets(bad))


def test_unsupported_interface_in_pcapng_after_packets(tmp_path):
    # packets of the supported interface before the unsupported IDB are delivered first
    ng = _editcap("pcapng", "pcapng")(FTP, tmp_path)
    raw = ng.read_bytes()
    blocks = pcaptools.pcapng_blocks(ng)
    idb = next(raw[o : o + n] for o, t, n in blocks if t == 1)
    at = [b for b in blocks if b[1] == 6][20][0]
    bad = tmp_path / "x.pcapng"
    bad.write_bytes(raw[:at] + idb[:8] + (147).to_bytes(2, "little") + idb[10:] + raw[at:])
    got = []
    with pytest.raises(CaptureError, match="link type 147"):
        for b in read_packets(bad, batch_size=1000):
            got.append(b)
    same_records(np.concatenate(got), load(FTP)[:20])


def test_reader_closes_its_file_and_can_be_read_twice(tmp_path):
    gz = _compress(gzip, "gz")(FTP, tmp_path)
    r = CaptureReader(gz)
    a = np.concatenate(list(r))
    b = np.concatenate(list(r))
    assert a.tobytes() == b.tobytes() and r.info.packets == len(a) and r.info.compression == "gzip"


# -- 4. limits: what one record or block may make the reader buffer ----------------------

HPING = ATTACKS / "hping3.pcapng"  # one IDB with options (if_tsresol among them), 6005 EPBs
REPO = Path(__file__).resolve().parents[2]
# Reads a capture in a fresh interpreter and reports what it got and its own peak RSS.  (VmHWM,
# not getrusage's ru_maxrss: Linux carries ru_maxrss over an exec, so a child of a big pytest
# process would report the parent's size.)
_READ_AND_MEASURE = """
import hashlib, json, sys
from pathlib import Path
from sensor.capture import read_packets
from sensor.errors import CorruptCaptureError
h, n, err = hashlib.sha256(), 0, None
try:
    for b in read_packets(sys.argv[1]):
        h.update(b.tobytes())
        n += len(b)
except CorruptCaptureError as e:
    err = [str(e), e.offset]
hwm = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:"))
rss = int(hwm.split()[1]) / 1024
print(json.dumps({"packets": n, "sha": h.hexdigest(), "error": err, "maxrss_mb": rss}))
"""


def read_in_subprocess(path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _READ_AND_MEASURE, str(path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    ).stdout
    return json.loads(out)


def records_sha(records: np.ndarray) -> str:
    return hashlib.sha256(records.tobytes()).hexdigest()


def gzip_bomb(path, head: bytes, zeros: int) -> Path:
    """``head`` followed by ``zeros`` zero bytes, gzipped a MiB at a time (~1 kB per MiB)."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [z.compress(head)]
    mib = bytes(1 << 20)
    for _ in range(zeros >> 20):
        parts.append(z.compress(mib))
    parts.append(z.flush())
    Path(path).write_bytes(b"".join(parts))
    return Path(path)


BOMB_ZEROS = 320 << 20  # what the old reader buffered (twice over) before it gave up


def test_pcapng_block_claiming_4_gib_is_refused_without_buffering_it(tmp_path):
    raw = _editcap("pcapng", "pcapng")(FTP, tmp_path).read_bytes()
    at = [b for b in pcaptools.pcapng_blocks(tmp_path / "x.pcapng") if b[1] == 6][300][0]
    bomb = gzip_bomb(tmp_path / "bomb.pcapng.gz", raw[:at] + struct.pack("<II", 6, 0xFFFFFFF0), BOMB_ZEROS)
    assert bomb.stat().st_size < 2 << 20
    got = read_in_subprocess(bomb)
    message = f"{bomb}: block claims 4294967280 bytes (limit 16777216) at uncompressed byte offset {at}"
    assert got["error"] == [message, at]
    assert (got["packets"], got["sha"]) == (300, records_sha(load(FTP)[:300]))
    # one 8 MiB chunk was decompressed and nothing was buffered waiting for the block's end
    assert got["maxrss_mb"] < 150


def test_pcap_record_claiming_2_gib_is_refused_whatever_the_snaplen(tmp_path):
    raw, bounds = _pcap_bytes()
    raw[16:20] = (1 << 31).to_bytes(4, "little")  # the header claims a 2 GiB snaplen
    k = 200
    head = bytes(raw[: bounds[k] + 8]) + struct.pack("<II", 0x7FFFFFFF, 60)
    bomb = gzip_bomb(tmp_path / "bomb.pcap.gz", head, BOMB_ZEROS)
    got = read_in_subprocess(bomb)
    message = f"{bomb}: record claims 2147483647 captured bytes (limit 262144) at uncompressed byte offset {bounds[k]}"
    assert got["error"] == [message, bounds[k]]
    assert (got["packets"], got["sha"]) == (k, records_sha(load(FTP)[:k]))
    assert got["maxrss_mb"] < 150


def _with_record_of(caplen: int, tmp_path) -> Path:
    """FTP's first three records, the second padded with zeros to ``caplen`` captured (and wire) bytes."""
    head, recs = pcaptools.read_pcap(FTP)
    sec, frac, _, _, data = recs[1]
    big = (sec, frac, caplen, caplen, data + bytes(caplen - len(data)))
    return pcaptools.write_pcap(tmp_path / f"big{caplen}.pcap", {**head, "snaplen": 262144}, [recs[0], big, recs[2]])


def test_records_up_to_262144_bytes_are_read_and_longer_ones_refused_like_tshark(tmp_path):
    ok = _with_record_of(262144, tmp_path)
    got = load(ok)
    assert list(got["cap_len"]) == [int(r["frame.cap_len"]) for r in reference.tshark_fields(ok, ["frame.cap_len"])]
    assert got["cap_len"][1] == 262144
    same_records(got[[0, 2]], load(FTP)[[0, 2]])
    bad = _with_record_of(262145, tmp_path)
    got, err = read_until_error(bad)
    assert "record claims 262145 captured bytes (limit 262144)" in str(err) and err.offset == 24 + 16 + 78
    assert len(got) == 1
    tshark = subprocess.run(["tshark", "-r", bad], capture_output=True, text=True, check=False)
    assert "262145-byte packet, bigger than maximum of 262144" in tshark.stderr


def test_stream_copies_each_byte_a_bounded_number_of_times(tmp_path, monkeypatch):
    # 262144-byte records read through 4 kB chunks: a fill that copied the whole buffer per
    # chunk would build buffers summing to ~32x the file; carrying the tail once, ~2-4x.
    head, recs = pcaptools.read_pcap(FTP)
    sec, frac, _, _, data = recs[1]
    big = (sec, frac, 262144, 262144, data + bytes(262144 - len(data)))
    plain = pcaptools.write_pcap(tmp_path / "big.pcap", {**head, "snaplen": 262144}, [big, *recs[:50]] * 8)
    packed = tmp_path / "big.pcap.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    expected = load(plain)
    built = []
    fill = files._Stream.fill

    def counting_fill(self):
        more = fill(self)
        built.append(len(self.buf) if more else 0)
        return more

    monkeypatch.setattr(files._Stream, "fill", counting_fill)
    monkeypatch.setattr(files, "CHUNK_BYTES", 4096)
    for path in (plain, packed):
        built.clear()
        same_records(load(path), expected)
        assert sum(built) < 4 * plain.stat().st_size, (path.name, sum(built) / plain.stat().st_size)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + bytes(-len(value) % 4)


def _idb_with(idb: bytes, options: bytes) -> bytes:
    """A little-endian IDB with ``options`` added before its end-of-options."""
    blen = struct.unpack_from("<I", idb, 4)[0]
    p = 16
    while p + 4 <= blen - 4:
        code, olen = struct.unpack_from("<HH", idb, p)
        if code == 0:
            break
        p += 4 + ((olen + 3) & ~3)
    body = idb[8:p] + options + idb[p : blen - 4]
    return struct.pack("<II", 1, len(body) + 12) + body + struct.pack("<I", len(body) + 12)


def _hping_parts() -> tuple[bytes, bytes, list[bytes]]:
    """hping3.pcapng as (SHB, IDB, [EPB, ...])."""
    raw = HPING.read_bytes()
    blocks = [raw[o : o + n] for o, _, n in pcaptools.pcapng_blocks(HPING)]
    assert [struct.unpack_from("<I", b)[0] for b in blocks[:3]] == [0x0A0D0D0A, 1, 6]
    return blocks[0], blocks[1], blocks[2:]


@pytest.mark.parametrize("seconds", [1000, -1000, 86400 * 365 * 200])
def test_if_tsoffset_is_applied_like_tshark(tmp_path, seconds):
    shb, idb, epbs = _hping_parts()
    f = tmp_path / "off.pcapng"
    f.write_bytes(shb + _idb_with(idb, _option(14, struct.pack("<q", seconds))) + b"".join(epbs))
    got = load(f)
    assert np.array_equal(got["ts"], load(HPING)["ts"] + seconds * 1_000_000_000)
    assert list(got["ts"]) == [_ns(r["frame.time_epoch"]) for r in reference.tshark_fields(f, ["frame.time_epoch"])]


@pytest.mark.parametrize(
    "seconds,ok",
    [(9223372036, True), (9223372037, False), (-9223372037, False), (-(1 << 63), False), ((1 << 63) - 1, False)],
)
def test_if_tsoffset_beyond_int64_ns_is_corrupt(tmp_path, seconds, ok):
    # (found by fuzzing: an offset over ~9.2e9 s raised OverflowError out of the reader)
    shb, idb, epbs = _hping_parts()
    second = _idb_with(idb, _option(14, struct.pack("<q", seconds)))
    on_second = [e[:8] + struct.pack("<I", 1) + e[12:] for e in epbs[20:]]
    f = tmp_path / "off.pcapng"
    f.write_bytes(shb + idb + b"".join(epbs[:20]) + second + b"".join(on_second))
    if ok:
        r = CaptureReader(f)
        assert len(np.concatenate(list(r))) == len(epbs) and r.info.interfaces[1].ts_offset_ns == seconds * 10**9
        return
    got, err = read_until_error(f)
    assert f"if_tsoffset of {seconds} s is out of range" in str(err)
    assert err.offset == len(shb + idb) + sum(map(len, epbs[:20]))
    same_records(got, load(HPING)[:20])


def test_pcapng_block_and_header_limits(tmp_path):
    shb, idb, epbs = _hping_parts()
    whole = load(HPING)

    def case(name: str, data: bytes) -> tuple[np.ndarray, CorruptCaptureError]:
        f = tmp_path / f"{name}.pcapng"
        f.write_bytes(data)
        return read_until_error(f)

    at = len(shb + idb) + sum(map(len, epbs[:30]))
    # a packet block claiming just over 16 MiB is refused at once, not read to the end of the file
    claim = struct.pack("<II", 6, (16 << 20) + 4)
    got, err = case("epb", shb + idb + b"".join(epbs[:30]) + claim + b"".join(epbs[30:]))
    assert "block claims 16777220 bytes (limit 16777216)" in str(err) and err.offset == at
    same_records(got, whole[:30])
    # section header: the claim alone is refused
    big_shb = shb[:4] + struct.pack("<I", (1 << 20) + 4) + shb[8:]
    got, err = case("shb", big_shb + idb + b"".join(epbs))
    assert "section header block claims 1048580 bytes (limit 1048576)" in str(err) and err.offset == 0
    # an interface block whose options really are over 1 MiB (17 comments of 65532 bytes)
    fat = _idb_with(idb, _option(1, b"x" * 65532) * 17)
    assert len(fat) > 1 << 20
    got, err = case("idb", shb + idb + b"".join(epbs[:30]) + fat + b"".join(epbs[30:]))
    assert f"interface description block claims {len(fat)} bytes (limit 1048576)" in str(err) and err.offset == at
    same_records(got, whole[:30])


def test_large_blocks_within_the_limit_are_read(tmp_path):
    # a 1 MiB custom block, a ~1 MiB IDB (16 comments) and a 16 MiB unknown block are real pcapng
    shb, idb, epbs = _hping_parts()
    custom = struct.pack("<II", 0x00000BAD, 1 << 20) + bytes((1 << 20) - 12) + struct.pack("<I", 1 << 20)
    unknown = struct.pack("<II", 0x00000A0B, 16 << 20) + bytes((16 << 20) - 12) + struct.pack("<I", 16 << 20)
    fat = _idb_with(idb, _option(1, b"x" * 65532) * 15)
    f = tmp_path / "big.pcapng"
    f.write_bytes(shb + fat + b"".join(epbs[:100]) + custom + b"".join(epbs[100:200]) + unknown + b"".join(epbs[200:]))
    same_records(load(f), load(HPING))
    assert reference.capinfos(f) == reference.capinfos(HPING)


def test_interfaces_per_section_are_bounded(tmp_path):
    # 65536 interfaces, packets spread over all of them, read in few passes; one more is refused
    shb, _, epbs = _hping_parts()
    bare_idb = struct.pack("<IIHHII", 1, 20, 1, 0, 0, 20)  # Ethernet, no snaplen, no options
    ids = (np.arange(len(epbs)) * 7919) % 65536
    spread = [e[:8] + struct.pack("<I", int(i)) + e[12:] for e, i in zip(epbs, ids, strict=True)]
    f = tmp_path / "many.pcapng"
    f.write_bytes(shb + bare_idb * 65536 + b"".join(spread))
    got = load(f)
    assert np.array_equal(got["iface"], ids)
    same_records(got, load(HPING), ignore=("iface",))
    over = tmp_path / "over.pcapng"
    over.write_bytes(shb + bare_idb * 65536 + b"".join(spread[:10]) + bare_idb + b"".join(spread[10:]))
    got, err = read_until_error(over)
    assert "section defines more than 65536 interfaces" in str(err)
    assert err.offset == len(shb) + 20 * 65536 + sum(map(len, spread[:10]))
    same_records(got, load(HPING)[:10], ignore=("iface",))


# -- 5. compressed streams: one after another, and damage after the first -------------------

COMPRESSORS = {"gzip": gzip.compress, "xz": lzma.compress, "bzip2": bz2.compress}


def _two_streams(tmp_path, name, second=lambda s: s, tail=b"") -> tuple[Path, int]:
    """FTP's records 0..k-1 in one compressed stream, the rest in a second one; (path, k)."""
    raw, bounds = _pcap_bytes()
    k = 300
    pack = COMPRESSORS[name]
    path = tmp_path / f"two.{name}"
    path.write_bytes(pack(bytes(raw[: bounds[k]])) + second(pack(bytes(raw[bounds[k] :]))) + tail)
    return path, k


@pytest.mark.parametrize("chunk", [7, files.CHUNK_BYTES])
@pytest.mark.parametrize("name", COMPRESSORS)
def test_streams_one_after_another_and_zero_padding_read_as_one(tmp_path, monkeypatch, name, chunk):
    # (7-byte chunks: zlib can end a member at max_length with its leftover input both in
    # unused_data and unconsumed_tail; taking both repeated the next member's data)
    monkeypatch.setattr(files, "CHUNK_BYTES", chunk)
    path, _ = _two_streams(tmp_path, name, tail=bytes(12))
    same_records(load(path), load(FTP))


@pytest.mark.parametrize("chunk", [1000, files.CHUNK_BYTES])
@pytest.mark.parametrize("name", COMPRESSORS)
def test_damage_at_the_start_of_a_second_stream_is_reported(tmp_path, monkeypatch, name, chunk):
    # (found by fuzzing: LZMAFile and BZ2File take a next stream that fails in its first
    # decompression step for trailing garbage, so with large reads the file quietly ended
    # after the first stream; with small reads the same damage was reported)
    monkeypatch.setattr(files, "CHUNK_BYTES", chunk)
    path, k = _two_streams(tmp_path, name, second=lambda s: s[:6] + bytes(b ^ 0xFF for b in s[6:16]) + s[16:])
    got, err = read_until_error(path)
    assert "compressed stream is damaged" in str(err) and "uncompressed byte offset" in str(err)
    assert len(got) >= k
    same_records(got, load(FTP)[: len(got)])


@pytest.mark.parametrize("name", COMPRESSORS)
def test_garbage_after_the_last_stream_is_damage(tmp_path, name):
    path, _ = _two_streams(tmp_path, name, tail=b"\x00\x00not a stream")
    got, err = read_until_error(path)
    assert "compressed stream is damaged" in str(err)
    same_records(got, load(FTP))


@pytest.mark.parametrize("src", ["pcap", "pcapng"])
def test_a_stream_cut_inside_the_file_header_is_damage_not_a_short_header(tmp_path, src):
    # (found by fuzzing: the header's "truncated" was reported where the bytes were missing
    # because the compressed stream ended or broke there)
    raw = FTP.read_bytes() if src == "pcap" else _editcap("pcapng", "pcapng")(FTP, tmp_path).read_bytes()
    packed = gzip.compress(raw, compresslevel=0)  # stored blocks: output from the first bytes on
    decoded = {}
    for cut in range(11, 60):
        d = zlib.decompressobj(31)
        decoded[cut] = len(d.decompress(packed[:cut]))
        bad = tmp_path / f"cut{cut}.gz"
        bad.write_bytes(packed[:cut])
        with pytest.raises(CorruptCaptureError, match="compressed stream is damaged"):
            list(read_packets(bad))
    assert any(4 <= n < 28 for n in decoded.values())  # cuts inside the file header were among them


@pytest.mark.parametrize("chunk", [1, 64, files.CHUNK_BYTES])
def test_a_cut_section_header_at_the_end_reads_the_same_at_any_read_size(tmp_path, monkeypatch, chunk):
    # Found by the long fuzz campaign (seed 9, input 1674265): 11 bytes of a second section
    # header at the end were "section header block is truncated" when a read's chunk ended
    # just before them and "file ends inside a block" otherwise.
    whole = (DATA / "wifi" / "wlan-mixed.pcapng").read_bytes()
    path = tmp_path / "cut.pcapng"
    path.write_bytes(whole + whole[:11])
    monkeypatch.setattr(files, "CHUNK_BYTES", chunk)
    reader = CaptureReader(path, batch_size=3)
    got = []
    with pytest.raises(CorruptCaptureError, match="section header block is truncated") as err:
        got.extend(reader)
    assert err.value.offset == len(whole)
    same_records(np.concatenate(got), load(DATA / "wifi" / "wlan-mixed.pcapng"))
