"""The capture-file reader against capinfos and tshark, across formats, and on damaged files."""
from __future__ import annotations

import gzip
import lzma
import subprocess

import numpy as np
import pytest

from sensor.capture import CaptureReader, read_packets
from sensor.capture.records import FRAG_NONFIRST, HDR_L4
from sensor.errors import CaptureError, CorruptCaptureError

from ..conftest import ATTACKS, DATA, MAWI_PCAP
from . import pcaptools

FIXTURES = [MAWI_PCAP, *sorted(ATTACKS.glob("*.pcap*")), *sorted((DATA / "zeek").glob("*.pcap"))]


def load(path) -> np.ndarray:
    return np.concatenate(list(read_packets(path)))


def capinfos(path) -> tuple[int, int]:
    out = subprocess.run(["capinfos", "-T", "-m", "-c", "-d", str(path)], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1].split(",")
    return int(out[-2]), int(out[-1])


def tshark_fields(path, fields, extra=()) -> list[list[str]]:
    args = ["tshark", "-n", "-o", "ip.defragment:FALSE", "-o", "ipv6.defragment:FALSE", "-r", str(path),
            *extra, "-T", "fields", "-E", "occurrence=f"]
    for f in fields:
        args += ["-e", f]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return [line.split("\t") for line in out.splitlines()]


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_totals_equal_capinfos(path):
    p = load(path)
    assert (len(p), int(p["wire_len"].sum())) == capinfos(path)
    assert np.all(np.diff(p["ts"]) >= -10**9)  # sane timestamps


FIELDS = ["frame.time_epoch", "frame.len", "ip.src", "ip.dst", "ip.proto", "ip.ttl", "ip.len", "ip.frag_offset",
          "ip.flags.mf", "tcp.srcport", "tcp.dstport", "tcp.flags", "tcp.window_size_value", "udp.srcport",
          "udp.dstport", "icmp.type", "icmp.code"]


@pytest.mark.parametrize(
    "path",
    [MAWI_PCAP, ATTACKS / "amp.dns.RRSIG.fragmented.pcap", ATTACKS / "hping3.pcapng",
     DATA / "zeek" / "ftp_bruteforce.pcap"],
    ids=lambda p: p.name,
)
def test_header_fields_equal_tshark(path):
    ours = load(path)
    ref = tshark_fields(path, FIELDS)
    assert len(ref) == len(ours)
    checked = 0
    for r, row in zip(ours, ref):
        f = dict(zip(FIELDS, row))
        assert abs(int(r["ts"]) - round(float(f["frame.time_epoch"]) * 1e9)) < 2000
        assert r["wire_len"] == int(f["frame.len"])
        if not f["ip.src"] or r["l3"] != 4:
            continue
        checked += 1
        assert ".".join(map(str, r["src"][12:])) == f["ip.src"] and ".".join(map(str, r["dst"][12:])) == f["ip.dst"]
        assert (r["proto"], r["ttl"], r["ip_len"]) == (int(f["ip.proto"]), int(f["ip.ttl"]), int(f["ip.len"]))
        assert r["frag_off"] == int(f["ip.frag_offset"] or 0)  # tshark 4.0 shows 8-byte units
        if r["frag"] & FRAG_NONFIRST:
            assert r["sport"] == r["dport"] == 0
            continue
        if f["tcp.srcport"] and r["proto"] == 6:  # (not the inner header of a tunnel)
            assert (r["sport"], r["dport"]) == (int(f["tcp.srcport"]), int(f["tcp.dstport"]))
            assert r["tcp_flags"] == int(f["tcp.flags"], 16) & 0x1FF
            if path != MAWI_PCAP:  # the excerpt's windows were shifted to fit 16 bits (MANIFEST)
                assert r["tcp_win"] == int(f["tcp.window_size_value"])
        if f["udp.srcport"] and r["proto"] == 17:
            assert (r["sport"], r["dport"]) == (int(f["udp.srcport"]), int(f["udp.dstport"]))
        if f["icmp.type"] and r["proto"] == 1:
            assert (r["icmp_type"], r["icmp_code"]) == (int(f["icmp.type"]), int(f["icmp.code"]))
    assert checked > 0.5 * len(ours)


