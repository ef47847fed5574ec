"""A flow's identity across the mixes it is replayed in (what the false-alert budget counts)."""

from __future__ import annotations

import numpy as np


def test_a_background_flow_has_one_identity_in_every_mix_it_is_replayed_in():
    """The false-alert budget counts flows: a background's flow replayed in fourteen mixes is one
    flow of that network, not fourteen (a window's trace and flow id differ from mix to mix)."""
    import pyarrow as pa

    from trainer.dataset import flow_identity

    t = pa.table(
        {
            "src": ["10.0.0.1", "10.0.0.1", "10.0.0.1", "2001:db8::1", "10.0.0.2"],
            "dst": ["192.0.2.9", "192.0.2.9", "192.0.2.9", "2001:db8::2", "192.0.2.9"],
            "sport": [40000, 40000, 40000, 40000, 40000],
            "dport": [443, 443, 443, 443, 443],
            "proto": [6, 6, 6, 6, 6],
            "start_ts": [5, 5, 6, 5, 5],
            "flow_id": [1, 77, 1, 2, 3],  # ids are per trace: they say nothing across traces
        }
    )
    ident = flow_identity(t, np.arange(5))
    assert ident[0] == ident[1]  # the same flow in two traces
    assert len(set(ident[[0, 2, 3, 4]].tolist())) == 4  # another start, another family, another host
    assert np.array_equal(flow_identity(t, np.array([4, 0])), ident[[4, 0]])
