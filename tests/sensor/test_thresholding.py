"""Thresholding (sensor/threshold.py): Suricata's limit/threshold/both semantics, on arrays."""

from __future__ import annotations

import numpy as np
import pytest

from sensor.eve import AlertConfig, alert_records
from sensor.features import SCHEMA
from sensor.threshold import Thresholder, ThresholdRule, default_rules


@pytest.mark.slow
def test_thresholding_bounds_a_37000_source_flood(flood_windows):
    ones = lambda w: np.ones(len(w), np.float32)  # noqa: E731
    flow = AlertConfig(per="flow")  # thresholding on its own: every anomalous window a candidate
    candidates = sum(len(alert_records(w, ones(w), 0.5, "t@0", flow)) for w in flood_windows)
    th = Thresholder(default_rules(count=1, seconds=60))
    kept = [r for w in flood_windows for r in alert_records(w, ones(w), 0.5, "t@0", flow, thresholder=th)]
    folded = sum(int(r["alert"]["metadata"].get("flowlstm_suppressed", ["0"])[0]) for r in kept)
    pending = sum(st.folded for st in th._state.values())
    assert candidates > 30_000
    assert len(kept) <= 10  # one victim, a 24 s capture
    assert len(kept) + th.suppressed == candidates
    assert len(kept) + folded + pending == candidates  # every candidate is accounted for once
    by_src = Thresholder([ThresholdRule("limit", "by_src", 1, 60, 0)], max_per_second=10**6)
    n = sum(len(alert_records(w, ones(w), 0.5, "t@0", flow, thresholder=by_src)) for w in flood_windows)
    assert n > 1000  # spoofed sources: by_src is per source, as in Suricata


def _candidates(n, sid=1):
    return np.full(n, sid, np.int64), np.zeros((n, 16), np.uint8), np.zeros((n, 16), np.uint8)


def test_threshold_and_both_types():
    t = Thresholder([ThresholdRule("threshold", "by_rule", 5, 10, 0)], max_per_second=10**6)
    keep, folded = t.decide(100, *_candidates(12))
    assert np.flatnonzero(keep).tolist() == [4, 9] and folded[keep].tolist() == [4, 4]  # every 5th
    b = Thresholder([ThresholdRule("both", "by_rule", 3, 10, 0)], max_per_second=10**6)
    assert np.flatnonzero(b.decide(100, *_candidates(12))[0]).tolist() == [2]
    assert not b.decide(105, *_candidates(12))[0].any()
    keep, folded = b.decide(111, *_candidates(3))  # next period
    assert np.flatnonzero(keep).tolist() == [2] and folded[2] == 9 + 12 + 2
    with pytest.raises(ValueError, match="track"):
        ThresholdRule("limit", "by_nothing")


def _reference(rules, stream):
    """Suricata's semantics one alert at a time: the plain loop the array version must equal."""
    state, out = {}, []
    for sec, sid, src, dst in stream:
        rule = next((r for r in rules if r.sid == sid), None) or next((r for r in rules if r.sid == 0), None)
        if rule is None:
            out.append((sec, sid, src, dst, 0))
            continue
        key = (sid, {"by_src": src, "by_dst": dst, "by_both": (src, dst), "by_rule": None}[rule.track])
        st = state.get(key)
        if st is None or sec - st["start"] >= rule.seconds:
            st = state[key] = {"start": sec, "hits": 0, "emitted": 0, "folded": st["folded"] if st else 0}
        st["hits"] += 1
        if rule.type == "limit":
            keep = st["emitted"] < rule.count
        elif rule.type == "threshold":
            keep = st["hits"] % rule.count == 0
        else:
            keep = st["hits"] >= rule.count and st["emitted"] == 0
        if keep:
            st["emitted"] += 1
            out.append((sec, sid, src, dst, st["folded"]))
            st["folded"] = 0
        else:
            st["folded"] += 1
    return out


