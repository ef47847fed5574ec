"""The flow stage driven over a real capture one second at a time, for the flow and window tests."""

from __future__ import annotations

import numpy as np

from sensor.capture import read_packets
from sensor.flows import NS, FlowTable


def load(path) -> np.ndarray:
    """Every packet of a capture, in time order."""
    p = np.concatenate(list(read_packets(path)))
    return p[np.argsort(p["ts"], kind="stable")]


def run_seconds(table: FlowTable, packets: np.ndarray) -> np.ndarray:
    """Feed ``table`` one second of packets at a time, expiring as it goes; all its flow-second rows."""
    sec = packets["ts"] // NS
    cuts = np.flatnonzero(np.r_[True, sec[1:] != sec[:-1], True])
    rows = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        rows.append(table.update(packets[a:b], int(sec[a])))
        table.expire(int(sec[a] + 1) * NS)
    return np.concatenate(rows)
