"""AGURIM-style aggregation against the original aguri3's output on the same pcap."""
from __future__ import annotations

import io

import numpy as np
import pytest

from sensor.aggregate import AggregateConfig, aggregate_second, match_aggregates, to_json_dict
from sensor.agurim_text import read_aguri, read_aguri_file
from sensor.capture import read_packets
from sensor.flows import NS

from ..conftest import DATA, MAWI_PCAP

AGR = DATA / "agurim" / "201911211400_headers.aguri3-i1.agr"


@pytest.fixture(scope="module")
def mawi_seconds():
    p = np.concatenate(list(read_packets(MAWI_PCAP)))
    p = p[np.argsort(p["ts"], kind="stable")]
    sec = p["ts"] // NS
    cuts = np.flatnonzero(np.r_[True, sec[1:] != sec[:-1], True])
    return {int(sec[a]): p[a:b] for a, b in zip(cuts[:-1], cuts[1:])}


def test_matches_aguri3_second_by_second(mawi_seconds):
    """Same heavy-hitter set, same byte and packet counts, same totals as aguri3 -i 1."""
    ref = {b.start: b for b in read_aguri_file(AGR)}
    assert len(ref) == 79 and set(ref) == set(mawi_seconds)
    same_set = same_counts = 0
    for sec, packets in mawi_seconds.items():
        agg = aggregate_second(packets)
        block = ref[sec]
        if block.total_bytes is not None:  # aguri3's last block has no %total line
            assert (agg.total_bytes, agg.total_packets) == (block.total_bytes, block.total_packets)
        assert agg.input_flows[4] == block.input_odflows["IPv4"]
        ours = {(a.src_text, a.dst_text): (a.bytes, a.packets) for a in agg.aggregates}
        theirs = {(e.src, e.dst): (e.bytes, e.packets) for e in block.entries}
        same_set += set(ours) == set(theirs)
        same_counts += ours == theirs
    rate = same_set / len(ref)
    print(f"aguri3 match: identical heavy-hitter set in {same_set}/{len(ref)} seconds ({rate:.1%}), "
          f"identical counts in {same_counts}")
    assert rate >= 0.95
    assert same_counts == same_set


def test_protocol_breakdown_matches_aguri3(mawi_seconds):
    """Each aggregate's [proto:sport:dport] entries and their shares, as aguri3 prints them."""
    ref = {b.start: b for b in read_aguri_file(AGR)}
    checked = agree = 0
    for sec, packets in mawi_seconds.items():
        theirs = {(e.src, e.dst): e for e in ref[sec].entries}
        for a in aggregate_second(packets).aggregates:
            e = theirs.get((a.src_text, a.dst_text))
            if e is None:
                continue
            ours = {p.label().strip("[]"): (round(100 * p.bytes / a.bytes, 2), round(100 * p.packets / a.packets, 2))
                    for p in a.protocols}
            ref_p = {p.label: (p.byte_pct, p.packet_pct) for p in e.protocols}
            checked += 1
            agree += ours.keys() == ref_p.keys() and all(
                abs(ours[k][0] - ref_p[k][0]) <= 0.011 and abs(ours[k][1] - ref_p[k][1]) <= 0.011 for k in ours
            )
    print(f"protocol breakdowns identical for {agree}/{checked} aggregates")
    assert checked > 3000 and agree / checked >= 0.99


def test_every_packet_is_in_exactly_the_aggregate_that_took_it(mawi_seconds):
    packets = mawi_seconds[min(mawi_seconds)]
    agg = aggregate_second(packets)
    idx = match_aggregates(agg, packets["src"], packets["dst"])
    assert (idx >= 0).all()
    counts = np.bincount(idx, minlength=len(agg))
    nbytes = np.bincount(idx, packets["wire_len"].astype(float), minlength=len(agg))
    assert counts.tolist() == [a.packets for a in agg.aggregates]
    assert nbytes.astype(int).tolist() == [a.bytes for a in agg.aggregates]
    # A pair that sent nothing this second has no aggregate.
    assert match_aggregates(agg, packets["dst"][:1] * 0, packets["dst"][:1])[0] == -1


def test_json_rendering_uses_aguri3_address_forms(mawi_seconds):
    rows = to_json_dict(aggregate_second(mawi_seconds[min(mawi_seconds)]))
    texts = {r["src"] for r in rows} | {r["dst"] for r in rows}
    assert "*" in texts and "163.221.0.0/17" in texts and "163.221.27.217" in texts
    assert all(set(r) == {"src", "dst", "bytes", "packets", "protocols"} for r in rows)


def test_thresholds_change_the_result(mawi_seconds):
    packets = mawi_seconds[min(mawi_seconds)]
    fine = aggregate_second(packets, AggregateConfig(threshold=0.5))
    coarse = aggregate_second(packets, AggregateConfig(threshold=5))
    assert len(fine) > len(aggregate_second(packets)) > len(coarse) >= 1
    with pytest.raises(ValueError, match="percentage"):
        AggregateConfig(threshold=0)


@pytest.mark.parametrize(
    "name,blocks,first",
    [
        ("201911211400_headers.aguri3-i1.agr", 79, ("163.221.27.217", "52.92.66.94", 121400, 73)),
        ("example_truth.agr", 1, ("23.28.7.45", "202.101.53.1", 2266778, 1572)),
        ("example_tested.agr", 1, None),
        ("tcp_patterns.agurim.txt", 1, ("198.51.100.30", "192.0.2.30", 167, 3)),
    ],
)
def test_reader_on_real_aguri_files(name, blocks, first):
    got = read_aguri_file(DATA / "agurim" / name)
    assert len(got) == blocks
    e = got[0].entries[0]
    if first:
        assert (e.src, e.dst, e.bytes, e.packets) == first
    assert all(b.entries and all(x.protocols for x in b.entries) for b in got)


def test_reader_names_file_and_line_on_damage():
    text = "%!AGURI-2.0\n[ 1] 1.2.3.4 5.6.7.8: 10 (x%)\t1 (1.00%)\n"
    with pytest.raises(ValueError, match=r"bad\.agr:2: malformed entry"):
        list(read_aguri(io.StringIO(text), "bad.agr"))
