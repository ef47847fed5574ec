"""AGURIM-style aggregation against the original aguri3's output on the same pcap,
plus the Aguri-2.0 text reader and the aggregate rendering."""

from __future__ import annotations

import io
import time

import numpy as np
import pytest

from sensor.addresses import IPV4_MAPPED_PREFIX
from sensor.aggregate import (
    AggregateConfig,
    ProtoAggregate,
    aggregate_second,
    match_aggregates,
    parse_proto_label,
    read_aguri,
    read_aguri_file,
    render_prefix,
    to_json_dict,
)
from sensor.capture import read_packets
from sensor.capture.records import FRAG_FRAGMENT, FRAG_MF, FRAG_NONFIRST, PACKET_DTYPE
from sensor.flows import NS

from ..conftest import DATA, MAWI_PCAP

AGR = DATA / "agurim" / "201911211400_headers.aguri3-i1.agr"
AGURI_FILES = [
    "201911211400_headers.aguri3-i1.agr",
    "example_truth.agr",
    "example_tested.agr",
    "tcp_patterns.agurim.txt",
]


@pytest.fixture(scope="module")
def mawi_seconds():
    p = np.concatenate(list(read_packets(MAWI_PCAP)))
    p = p[np.argsort(p["ts"], kind="stable")]
    sec = p["ts"] // NS
    cuts = np.flatnonzero(np.r_[True, sec[1:] != sec[:-1], True])
    return {int(sec[a]): p[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True)}


@pytest.fixture(scope="module")
def reference():
    return {b.start: b for b in read_aguri_file(AGR)}


@pytest.fixture(scope="module")
def ours(mawi_seconds):
    return {sec: aggregate_second(p) for sec, p in mawi_seconds.items()}


def _rank_keys(entries, total_b, total_p):
    r = total_b / total_p
    return [max(b, int(r * p)) for b, p in entries]


def test_matches_aguri3_second_by_second(mawi_seconds, reference, ours):
    """Same heavy-hitter set, same byte and packet counts, same totals, same ranks as aguri3 -i 1."""
    assert len(reference) == 79 and set(reference) == set(mawi_seconds)
    same_set = same_counts = same_ranks = 0
    for sec, agg in ours.items():
        block = reference[sec]
        # aguri3's intervals are the epoch seconds; its last block, closed by the end of
        # the file rather than by a later packet, ends at the last packet's second.
        assert block.end == sec + 1 or (block.end == sec and sec == max(ours))
        if block.total_bytes is not None:  # aguri3's last block has no %total line
            assert (agg.total_bytes, agg.total_packets) == (block.total_bytes, block.total_packets)
        assert agg.input_flows[4] == block.input_odflows["IPv4"]
        mine = {(a.src_text, a.dst_text): (a.bytes, a.packets) for a in agg.aggregates}
        theirs = {(e.src, e.dst): (e.bytes, e.packets) for e in block.entries}
        same_set += set(mine) == set(theirs)
        same_counts += mine == theirs
        # Rank order: the ranking key sequence is the same; entries with equal
        # keys may be listed in another order (see docs/aggregation.md).
        tb, tp = agg.total_bytes, agg.total_packets
        same_ranks += _rank_keys([(a.bytes, a.packets) for a in agg.aggregates], tb, tp) == _rank_keys(
            [(e.bytes, e.packets) for e in block.entries], tb, tp
        )
    rate = same_set / len(reference)
    print(
        f"\naguri3 match: identical heavy-hitter (src, dst) set in {same_set}/{len(reference)} seconds "
        f"({rate:.1%}); identical byte/packet counts in {same_counts}; same rank order (up to ties) in "
        f"{same_ranks}"
    )
    assert rate >= 0.95
    assert same_counts == same_set == same_ranks


