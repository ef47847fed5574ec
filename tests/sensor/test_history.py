"""Host history: minute-scale counts and regularity of flow starts, against plain recomputations."""

from __future__ import annotations

import ipaddress
import math

import numpy as np
import pytest

from sensor.addresses import address_bytes
from sensor.flows import FLOW_SECOND_DTYPE, NS, FlowConfig, FlowTable
from sensor.history import HISTORY_FEATURES, TAU, HistoryConfig, HostHistory

from ..conftest import MAWI_PCAP
from .flowseconds import load, run_seconds

COL = {name: i for i, name in enumerate(HISTORY_FEATURES)}
T0 = 1_600_000_000


def _addr(text: str) -> np.ndarray:
    return np.frombuffer(address_bytes(ipaddress.ip_address(text)), dtype=np.uint8)


def _rows(starts: list[tuple[float, str, str, int]]) -> dict[int, np.ndarray]:
    """Flow rows that start at (time s, src, dst, dport), one row each, grouped by second."""
    out: dict[int, list] = {}
    for t, src, dst, dport in starts:
        r = np.zeros(1, dtype=FLOW_SECOND_DTYPE)
        r["sec"], r["start_ts"], r["new"] = int(t), int(t * NS), 1
        r["src"], r["dst"], r["dport"], r["proto"] = _addr(src), _addr(dst), dport, 6
        out.setdefault(int(t), []).append(r)
    return {s: np.concatenate(v) for s, v in sorted(out.items())}


def _run(starts, slots: int = 4096) -> tuple[HostHistory, dict[int, np.ndarray]]:
    h = HostHistory(HistoryConfig(slots=slots))
    got = {}
    for sec, rows in _rows(starts).items():
        got[sec] = h.update(rows, sec)
    return h, got


def test_a_beacon_is_regular_and_counted_over_the_minute():
    period = 2.0
    starts = [(T0 + 0.3 + period * i, "10.0.0.5", "198.51.100.7", 443) for i in range(60)]
    _, got = _run(starts)
    last = got[max(got)][0]
    expected = sum(math.exp(-period * i / TAU) for i in range(60))  # decayed to the latest start
    assert last[COL["hist_pair_flows"]] == pytest.approx(math.log1p(expected), rel=1e-4)
    assert last[COL["hist_pair_gap"]] == pytest.approx(math.log1p(period), rel=1e-4)
    assert last[COL["hist_pair_regular"]] == pytest.approx(1.0, abs=1e-3)
    # One peer, one service, all its flows.
    assert last[COL["hist_src_peers"]] == pytest.approx(math.log1p(math.exp(-(period * 59) / TAU)), rel=1e-3)
    assert last[COL["hist_src_services"]] == last[COL["hist_src_peers"]]
    assert last[COL["hist_src_flows"]] == pytest.approx(last[COL["hist_pair_flows"]], rel=1e-3)


def test_random_starts_are_not_regular():
    rng = np.random.default_rng(3)
    t = T0 + np.cumsum(rng.exponential(2.0, 80))
    _, got = _run([(float(x), "10.0.0.5", "198.51.100.7", 443) for x in t])
    assert 0.2 < got[max(got)][0][COL["hist_pair_regular"]] < 0.8


def test_regularity_needs_three_starts_and_a_gap_two():
    _, got = _run([(T0 + 0.5, "10.0.0.5", "10.0.0.9", 22), (T0 + 3.5, "10.0.0.5", "10.0.0.9", 22)])
    first, second = got[T0][0], got[T0 + 3][0]
    assert first[COL["hist_pair_gap"]] == 0 and first[COL["hist_pair_regular"]] == 0
    assert second[COL["hist_pair_gap"]] == pytest.approx(math.log1p(3.0)) and second[COL["hist_pair_regular"]] == 0


def test_a_slow_scan_reaches_many_new_peers_and_services_over_the_minute():
    starts = [(T0 + i + 0.5, "10.0.0.66", f"10.1.{i // 200}.{i % 200 + 1}", 1000 + i) for i in range(90)]
    _, got = _run(starts)
    last = got[max(got)][0]
    expected = math.log1p(sum(math.exp(-i / TAU) for i in range(90)))  # each second one new peer, decayed
    for name in ("hist_src_flows", "hist_src_peers", "hist_src_services"):
        assert last[COL[name]] == pytest.approx(expected, rel=1e-3), name
    assert last[COL["hist_pair_flows"]] == pytest.approx(math.log1p(1.0))  # each pair once


