"""The wired feature path: streaming, reordering, delay and bounded memory on real traffic."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.recfunctions import repack_fields

from sensor.capture import read_packets
from sensor.features import AGGREGATE_FEATURES, CONTEXT_FEATURES, FLOW_FEATURES, SCHEMA
from sensor.flows import NS, FlowConfig
from sensor.history import HISTORY_FEATURES
from sensor.pipeline import FeaturePipeline, PipelineConfig, run_files, run_range

from ..conftest import ATTACKS, MAWI_PCAP


def collect(outputs):
    wins = [w for o in outputs for w in o.windows]
    keys = np.concatenate([w.keys for w in wins])
    x = np.concatenate([w.x for w in wins])
    return keys, x


@pytest.fixture(scope="module")
def mawi():
    p = np.concatenate(list(read_packets(MAWI_PCAP)))
    return p[np.argsort(p["ts"], kind="stable")]


@pytest.fixture(scope="module")
def reference(mawi):
    return collect(list(run_files([MAWI_PCAP])))


def feed(packets, batch, config=None):
    pipe = FeaturePipeline(PipelineConfig() if config is None else config)
    outs = [pipe.push(packets[i : i + batch]) for i in range(0, len(packets), batch)]
    outs.append(pipe.finish())
    return pipe, outs


def test_batch_size_does_not_change_a_bit(mawi, reference):
    _, outs = feed(mawi, 777)
    keys, x = collect(outs)
    assert np.array_equal(keys, reference[0])
    assert np.array_equal(x, reference[1])
    assert x.shape[1:] == (3, SCHEMA.size) and np.isfinite(x).all()


def test_reordered_packets_within_slack_still_count(mawi, reference):
    # Reverse the packet order inside 200 ms blocks that straddle second
    # boundaries: each packet is displaced by < 0.2 s, some into the next second.
    block = (mawi["ts"] + NS // 10) // (NS // 5)
    order = np.lexsort((-np.arange(len(mawi)), block))
    shuffled = mawi[order]
    assert (np.diff(shuffled["ts"]) < 0).sum() > 1000
    pipe, outs = feed(shuffled, 1000, PipelineConfig(slack=0.5))
    assert pipe.late_packets == 0
    keys, x = collect(outs)
    assert np.array_equal(keys, reference[0]) and np.allclose(x, reference[1], atol=1e-5)

    strict, _ = feed(shuffled, 1000, PipelineConfig(slack=0.0))
    assert strict.late_packets > 0  # beyond the slack: dropped, and counted


def counted(outs) -> int:
    """IP packets the flow statistics account for."""
    return sum(int(s.flows["pkts_fwd"].sum() + s.flows["pkts_rev"].sum()) for o in outs for s in o.seconds)


def test_one_bogus_future_timestamp_loses_nothing_else(mawi):
    bad = mawi.copy()
    bad["ts"][len(bad) // 2] += 1_000_000 * NS  # eleven days ahead, as a corrupt record might say
    pipe, outs = feed(bad, 4096)
    ip = int(np.count_nonzero(bad["l3"] != 0))
    # Without the restart, every packet after the bogus one would be "late" and dropped.
    assert pipe.late_packets == 0 and pipe.clock_restarts == 1
    assert counted(outs) == ip


def test_captures_given_out_of_order_are_all_counted(mawi):
    later = mawi.copy()
    later["ts"] += 3600 * NS
    pipe, outs = feed(np.concatenate([later, mawi]), 4096)
    assert pipe.late_packets == 0 and pipe.clock_restarts == 1
    assert counted(outs) == 2 * int(np.count_nonzero(mawi["l3"] != 0))
    # Each capture's own windows are what it gives alone (the restart emptied the flow table).
    _, alone = feed(mawi, 4096)
    keys, x = collect(outs)
    ref_keys, ref_x = collect(alone)
    assert np.array_equal(x[len(x) - len(ref_x) :], ref_x)
    # ... and their flows keep ids of their own: a flow id names one flow within a run
    assert len(np.unique(keys["flow_id"])) == 2 * len(np.unique(ref_keys["flow_id"]))


def test_windows_wait_for_the_next_second_only(mawi):
    pipe = FeaturePipeline(PipelineConfig(slack=0.5))
    for i in range(0, len(mawi), 500):
        batch = mawi[i : i + 500]
        out = pipe.push(batch)
        closed_upto = (int(batch["ts"].max()) - pipe._slack_ns) // NS  # seconds < this are closed
        for w in out.windows:
            assert w.sec + 1 < closed_upto  # t+1 has closed ...
        if out.windows:
            assert max(w.sec for w in out.windows) == closed_upto - 2  # ... and no later than that


def test_idle_clock_closes_seconds(mawi):
    pipe = FeaturePipeline()
    first = mawi[mawi["ts"] < mawi["ts"][0] + NS // 2]
    assert pipe.push(first).windows == []
    out = pipe.tick(int(first["ts"].max()) + 3 * NS)
    assert [w.sec for w in out.windows] == [int(first["ts"][0] // NS)]


@pytest.mark.slow
def test_memory_does_not_grow_with_trace_length(mawi):
    """Ten back-to-back copies of the trace (13 minutes): the flow table stays bounded."""
    cfg = PipelineConfig(flows=FlowConfig(idle_timeout=30, active_timeout=300, max_flows=50_000))
    pipe = FeaturePipeline(cfg)
    span = int(mawi["ts"][-1] - mawi["ts"][0]) + NS
    sizes = []
    windows = 0
    for k in range(10):
        copy = mawi.copy()
        copy["ts"] += k * span
        for i in range(0, len(copy), 20_000):
            windows += sum(len(w) for w in pipe.push(copy[i : i + 20_000]).windows)
            sizes.append(len(pipe.flows))
            assert sum(len(p) for p in pipe._pending) <= 25_000
    windows += sum(len(w) for w in pipe.finish().windows)
    assert max(sizes) <= 50_000
    assert max(sizes[len(sizes) // 2 :]) <= 1.1 * max(sizes[: len(sizes) // 2])
    assert pipe.flows.counters.expired_idle > 0 and windows > 10 * 40_000


def test_attack_capture_runs_through(tmp_path):
    keys, x = collect(list(run_files([ATTACKS / "pkt.TCP.synflood.spoofed.pcap"])))
    assert len(keys) > 30_000 and np.isfinite(x).all()
    # A spoofed SYN flood: many new flows, each a lone SYN: fraction of SYN is 1.
    syn = SCHEMA.index("frac_syn")
    assert np.median(x[:, 1, syn]) == 1.0


def test_a_scan_carries_its_header_anomalies_and_its_minute_of_fan_out(reference):
    """nmap's stealth probes (FIN, null, Xmas) are flagged per flow, and the scanner's new peers
    and services over the last minute count up; the MAWI background has neither."""
    keys, x = collect(list(run_files([ATTACKS / "nmap.pcapng"])))
    bad, peers, svcs = (SCHEMA.index(n) for n in ("frac_bad_tcp", "hist_src_peers", "hist_src_services"))
    centre = x[:, 1]
    assert (centre[:, bad] > 0).sum() > 1000
    src = keys["src"].view("S16").ravel()
    values, counts = np.unique(src, return_counts=True)
    scanner = src == values[np.argmax(counts)]
    assert centre[scanner, svcs].max() > np.log1p(500)  # nmap's ports, new within the minute
    assert centre[scanner, peers].max() >= np.log1p(1)
    mawi_keys, mawi_x = reference
    assert (mawi_x[:, 1, bad] > 0).sum() <= 2
    assert np.quantile(mawi_x[:, 1, svcs], 0.99) < centre[scanner, svcs].max()


def cut(path, start: int, end: int, length: int, warm_up: int):
    """The windows of ``path`` extracted range by range, as a split trace's tasks do."""
    outs = []
    for a in range(start, end, length):
        outs += run_range(str(path), a, min(a + length, end), warm_up)
    return collect(outs)