def test_protocol_breakdown_matches_aguri3(reference, ours):
    """Each aggregate's [proto:sport:dport] entries and their shares, as aguri3 prints them."""
    checked = agree = ordered = 0
    for sec, agg in ours.items():
        theirs = {(e.src, e.dst): e for e in reference[sec].entries}
        for a in agg.aggregates:
            e = theirs.get((a.src_text, a.dst_text))
            if e is None:
                continue
            mine = {
                p.label()[1:-1]: (round(100 * p.byte_share, 2), round(100 * p.packet_share, 2)) for p in a.protocols
            }
            ref_p = {p.label: (p.byte_pct, p.packet_pct) for p in e.protocols}
            checked += 1
            agree += mine.keys() == ref_p.keys() and all(
                abs(mine[k][0] - ref_p[k][0]) <= 0.011 and abs(mine[k][1] - ref_p[k][1]) <= 0.011 for k in mine
            )
            r = a.bytes / a.packets if a.packets else 0.0
            key = {p.label()[1:-1]: max(p.bytes, int(r * p.packets)) for p in a.protocols}
            ordered += [key[p.label()[1:-1]] for p in a.protocols] == [key.get(p.label, -1) for p in e.protocols]
    print(f"\nprotocol breakdowns identical for {agree}/{checked} aggregates, same order (up to ties) {ordered}")
    assert checked > 3000 and agree == checked and ordered == checked


def test_every_packet_is_in_exactly_the_aggregate_that_took_it(mawi_seconds):
    packets = mawi_seconds[min(mawi_seconds)]
    agg = aggregate_second(packets)
    idx = match_aggregates(agg, packets["src"], packets["dst"])
    assert (idx >= 0).all()
    counts = np.bincount(idx, minlength=len(agg))
    nbytes = np.bincount(idx, packets["wire_len"].astype(float), minlength=len(agg))
    assert counts.tolist() == [a.packets for a in agg.aggregates]
    assert nbytes.astype(int).tolist() == [a.bytes for a in agg.aggregates]
    # The same with containing=True: pairs present this second keep their aggregate.
    assert (match_aggregates(agg, packets["src"], packets["dst"], containing=True) == idx).all()


def test_pairs_absent_this_second(mawi_seconds):
    agg = aggregate_second(mawi_seconds[min(mawi_seconds)])
    ghost_src = np.frombuffer(IPV4_MAPPED_PREFIX + bytes([163, 221, 99, 99]), np.uint8)[None, :]
    ghost_dst = np.frombuffer(IPV4_MAPPED_PREFIX + bytes([1, 2, 3, 4]), np.uint8)[None, :]
    assert match_aggregates(agg, ghost_src, ghost_dst)[0] == -1
    k = match_aggregates(agg, ghost_src, ghost_dst, containing=True)[0]
    a = agg.aggregates[k]
    assert (a.src_text, a.dst_text) == ("163.221.0.0/17", "*")
    # An IPv6 pair in a second without IPv6 traffic has no aggregate at all.
    v6 = np.zeros((1, 16), np.uint8)
    v6[0, :2] = (0x20, 0x01)
    assert match_aggregates(agg, v6, v6, containing=True)[0] == -1


def test_busiest_second_runtime(mawi_seconds):
    sec = max(mawi_seconds, key=lambda s: len(mawi_seconds[s]))
    p = mawi_seconds[sec]
    times = {}
    for protocols in (True, False):
        cfg = AggregateConfig(protocols=protocols)
        aggregate_second(p, cfg)
        t0 = time.perf_counter()
        for _ in range(5):
            aggregate_second(p, cfg)
        times[protocols] = (time.perf_counter() - t0) / 5
    print(
        f"\nbusiest second ({len(p)} packets): {1000 * times[True]:.1f} ms with protocol breakdowns, "
        f"{1000 * times[False]:.1f} ms without"
    )
    assert times[False] < 1.0  # generous: it must keep up with one second of traffic


# --- configuration --------------------------------------------------------------------


def test_thresholds_change_the_result(mawi_seconds):
    packets = mawi_seconds[min(mawi_seconds)]
    fine = aggregate_second(packets, AggregateConfig(address_threshold=0.005))
    coarse = aggregate_second(packets, AggregateConfig(address_threshold=0.05))
    assert len(fine) > len(aggregate_second(packets)) > len(coarse) >= 1


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"address_threshold": 0}, "address_threshold"),
        ({"address_threshold": 1.5}, "address_threshold"),
        ({"protocol_threshold": -0.1}, "protocol_threshold"),
        ({"protocol_threshold": "4%"}, "protocol_threshold"),
        ({"criterion": "bits"}, "criterion"),
        ({"protocols": "yes"}, "protocols"),
    ],
)
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=f"AggregateConfig.{field}"):
        AggregateConfig(**kwargs)


