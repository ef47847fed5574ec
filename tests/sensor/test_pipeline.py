"""The wired feature path: streaming, reordering, delay and bounded memory on real traffic."""

from __future__ import annotations

import numpy as np
import pytest

from sensor.capture import read_packets
from sensor.features import SCHEMA
from sensor.flows import NS, FlowConfig
from sensor.pipeline import FeaturePipeline, PipelineConfig, run_files

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