def test_snaplen_cut_headers_are_read_as_far_as_they_go():
    p = load(MAWI_PCAP)
    tcp = p[p["proto"] == 6]
    assert np.mean(tcp["cap_len"] < tcp["wire_len"]) > 0.5  # options and payload were cut
    assert np.all(tcp["cap_len"] <= tcp["wire_len"])
    assert np.all(tcp["hdr"] & HDR_L4) and np.all(tcp["sport"] > 0)


def same_records(a: np.ndarray, b: np.ndarray, ignore=("wire_len", "cap_len", "iface")) -> None:
    assert len(a) == len(b)
    for name in a.dtype.names:
        if name not in ignore:
            assert np.array_equal(a[name], b[name]), name


FTP = DATA / "zeek" / "ftp_bruteforce.pcap"


@pytest.mark.parametrize(
    "convert",
    [
        lambda src, d: subprocess.run(["editcap", "-F", "pcapng", src, d / "x.pcapng"], check=True) and d / "x.pcapng",
        lambda src, d: subprocess.run(["editcap", "-F", "nsecpcap", src, d / "x.pcap"], check=True) and d / "x.pcap",
        lambda src, d: pcaptools.byteswap_pcap(src, d / "be.pcap"),
        lambda src, d: (d / "x.pcap.gz").write_bytes(gzip.compress(src.read_bytes())) and d / "x.pcap.gz",
        lambda src, d: (d / "x.pcap.xz").write_bytes(lzma.compress(src.read_bytes())) and d / "x.pcap.xz",
    ],
    ids=["pcapng", "nanosecond", "big-endian", "gzip", "xz"],
)
@pytest.mark.parametrize("src", [MAWI_PCAP, FTP], ids=["mawi", "ftp"])
def test_formats_give_the_same_records(tmp_path, convert, src):
    derived = convert(src, tmp_path)
    same_records(load(derived), load(src), ignore=())


def test_big_endian_pcapng_and_simple_packet_blocks(tmp_path):
    ng = tmp_path / "x.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(FTP), str(ng)], check=True)
    same_records(load(pcaptools.byteswap_pcapng(ng, tmp_path / "be.pcapng")), load(FTP), ignore=())
    spb = load(pcaptools.epb_to_spb(ng, tmp_path / "spb.pcapng"))
    # SPBs carry no timestamp (they inherit the previous packet's): all else is identical.
    same_records(spb, load(FTP), ignore=("ts",))
    assert capinfos(tmp_path / "spb.pcapng")[0] == len(spb)


def test_pcapng_with_several_interfaces(tmp_path):
    out = tmp_path / "merged.pcapng"
    subprocess.run(["mergecap", "-F", "pcapng", "-w", str(out), str(FTP), str(ATTACKS / "hping3.pcapng")], check=True)
    p = load(out)
    r = CaptureReader(out)
    n = sum(len(b) for b in r)
    assert len(r.info.interfaces) >= 2 and len(np.unique(p["iface"])) >= 2
    assert (n, int(p["wire_len"].sum())) == capinfos(out)
    assert np.all(np.diff(p["ts"]) >= 0)


@pytest.mark.parametrize("linktype", [113, 276, 101, 0, 108], ids=["sll", "sll2", "raw", "null", "loop"])
def test_link_types(tmp_path, linktype):
    src = ATTACKS / "amp.dns.RRSIG.fragmented.pcap"  # IPv4, IPv6 and fragments
    derived = pcaptools.relink(src, tmp_path / "x.pcap", linktype)
    same_records(load(derived), load(src), ignore=("wire_len", "cap_len"))
    if linktype in (113, 276, 101, 0):  # tshark agrees on the derived file's framing
        ref = tshark_fields(derived, ["ip.src", "ipv6.src"])
        ours = load(derived)
        assert sum(1 for r in ref if r[0] or r[1]) == int((ours["l3"] > 0).sum())


def test_vlan_and_qinq(tmp_path):
    one = tmp_path / "v1.pcap"
    two = tmp_path / "v2.pcap"
    base = ["tcprewrite", "--enet-vlan=add", "--enet-vlan-cfi=0", "--enet-vlan-pri=0"]
    subprocess.run([*base, "--enet-vlan-tag=100", "-i", str(FTP), "-o", str(one)], check=True)
    subprocess.run([*base, "--enet-vlan-tag=200", "-i", str(one), "-o", str(two)], check=True)
    same_records(load(one), load(FTP))
    same_records(load(two), load(FTP))