def test_thresholds_round_like_aguri3():
    cfg = AggregateConfig()
    assert cfg.address_limits(449174, 659) == (4492, 7)  # ceil(1%)
    assert cfg.address_limits(100, 100) == (1, 1)  # exactly 1%, no float drift
    # protocol: ceil(1%) then × 4, not ceil(4%)
    assert cfg.protocol_limits(101, 101) == (8, 8)
    assert AggregateConfig(protocol_threshold=0.05).protocol_limits(101, 101) == (10, 10)
    assert AggregateConfig(protocol_threshold=0.03).protocol_limits(101, 101) == (6, 6)
    assert AggregateConfig(protocol_threshold=0.025).protocol_limits(101, 101) == (3, 3)


@pytest.mark.parametrize("criterion", ["byte", "packet"])
def test_single_counter_criteria(mawi_seconds, criterion):
    packets = mawi_seconds[min(mawi_seconds)]
    cfg = AggregateConfig(criterion=criterion)
    agg = aggregate_second(packets, cfg)
    col = 0 if criterion == "byte" else 1
    limit = cfg.address_limits(agg.total_bytes, agg.total_packets)[col]
    counts = [(a.bytes, a.packets)[col] for a in agg.aggregates]
    assert counts == sorted(counts, reverse=True)  # ranked by that counter
    assert all(c >= limit for a, c in zip(agg.aggregates, counts, strict=True) if a.src_len or a.dst_len)
    assert sum(a.bytes for a in agg.aggregates) == agg.total_bytes


# --- ports as aguri3 files them ---------------------------------------------------------


def _v4(rows):
    p = np.zeros(len(rows), PACKET_DTYPE)
    for i, (src, dst, proto, sport, dport, frag, length) in enumerate(rows):
        p["src"][i] = np.frombuffer(IPV4_MAPPED_PREFIX + bytes(src), np.uint8)
        p["dst"][i] = np.frombuffer(IPV4_MAPPED_PREFIX + bytes(dst), np.uint8)
        p["l3"][i], p["proto"][i], p["sport"][i], p["dport"][i] = 4, proto, sport, dport
        p["frag"][i], p["wire_len"][i], p["ts"][i] = frag, length, i
    return p


def test_fragments_take_the_first_fragments_ports_and_other_protocols_none():
    a, b = (10, 0, 0, 1), (10, 0, 0, 2)
    first = FRAG_FRAGMENT | FRAG_MF
    middle = FRAG_FRAGMENT | FRAG_MF | FRAG_NONFIRST
    last = FRAG_FRAGMENT | FRAG_NONFIRST
    p = _v4(
        [
            (a, b, 17, 53, 4444, first, 1500),
            (a, b, 17, 0, 0, middle, 1500),
            (a, b, 17, 0, 0, last, 500),
            (a, b, 17, 0, 0, last, 500),  # its datagram's first fragment was not seen: no ports
            (a, b, 132, 5000, 5001, 0, 400),  # SCTP: aguri3 reads no ports
        ]
    )
    agg = aggregate_second(p)
    (only,) = agg.aggregates
    labels = {x.label(): (x.bytes, x.packets) for x in only.protocols}
    assert labels == {"[17:53:4444]": (3500, 3), "[17:*:*]": (500, 1), "[132:*:*]": (400, 1)}
    assert abs(sum(x.byte_share for x in only.protocols) - 1) < 1e-9


def test_icmp_type_and_code_are_both_ports():
    p = _v4([((10, 0, 0, 1), (10, 0, 0, 2), 1, 0, 0, 0, 98)] * 3)
    p["icmp_type"], p["icmp_code"] = 3, 1
    (only,) = aggregate_second(p).aggregates
    assert [x.label() for x in only.protocols] == ["[1:769:769]"]


# --- rendering -------------------------------------------------------------------------


def _mapped(*octets):
    return IPV4_MAPPED_PREFIX + bytes(octets)