@pytest.mark.parametrize("seed", range(6))
def test_thresholder_equals_the_one_at_a_time_semantics(seed):
    rng = np.random.default_rng(seed)
    types, tracks = ("limit", "threshold", "both"), ("by_src", "by_dst", "by_both", "by_rule")
    rules = [
        ThresholdRule(rng.choice(types), rng.choice(tracks), int(rng.integers(1, 5)), int(rng.integers(1, 6)), sid)
        for sid in (1, 2, 0)
    ]
    t = Thresholder(rules, max_per_second=10**9)
    stream, got = [], []
    for sec in range(100, 140):
        n = int(rng.integers(0, 60))
        sids = rng.integers(1, 5, n)
        src = np.zeros((n, 16), np.uint8)
        dst = np.zeros((n, 16), np.uint8)
        src[:, 15], dst[:, 15] = rng.integers(0, 4, n), rng.integers(0, 3, n)
        stream += [(sec, int(a), int(b), int(c)) for a, b, c in zip(sids, src[:, 15], dst[:, 15], strict=True)]
        keep, folded = t.decide(sec, sids, src, dst)
        got += [(sec, int(sids[i]), int(src[i, 15]), int(dst[i, 15]), int(folded[i])) for i in np.flatnonzero(keep)]
    want = _reference(rules, stream)
    assert got == want
    assert t.emitted == len(want) and t.emitted + t.suppressed == len(stream)


def test_per_second_cap_defers_counts_to_the_next_alert():
    t = Thresholder([ThresholdRule("limit", "by_src", 1, 1, 0)], max_per_second=2)
    sids, src, dst = _candidates(5)
    src[:, 15] = np.arange(5)  # five sources, one alert each allowed, two fit the second
    keep, _ = t.decide(100, sids, src, dst)
    assert keep.tolist() == [True, True, False, False, False] and t.suppressed == 3
    keep, folded = t.decide(101, sids[2:], src[2:], dst[2:])  # next period: the cut ones report themselves
    assert keep.tolist() == [True, True, False] and folded[:2].tolist() == [1, 1]
    assert sum(st.folded for st in t._state.values()) == 2  # source 4: cut twice, still owed


def _to(*last_bytes):
    dst = np.zeros((len(last_bytes), 16), np.uint8)
    dst[:, 15] = last_bytes
    return dst


def test_a_lone_flow_alerts_only_once_its_destination_was_anomalous_in_an_earlier_second():
    t = Thresholder([ThresholdRule("limit", "by_both", 10**6, 60, 0)], max_per_second=10**6, corroborate=60)
    sids, src = np.ones(3, np.int64), np.zeros((3, 16), np.uint8)
    # Second 100: a lone flow to A is held; to B, a lone one is held even beside an alert of
    # several flows in the same second (the same second corroborates nothing), which alerts.
    keep, _ = t.decide(100, sids, src, _to(1, 2, 2), np.array([True, True, False]))
    assert keep.tolist() == [False, False, True] and t.suppressed == 2
    # Second 101: A and B were anomalous a second before; C never was.
    keep, _ = t.decide(101, sids, src, _to(1, 2, 3), np.array([True, True, True]))
    assert keep.tolist() == [True, True, False]
    # Second 161: C was anomalous (held) 60 s before: within; 61 s after that, it is not.
    assert t.decide(161, sids[:1], src[:1], _to(3), np.array([True]))[0].tolist() == [True]
    assert t.decide(222, sids[:1], src[:1], _to(3), np.array([True]))[0].tolist() == [False]
    assert t.suppressed == 4 and t.emitted == 4
    off = Thresholder([ThresholdRule("limit", "by_both", 10**6, 60, 0)], max_per_second=10**6, corroborate=0)
    assert off.decide(100, sids, src, _to(1, 2, 2), np.array([True, True, False]))[0].all()


def test_a_lone_flow_is_corroborated_by_newer_packets_not_by_the_same_packets_seen_again():
    """Windows overlap: a flow active in seconds 10 and 11 has windows at 10 (packets up to 11)
    and 11 (packets up to 11, nothing new); neither corroborates the other.  Packets of a
    later second do; so does a destination's anomaly of any flow in an earlier second."""
    t = Thresholder([ThresholdRule("limit", "by_both", 10**6, 60, 0)], max_per_second=10**6, corroborate=60)
    one, src, lone = np.ones(1, np.int64), np.zeros((1, 16), np.uint8), np.array([True])
    assert t.decide(10, one, src, _to(1), lone, np.array([11]))[0].tolist() == [False]
    assert t.decide(11, one, src, _to(1), lone, np.array([11]))[0].tolist() == [False]
    assert t.decide(12, one, src, _to(1), lone, np.array([13]))[0].tolist() == [True]  # back, two seconds on
    assert t.decide(13, one, src, _to(2), lone, np.array([13]))[0].tolist() == [False]
    assert t.decide(73, one, src, _to(2), lone, np.array([73]))[0].tolist() == [True]  # 60 s on: within
    assert t.decide(140, one, src, _to(2), lone, np.array([140]))[0].tolist() == [False]  # 67 s on: not
    assert t.suppressed == 4 and t.emitted == 2