def test_ranges_with_the_whole_past_as_warm_up_are_the_uncut_run(reference):
    keys, _ = reference
    first, last = int(keys["sec"].min()), int(keys["sec"].max())
    for length in (9, 40):  # nine ranges, two
        got = cut(MAWI_PCAP, first, last + 1, length, warm_up=last - first + 2)
        assert np.array_equal(got[0], reference[0]) and np.array_equal(got[1], reference[1]), length


def _names(keys):
    """Each window's key without its flow id (ids are per run): 5-tuple, start, second, totals."""
    packed = repack_fields(keys[[n for n in keys.dtype.names if n != "flow_id"]])
    return packed.view(f"V{packed.dtype.itemsize}")


def _endpoints(keys):
    """(unordered endpoints, protocol, second) of each window, as bytes."""
    a = np.concatenate([keys["src"], keys["sport"].astype(">u2").view(np.uint8).reshape(-1, 2)], axis=1)
    b = np.concatenate([keys["dst"], keys["dport"].astype(">u2").view(np.uint8).reshape(-1, 2)], axis=1)
    va, vb = (np.ascontiguousarray(e).view("V18").ravel() for e in (a, b))
    swap = np.argsort(np.stack([va, vb], axis=1), axis=1)[:, 0] == 1
    lo, hi = np.where(swap[:, None], b, a), np.where(swap[:, None], a, b)
    rest = np.stack([keys["proto"].astype(np.int64), keys["sec"]], axis=1).view(np.uint8)
    return np.ascontiguousarray(np.concatenate([lo, hi, rest], axis=1)).view("V52").ravel()


def _by_flow_second(keys, x):
    rows = _names(keys)
    order = np.argsort(rows)
    return rows[order], x[order]


def test_a_short_warm_up_changes_only_state_from_before_it(reference):
    keys, x = reference
    first, last = int(keys["sec"].min()), int(keys["sec"].max())
    length = 25
    want_rows, want_x = _by_flow_second(keys, x)
    flow_level = [SCHEMA.index(n) for n in FLOW_FEATURES + AGGREGATE_FEATURES]
    state = [SCHEMA.index(n) for n in HISTORY_FEATURES + CONTEXT_FEATURES]
    error = {}
    for warm_up in (5, 20):
        gk, gx = cut(MAWI_PCAP, first, last + 1, length, warm_up)
        # Every flow-second is windowed once, cut or not (a flow first seen inside the warm-up
        # may be turned round: its first packet there names the initiator).
        assert np.array_equal(np.sort(_endpoints(gk)), np.sort(_endpoints(keys)))
        rows, gx = _by_flow_second(gk, gx)
        # A flow that began inside the warm-up is the same flow (start, totals) ...
        # (every flow that began after its range's warm-up did; older ones may not have).
        range_start = first + (keys["sec"] - first) // length * length
        seen_whole = keys["start_ts"] >= (range_start - warm_up) * NS
        assert np.isin(_names(keys[seen_whole]), rows).all()
        mine, theirs = np.isin(rows, want_rows), np.isin(want_rows, rows)
        assert mine.sum() == theirs.sum() < len(keys)
        # ... and what it and its second's aggregates look like is the uncut run's, bit for bit.
        assert np.array_equal(gx[mine][:, :, flow_level], want_x[theirs][:, :, flow_level])
        # The decayed history and the link baseline remember less of the seconds before the
        # warm-up the longer it is.
        error[warm_up] = float(np.abs(gx[mine][:, :, state] - want_x[theirs][:, :, state]).mean())
    assert 0 < error[20] < error[5]