@pytest.mark.parametrize(
    "addr,plen,family,text",
    [
        (_mapped(1, 2, 3, 4), 32, 4, "1.2.3.4"),
        (_mapped(163, 221, 0, 0), 17, 4, "163.221.0.0/17"),
        (_mapped(0, 0, 0, 0), 0, 4, "*"),
        (bytes(16), 0, 6, "*::"),
        (bytes.fromhex("20010db8000000000000000000000001"), 128, 6, "2001:db8::1"),
        (bytes.fromhex("20010db8000100000000000000000000"), 48, 6, "2001:db8:1::/48"),
        (bytes.fromhex("20010db8000000010000000000000000"), 64, 6, "2001:db8:0:1::/64"),
        (bytes.fromhex("00010000000000000000000000000000"), 16, 6, "1::/16"),
        # aguri3 writes IPv6 with glibc's inet_ntop, quirks included (Python 3.11's ipaddress
        # writes the first two as ::ffff:102:304 and ::102:304):
        (bytes.fromhex("00000000000000000000ffff01020304"), 128, 6, "::ffff:1.2.3.4"),
        (bytes.fromhex("00000000000000000000000001020304"), 128, 6, "::1.2.3.4"),
        (bytes.fromhex("20010db8000000000001000000000001"), 128, 6, "2001:db8::1:0:0:1"),  # first longest run
        (bytes.fromhex("20010db8000000010001000100010001"), 128, 6, "2001:db8:0:1:1:1:1:1"),  # one zero word
        (bytes.fromhex("20010db8000000000000000000000000"), 32, 6, "2001:db8::/32"),
    ],
)
def test_prefixes_render_as_aguri3_writes_them(addr, plen, family, text):
    assert render_prefix(addr, plen, family) == text


@pytest.mark.parametrize(
    "proto,args,label,parsed",
    [
        (6, (443, 16, 0, 0), "[6:443:*]", (6, (443, 443), None)),
        (17, (1024, 6, 53, 16), "[17:1024-2047:53]", (17, (1024, 2047), (53, 53))),
        (0, (0, 0, 0, 0), "[*:*:*]", (None, None, None)),
    ],
)
def test_protocol_labels(proto, args, label, parsed):
    """aguri3's notation; the Aguri-2.0 reader reads it back as the same protocol and port ranges."""
    sp, sl, dp, dl = args
    x = ProtoAggregate(proto, sp, sl, dp, dl, 10, 1, 1.0, 1.0)
    assert x.label() == label
    assert parse_proto_label(label[1:-1]) == parsed


def test_json_rendering_uses_aguri3_address_forms(ours):
    rows = to_json_dict(ours[min(ours)])
    texts = {r["src"] for r in rows} | {r["dst"] for r in rows}
    assert "*" in texts and "163.221.0.0/17" in texts and "163.221.27.217" in texts
    assert all(set(r) == {"src", "dst", "bytes", "packets", "protocols"} for r in rows)
    assert rows[0] == {
        "src": "163.221.27.217",
        "dst": "52.92.66.94",
        "bytes": 121400,
        "packets": 73,
        "protocols": [{"label": "[6:51355:587]", "bytes": 121400, "packets": 73}],
    }


def test_ipv6_traffic_is_aggregated_in_its_own_space():
    p = np.zeros(60, PACKET_DTYPE)
    p["l3"], p["proto"], p["sport"], p["dport"], p["wire_len"] = 6, 6, 443, 50000, 1000
    src = bytes.fromhex("20010db8000100000000000000000001")
    for i in range(60):
        # 50 packets host to host; 10 to 10 interface identifiers of one /64
        dst = (
            bytes.fromhex("20010db8000200000000000000000002")
            if i < 50
            else (bytes.fromhex("20010db8000300000000000000000000")[:15] + bytes([i]))
        )
        p["src"][i] = np.frombuffer(src, np.uint8)
        p["dst"][i] = np.frombuffer(dst, np.uint8)
    agg = aggregate_second(p, AggregateConfig(address_threshold=0.05))
    texts = [(a.src_text, a.dst_text, a.packets) for a in agg.aggregates]
    # The interface identifier is never split: the ten hosts meet at their /64. The
    # host-edge passes took everything, so there is no "*:: *::" (aguri3 -t 5 prints the same).
    assert texts == [("2001:db8:1::1", "2001:db8:2::2", 50), ("2001:db8:1::1", "2001:db8:3::/64", 10)]
    assert agg.input_flows == {4: 0, 6: 11}
    assert [a.spec() for a in agg.aggregates] == [(128, 128), (128, 64)]


# --- the Aguri-2.0 reader --------------------------------------------------------------