def test_a_peer_seen_again_within_tau_is_not_new_and_after_tau_is():
    starts = [(T0 + 0.5, "10.0.0.5", "10.0.0.9", 80), (T0 + 30.5, "10.0.0.5", "10.0.0.9", 80)]
    starts += [(T0 + 200.5, "10.0.0.5", "10.0.0.9", 80)]
    _, got = _run(starts)
    at30, at200 = got[T0 + 30][0], got[T0 + 200][0]
    assert at30[COL["hist_src_peers"]] == pytest.approx(math.log1p(math.exp(-30 / TAU)), rel=1e-4)
    assert at200[COL["hist_src_peers"]] == pytest.approx(math.log1p(1 + math.exp(-200 / TAU)), rel=1e-4)


def test_rows_of_ongoing_flows_read_the_state_and_unknown_hosts_read_zero():
    h, _ = _run([(T0 + 0.5, "10.0.0.5", "10.0.0.9", 80)])
    rows = _rows([(T0 + 0.5, "10.0.0.5", "10.0.0.9", 80), (T0 + 0.5, "10.0.0.77", "10.0.0.9", 80)])[T0]
    rows["new"] = 0
    rows["sec"] = T0 + 10
    got = h.update(rows, T0 + 10)
    assert got[0][COL["hist_src_flows"]] == pytest.approx(math.log1p(math.exp(-10 / TAU)), rel=1e-4)
    assert not got[1].any()


def test_the_tables_never_grow_under_a_spoofed_flood():
    h = HostHistory(HistoryConfig(slots=1024))
    sizes = {a.nbytes for a in vars(h).values() if isinstance(a, np.ndarray)}
    rng = np.random.default_rng(0)
    for s in range(5):
        rows = np.zeros(50_000, dtype=FLOW_SECOND_DTYPE)
        rows["src"][:, 10:12] = 0xFF
        rows["src"][:, 12:] = rng.integers(0, 256, (50_000, 4))
        rows["dst"] = _addr("192.0.2.1")
        rows["new"], rows["start_ts"], rows["dport"], rows["proto"] = 1, (T0 + s) * NS, 80, 6
        got = h.update(rows, T0 + s)
        assert np.isfinite(got).all() and (got >= 0).all()
    assert {a.nbytes for a in vars(h).values() if isinstance(a, np.ndarray)} == sizes


def test_on_a_real_capture_every_row_equals_a_plain_recomputation():
    """Per second, the decayed counts of every MAWI flow-second's hosts against dictionaries."""
    rows = run_seconds(FlowTable(FlowConfig()), load(MAWI_PCAP))
    h = HostHistory(HistoryConfig(slots=1 << 20))  # no collisions at this size, so exact
    src_last: dict[bytes, float] = {}
    src_counts: dict[bytes, np.ndarray] = {}
    pair_seen: dict[tuple[bytes, bytes], int] = {}
    svc_seen: dict[tuple[bytes, int, int], int] = {}
    checked = 0
    for sec in np.unique(rows["sec"]):
        fs = rows[rows["sec"] == sec]
        got = h.update(fs, int(sec))
        new = fs[fs["new"] != 0]
        for src in {bytes(r["src"]) for r in new}:
            mine = [r for r in new if bytes(r["src"]) == src]
            pairs = {bytes(r["dst"]) for r in mine}
            fresh_pairs = sum(
                1
                for d in pairs
                if (src, d) not in pair_seen
                or min(int(r["start_ts"]) for r in mine if bytes(r["dst"]) == d) - pair_seen[(src, d)] > TAU * NS
            )
            svcs = {(int(r["dport"]), int(r["proto"])) for r in mine}
            fresh_svcs = sum(1 for p in svcs if (src, *p) not in svc_seen or sec - svc_seen[(src, *p)] > TAU)
            old = src_counts.get(src, np.zeros(3)) * math.exp(-(sec - src_last.get(src, sec)) / TAU)
            src_counts[src] = old + [len(mine), fresh_pairs, fresh_svcs]
            src_last[src] = sec
            for r in mine:
                key = (src, bytes(r["dst"]))
                pair_seen[key] = max(pair_seen.get(key, 0), int(r["start_ts"]))
                svc_seen[(src, int(r["dport"]), int(r["proto"]))] = int(sec)
        for r, g in zip(fs, got, strict=True):
            src = bytes(r["src"])
            want = np.zeros(3)
            if src in src_counts:
                want = np.log1p(src_counts[src] * math.exp(-(sec - src_last[src]) / TAU))
            assert g[:3] == pytest.approx(want, rel=1e-4, abs=1e-5)
            checked += 1
    assert checked == len(rows) > 10_000
