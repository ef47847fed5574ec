"""Alert grouping: one alert per anomalous aggregate, checked against the per-flow alerts of the same windows."""

from __future__ import annotations

import ipaddress
from collections import defaultdict

import numpy as np
import pytest

from sensor.addresses import address_bytes
from sensor.aggregate.render import render_prefix
from sensor.eve import AlertConfig, alert_records
from sensor.grouping import FLOW, group_windows
from sensor.pipeline import run_files
from sensor.threshold import Thresholder
from sensor.windows import KEY_DTYPE

from ..conftest import ATTACKS

HEADS = ("supervised", "normal")


def _scores(batch):
    """Two heads: the first fires on every window, the second on every third (by position)."""
    s = np.zeros((len(batch), 2))
    s[:, 0] = 0.9
    s[::3, 1] = 0.8
    return s


def _alerts(batches, per):
    out = []
    for b in batches:
        out += alert_records(b, _scores(b), np.array([0.5, 0.5]), "m", AlertConfig(per=per), heads=HEADS)
    return out


def _key(a):
    kind = a["alert"]["metadata"]["flowlstm_kind"][0]
    if kind in ("flood", "reflection"):
        return a["timestamp"], kind, a["dest_ip"]
    if kind == "scan":
        return a["timestamp"], kind, a["src_ip"]
    return a["timestamp"], kind, a["src_ip"], a["dest_ip"]


def _common(addrs):
    """Longest common prefix of textual addresses, by the ipaddress module."""
    ips = [ipaddress.ip_address(x) for x in addrs]
    bits = ips[0].max_prefixlen
    lo, hi = min(int(i) for i in ips), max(int(i) for i in ips)
    plen = bits - (lo ^ hi).bit_length()
    net = ipaddress.ip_network((lo >> (bits - plen) << (bits - plen), plen) if plen else (0, 0))
    if plen == 0:
        return "*" if bits == 32 else "*::"
    return str(net.network_address) if plen == bits else str(net)


@pytest.mark.parametrize("capture", ["pkt.TCP.synflood.spoofed.pcap", "nmap.pcapng", "amp.TCP.reflection.SYNACK.pcap"])
def test_one_alert_per_aggregate_stands_for_its_flows(capture):
    """Grouping the per-flow alerts by victim / scanner / host pair in Python gives exactly the
    aggregate alerts: their count, members, packets, bytes, representative, scores and prefixes."""
    batches = [w for o in run_files([ATTACKS / capture]) for w in o.windows]
    per_flow = _alerts(batches, FLOW)
    grouped = _alerts(batches, "aggregate")
    expect: dict[tuple[str, ...], list[dict]] = defaultdict(list)
    for a in per_flow:
        expect[_key(a)].append(a)
    assert len(grouped) == len(expect) < len(per_flow)
    for g in grouped:
        members = expect[_key(g)]
        md = g["alert"]["metadata"]
        pkts = [m["flow"]["pkts_toserver"] + m["flow"]["pkts_toclient"] for m in members]
        assert int(md["flowlstm_flows"][0]) == len(members)
        assert int(md["flowlstm_pkts"][0]) == sum(pkts)
        nbytes = sum(m["flow"]["bytes_toserver"] + m["flow"]["bytes_toclient"] for m in members)
        assert int(md["flowlstm_bytes"][0]) == nbytes
        heaviest = members[int(np.argmax(pkts))]  # first of the heaviest, in window order
        assert g["flow_id"] == heaviest["flow_id"] and g["src_ip"] == heaviest["src_ip"]
        assert md["flowlstm_src_prefix"] == [_common([m["src_ip"] for m in members])]
        assert md["flowlstm_dest_prefix"] == [_common([m["dest_ip"] for m in members])]
        scores = np.array([[float(v) for v in m["alert"]["metadata"]["flowlstm_score"]] for m in members])
        assert md["flowlstm_score"] == [f"{v:.4f}" for v in scores.max(axis=0)]
        fired = {h for m in members for h in m["alert"]["metadata"]["flowlstm_head"]}
        assert set(md["flowlstm_head"]) == fired


def test_a_flood_is_one_alert_per_second_for_its_victim(flood_windows):
    alerts = _alerts(flood_windows, "aggregate")
    floods = [a for a in alerts if a["alert"]["metadata"]["flowlstm_kind"] == ["flood"]]
    seconds = {a["timestamp"] for a in floods}
    assert len(floods) == len(seconds) >= 4
    assert {a["dest_ip"] for a in floods} == {"10.10.10.10"}
    assert {a["alert"]["metadata"]["flowlstm_src_prefix"][0] for a in floods} == {"*"}
    assert sum(int(a["alert"]["metadata"]["flowlstm_flows"][0]) for a in floods) > 30_000


def test_thresholding_counts_aggregate_alerts(flood_windows):
    """Thresholding decides on the grouped candidates: one flood alert per victim per period."""
    th = Thresholder()
    out = []
    for b in flood_windows:
        out += alert_records(b, _scores(b), np.array([0.5, 0.5]), "m", AlertConfig(), th, HEADS)
    floods = [a for a in out if a["alert"]["metadata"]["flowlstm_kind"] == ["flood"]]
    assert len(floods) == 1
    assert th.emitted == len(out) and th.suppressed > 0


def _raw(addrs):
    return np.array([list(address_bytes(ipaddress.ip_address(a))) for a in addrs], dtype=np.uint8)


def test_common_prefix_of_ipv6_and_mixed_lengths():
    """Prefixes of IPv6 groups, exact hosts and /0, against the ipaddress module."""
    src = ["2001:db8::1", "2001:db8::ff", "2001:db8:0:1::1", "10.0.0.1", "10.0.0.1", "1.2.3.4", "200.1.1.1"]
    keys = np.zeros(len(src), dtype=KEY_DTYPE)
    keys["src"] = _raw(src)
    keys["dst"] = _raw(["2001:db8::9"] * 3 + ["10.9.9.9"] * 4)
    keys["pkts_fwd"] = [1, 2, 3, 1, 1, 5, 1]
    kinds = np.array(["flood"] * 7, dtype=object)
    ones = np.ones((7, 1))
    g = group_windows(keys, kinds, ones, ones > 0, "aggregate")
    assert len(g) == 2
    got = [render_prefix(g.src_prefix[i].tobytes(), int(g.src_len[i]), int(g.family[i])) for i in range(2)]
    assert got == [_common(src[:3]), _common(src[3:])] == ["2001:db8::/63", "*"]
    assert list(g.rep) == [2, 5] and list(g.members) == [3, 4]


def test_unknown_grouping_is_refused():
    with pytest.raises(ValueError, match="per aggregate or per flow"):
        group_windows(np.zeros(0, dtype=KEY_DTYPE), np.zeros(0), np.zeros((0, 1)), np.zeros((0, 1)), "host")