def test_ipv6_extension_headers_are_walked(tmp_path):
    derived, n = pcaptools.add_ipv6_extensions(ATTACKS / "amp.dns.RRSIG.fragmented.pcap", tmp_path / "x.pcap")
    assert n > 0
    ours = load(derived)
    v6 = ours[ours["l3"] == 6]
    ref = [r for r in tshark_fields(derived, ["ipv6.src", "tcp.srcport", "tcp.dstport", "udp.srcport",
                                              "udp.dstport"]) if r[0]]
    assert len(v6) == len(ref) == n
    for r, (src, tsp, tdp, usp, udp) in zip(v6, ref):
        expect = (6, int(tsp), int(tdp)) if tsp else (17, int(usp), int(udp))
        assert (r["proto"], r["sport"], r["dport"]) == expect


# -- damage -------------------------------------------------------------------

def read_until_error(path):
    got = []
    with pytest.raises(CorruptCaptureError) as err:
        for b in read_packets(path):
            got.append(b)
    return (np.concatenate(got) if got else np.zeros(0, ...)), err.value


@pytest.mark.parametrize("cut", [10, 30, 1000, 100_003, 2_000_000, 6_415_000])
def test_truncated_pcap_delivers_everything_before_the_cut(tmp_path, cut):
    raw = MAWI_PCAP.read_bytes()
    bad = tmp_path / "cut.pcap"
    bad.write_bytes(raw[:cut])
    whole = load(MAWI_PCAP)
    got = []
    with pytest.raises(CorruptCaptureError) as err:
        for b in read_packets(bad):
            got.append(b)
    n = sum(len(b) for b in got)
    assert str(bad) in str(err.value) and "byte offset" in str(err.value)
    assert err.value.offset <= cut
    if got:
        same_records(np.concatenate(got), whole[:n], ignore=())
    # Every whole record before the cut was delivered: the next one would not fit.
    assert n == 0 or n >= np.searchsorted(np.cumsum(16 + whole["cap_len"].astype(np.int64)) + 24, cut + 1) - 1


def test_truncated_gzip_and_pcapng(tmp_path):
    gz = tmp_path / "x.pcap.gz"
    gz.write_bytes(gzip.compress(FTP.read_bytes())[:-200])
    with pytest.raises(CorruptCaptureError, match="uncompressed byte offset"):
        list(read_packets(gz))
    ng = tmp_path / "x.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(FTP), str(ng)], check=True)
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(ng.read_bytes()[:20_000])
    with pytest.raises(CorruptCaptureError, match=r"cut\.pcapng: file ends inside a block"):
        list(read_packets(cut))


def test_corrupt_lengths(tmp_path):
    raw = bytearray(FTP.read_bytes())
    raw[24 + 8 : 24 + 12] = (10**7).to_bytes(4, "little")  # first record claims 10 MB
    bad = tmp_path / "len.pcap"
    bad.write_bytes(bytes(raw))
    with pytest.raises(CorruptCaptureError, match="byte offset 24"):
        list(read_packets(bad))
    ng = bytearray(subprocess.run(["editcap", "-F", "pcapng", str(FTP), "-"], capture_output=True,
                                  check=True).stdout)
    ng[-4:] = b"\x01\x02\x03\x04"  # last block's trailer length disagrees
    badng = tmp_path / "trailer.pcapng"
    badng.write_bytes(bytes(ng))
    got = []
    with pytest.raises(CorruptCaptureError, match="does not match its trailer"):
        for b in read_packets(badng):
            got.append(b)
    assert sum(len(b) for b in got) == len(load(FTP)) - 1


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: d / "missing.pcap", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: (d / "empty.pcap").write_bytes(b"") == 0 and d / "empty.pcap", "empty file"),
        (lambda d: (d / "t.txt").write_text("hello world") and d / "t.txt", "not a pcap or pcapng"),
    ],
    ids=["missing", "directory", "empty", "text"],
)
def test_unreadable_inputs(tmp_path, make, message):
    with pytest.raises(CaptureError, match=message):
        list(read_packets(make(tmp_path)))


def test_unsupported_link_type_is_named(tmp_path):
    head, recs = pcaptools.read_pcap(FTP)
    bad = pcaptools.write_pcap(tmp_path / "x.pcap", head, recs[:3], linktype=105)  # 802.11
    with pytest.raises(CaptureError, match="link type 105"):
        list(read_packets(bad))
