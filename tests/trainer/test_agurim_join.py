"""Joining real aguri3 output to windows, per second."""

from __future__ import annotations

import numpy as np

from sensor.addresses import IPV4_MAPPED_PREFIX
from sensor.pipeline import run_files
from trainer.agurim import AgurimIndex

from ..conftest import DATA, MAWI_PCAP


def test_join_covers_the_seconds_the_file_covers():
    """Windows of seconds in aguri3's file get its aggregates; other seconds are marked -1."""
    index = AgurimIndex([str(DATA / "agurim" / "201911211400_headers.aguri3-i1.agr")])
    wins = [w for o in run_files([MAWI_PCAP]) for w in o.windows]
    assert len(index.by_second) == 79
    joined = 0
    for w in wins[:20]:
        share, entries = index.join(w.sec, w.keys["src"], w.keys["dst"])
        assert np.all(entries > 0) and np.all((share >= 0) & (share <= 1))
        joined += len(w)
    assert joined > 5000
    share, entries = index.join(0, wins[0].keys["src"], wins[0].keys["dst"])
    assert np.all(share == -1) and np.all(entries == 0)


def test_host_pair_aggregate_is_found():
    index = AgurimIndex([str(DATA / "agurim" / "201911211400_headers.aguri3-i1.agr")])
    sec = min(index.by_second)
    src = np.zeros((1, 16), np.uint8)
    dst = np.zeros((1, 16), np.uint8)
    src[0, 10:12] = dst[0, 10:12] = 0xFF
    src[0, 12:] = [163, 221, 27, 217]
    dst[0, 12:] = [52, 92, 66, 94]
    share, _ = index.join(sec, src, dst)
    assert abs(share[0] - 0.2703) < 1e-4  # "[ 1] 163.221.27.217 52.92.66.94: 121400 (27.03%)"


def test_every_entry_is_found_for_flows_inside_it():
    """A flow at each entry's own networks is joined to that entry or a more specific one;
    at a host pair (/32 → /32), to exactly that entry."""
    index = AgurimIndex([str(DATA / "agurim" / "201911211400_headers.aguri3-i1.agr")])
    sec = min(index.by_second)
    entries, _ = index.by_second[sec]

    def inside(prefix) -> np.ndarray:
        family, net, plen = prefix
        # "*" is stored as network 0; an IPv4 flow inside it still has a mapped address
        base = IPV4_MAPPED_PREFIX + bytes(4) if family == 4 and plen == 0 else net.to_bytes(16, "big")
        return np.frombuffer(base, np.uint8)

    src = np.array([inside(sp) for sp, _, _ in entries])
    dst = np.array([inside(dp) for _, dp, _ in entries])
    share, _ = index.join(sec, src, dst)
    assert len(entries) > 50 and np.all(share > 0)
    hosts = [i for i, (sp, dp, _) in enumerate(entries) if sp[2] == dp[2] == 128]
    assert len(hosts) > 10
    assert np.allclose(share[hosts], [entries[i][2] for i in hosts])