@pytest.mark.parametrize(
    "name,blocks,first",
    [
        (AGURI_FILES[0], 79, ("163.221.27.217", "52.92.66.94", 121400, 73)),
        (AGURI_FILES[1], 1, ("23.28.7.45", "202.101.53.1", 2266778, 1572)),
        (AGURI_FILES[2], 1, ("23.28.7.45", "202.101.53.1", 2266778, 1572)),
        (AGURI_FILES[3], 1, ("198.51.100.30", "192.0.2.30", 167, 3)),
    ],
)
def test_reader_on_real_aguri_files(name, blocks, first):
    got = read_aguri_file(DATA / "agurim" / name)
    assert len(got) == blocks
    e = got[0].entries[0]
    assert (e.src, e.dst, e.bytes, e.packets) == first
    assert all(b.entries and all(x.protocols for x in b.entries) for b in got)
    assert all(b.start is not None and b.end is not None and b.end >= b.start for b in got)
    assert all([x.rank for x in b.entries] == list(range(1, len(b.entries) + 1)) for b in got)
    for b in got:  # every protocol label parses
        for x in b.entries:
            for pr in x.protocols:
                assert pr.proto is None or 0 <= pr.proto <= 255


def test_reader_header_fields():
    b = read_aguri_file(AGR)[0]
    assert (b.start, b.end) == (1574312400, 1574312401)  # 2019-11-21 05:00:00 UTC
    assert (b.total_bytes, b.total_packets) == (449174, 659)
    assert b.criteria == "combination (threshold 1% for addresses, 4% for protocol)"
    assert b.input_odflows == {"IPv4": 361, "IPv6": 0}
    e = b.entries[0]
    assert (e.rank, e.byte_pct, e.packet_pct) == (1, 27.03, 11.08)
    (pr,) = e.protocols
    assert (pr.proto, pr.sport, pr.dport, pr.byte_pct) == (6, (51355, 51355), (587, 587), 100.0)
    truth = read_aguri_file(DATA / "agurim" / "example_truth.agr")[0]
    assert truth.total_bytes is None and truth.end - truth.start == 29  # older header: no %total
    assert truth.entries[3].protocols[13].label == "6:443:*"
    # agurim wrote this one in JST: read as epoch seconds with the writer's offset
    tcp = read_aguri_file(DATA / "agurim" / "tcp_patterns.agurim.txt", utc_offset=9 * 3600)[0]
    assert (tcp.start, tcp.end) == (1, 67)
    assert ("2001:db8::2", "2001:db8::1") in {(x.src, x.dst) for x in tcp.entries}


@pytest.mark.parametrize(
    "text,line,what",
    [
        ("%!AGURI-2.0\n[ 1] 1.2.3.4 5.6.7.8: 10 (x%)\t1 (1.00%)\n", 2, "malformed entry"),
        ("[ 1] 1.2.3.4 5.6.7.8: 10 (1.00%)\t1 (1.00%)\n", 1, "before the first"),
        ("%!AGURI-2.0\n\t[6:80:*] 1.00% 1.00%\n", 2, "protocol line without an entry"),
        ("%!AGURI-2.0\n%%StartTime: yesterday\n", 2, "cannot read a time"),
        ("%!AGURI-2.0\n%total: many bytes\n", 2, "malformed %total"),
        ("%!AGURI-2.0\n[ 1] 1.2.3.4 5.6.7.8: 10 (1.00%)\t1 (1.00%)\n\t[6:80:*] 1.00%\n", 3, "malformed protocol line"),
        (
            "%!AGURI-2.0\n[ 1] 1.2.3.4 5.6.7.8: 10 (1.00%)\t1 (1.00%)\n\t[6:x:*] 1.00% 1.00%\n",
            3,
            "malformed protocol label",
        ),
        ("%!AGURI-2.0\n[ 1] 1.2.3.4 5.6.7.8: 10 (1.00%)\t1 (1.00%)\n\t[6:90-80:*] 1.00% 1.00%\n", 3, "bad port range"),
        ("%!AGURI-2.0\nhello\n", 2, "unexpected line"),
    ],
)
def test_reader_names_file_and_line_on_damage(text, line, what):
    with pytest.raises(ValueError, match=rf"bad\.agr:{line}: .*{what}"):
        list(read_aguri(io.StringIO(text), "bad.agr"))