def test_alert_records_hold_a_lone_flow_until_it_is_back_with_newer_packets():
    """Through alert_records, on MAWI windows: a lone anomalous flow active in two consecutive
    seconds never alerts (its second window shows nothing the first had not seen); one active
    in three alerts once, in its third window."""
    from sensor.pipeline import run_files

    from ..conftest import MAWI_PCAP

    batches = [w for o in run_files([MAWI_PCAP]) for w in o.windows][5:25]
    present = SCHEMA.index("present")
    by_flow: dict[int, list[tuple[int, ...]]] = {}
    for batch in batches:
        flags = (batch.x[:, :, present] > 0).astype(int).tolist()
        for fid, p in zip(batch.keys["flow_id"].tolist(), flags, strict=True):
            by_flow.setdefault(fid, []).append(tuple(p))
    for pattern, alerts in ((((0, 1, 1), (1, 1, 0)), 0), (((0, 1, 1), (1, 1, 1), (1, 1, 0)), 1)):
        fid = next(f for f, ps in by_flow.items() if tuple(ps) == pattern)
        th = Thresholder([ThresholdRule("limit", "by_both", 10**6, 60, 0)], max_per_second=10**6, corroborate=60)
        n = 0
        for batch in batches:
            scores = (batch.keys["flow_id"] == fid).astype(np.float32)  # this flow alone is anomalous
            n += len(alert_records(batch, scores, 0.5, "t@0", AlertConfig(per="flow"), thresholder=th))
        assert n == alerts, (pattern, n)


@pytest.mark.slow
def test_alert_records_hold_lone_flows_not_the_flood_they_belong_to(flood_windows):
    ones = lambda w: np.ones(len(w), np.float32)  # noqa: E731
    secs = flood_windows[:2]
    for per, first in (("aggregate", 1), ("flow", 0)):
        th = Thresholder([ThresholdRule("limit", "by_both", 10**6, 60, 0)], max_per_second=10**6, corroborate=60)
        n = [len(alert_records(w, ones(w), 0.5, "t@0", AlertConfig(per=per), thresholder=th)) for w in secs]
        # Grouped, the victim's flood (thousands of flows) alerts in its first second; one alert per
        # flow, every candidate is lone and the victim had no earlier anomaly: held until the next second.
        assert n[0] == first and n[1] > 0, (per, n)


def test_a_lone_flow_of_bad_fragments_alerts_at_once_and_one_of_ordinary_packets_waits(tmp_path):
    """Fragments ending past 65,535 bytes: a lone flow of them is evidence by itself; a lone flow
    of ordinary packets in the same capture waits for its destination to be anomalous before."""
    from sensor.features import SCHEMA
    from sensor.pipeline import run_files

    from ..conftest import ATTACKS
    from . import pcaptools

    path, n = pcaptools.add_ipv6_extensions(ATTACKS / "amp.dns.RRSIG.fragmented.pcap", tmp_path / "x.pcap", 8190)
    assert n > 0
    bad = SCHEMA.index("frac_bad_frag")
    batches = [w for o in run_files([path]) for w in o.windows]
    cases = []
    for malformed, alerts in ((True, 1), (False, 0)):
        batch = next(w for w in batches if ((w.x[:, 1, bad] > 0) == malformed).any())
        cases.append((batch, int(np.flatnonzero((batch.x[:, 1, bad] > 0) == malformed)[0]), alerts))
    for batch, row, alerts in cases:
        scores = np.zeros(len(batch), np.float32)
        scores[row] = 1
        th = Thresholder([ThresholdRule("limit", "by_both", 10**6, 60, 0)], max_per_second=10**6, corroborate=60)
        got = alert_records(batch, scores, 0.5, "t@0", AlertConfig(per="flow"), thresholder=th)
        assert len(got) == alerts and th.suppressed == 1 - alerts
