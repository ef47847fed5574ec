"""Window assembly on the real MAWI flow-seconds: alignment, presence, timing."""

from __future__ import annotations

import numpy as np
import pytest

from sensor.flows import FlowConfig, FlowTable
from sensor.windows import WindowAssembler, window_keys

from ..conftest import MAWI_PCAP
from .flowseconds import load, run_seconds


@pytest.fixture(scope="module")
def mawi_rows():
    return run_seconds(FlowTable(FlowConfig()), load(MAWI_PCAP))


def tag(rows):
    """Feature rows that name their own flow and second: [present, flow_id, sec]."""
    return np.stack([np.ones(len(rows)), rows["flow_id"].astype(float), rows["sec"].astype(float)], axis=1).astype(
        np.float32
    )


def test_windows_align_neighbouring_seconds(mawi_rows):
    asm = WindowAssembler(3)
    secs = np.unique(mawi_rows["sec"])
    emitted = []
    for s in secs:
        rows = mawi_rows[mawi_rows["sec"] == s]
        out = asm.push(int(s), window_keys(rows), tag(rows))
        # Pushing second s completes exactly the windows centred on s-1.
        assert [w.sec for w in out] in ([], [int(s) - 1])
        emitted += out
    emitted += asm.flush()
    assert sum(len(w) for w in emitted) == len(mawi_rows)
    present = {(int(r["flow_id"]), int(r["sec"])) for r in mawi_rows[["flow_id", "sec"]]}
    checked_gap = checked_full = 0
    for w in emitted:
        assert np.all(w.x[:, 1, 0] == 1) and np.all(w.x[:, 1, 2] == w.sec)
        for i, fid in enumerate(w.keys["flow_id"].tolist()):
            for col, s in ((0, w.sec - 1), (2, w.sec + 1)):
                row = w.x[i, col]
                if (fid, s) in present:
                    assert row[0] == 1 and row[1] == np.float32(fid) and row[2] == s
                    checked_full += 1
                else:
                    assert not row.any()
                    checked_gap += 1
    assert checked_full > 1000 and checked_gap > 1000


def test_silent_second_still_closes_windows(mawi_rows):
    """A second without packets, pushed empty, emits the windows before it."""
    asm = WindowAssembler(3)
    s0 = int(mawi_rows["sec"].min())
    rows = mawi_rows[mawi_rows["sec"] == s0]
    assert asm.push(s0, window_keys(rows), tag(rows)) == []
    out = asm.push(s0 + 1, window_keys(rows[:0]), tag(rows[:0]))
    assert len(out) == 1 and out[0].sec == s0 and len(out[0]) == len(rows)
    assert not out[0].x[:, 2].any()


def test_seconds_must_increase(mawi_rows):
    asm = WindowAssembler(3)
    rows = mawi_rows[:0]
    asm.push(10, window_keys(rows), tag(rows))
    with pytest.raises(ValueError, match="pushed after"):
        asm.push(10, window_keys(rows), tag(rows))
