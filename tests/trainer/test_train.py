"""Class weights against the imbalance, as the LSTM and the SVM are trained with them."""

from __future__ import annotations

import numpy as np

from trainer.dataset import family_balanced_rows
from trainer.train import class_weights


def test_each_class_weighs_half_of_the_training_split():
    y = np.zeros(100_003, np.float32)  # run.py hands the labels over as float32
    y[np.random.default_rng(7).choice(len(y), 1_234, replace=False)] = 1
    w = class_weights(y)
    assert set(w) == {0, 1} and all(type(v) is float for v in w.values())
    assert w == {0: len(y) / (2 * 98_769), 1: len(y) / (2 * 1_234)}
    total = np.where(y == 1, w[1], w[0])
    assert np.isclose(total[y == 0].sum(), len(y) / 2) and np.isclose(total[y == 1].sum(), len(y) / 2)


def test_family_balanced_rows_draw_small_families_up_to_the_mean_and_keep_everything_once():
    y = np.array([0] * 50 + [1] * 90 + [1] * 6 + [1] * 4)
    family = np.array([""] * 50 + ["synflood"] * 90 + ["c2-beacon"] * 6 + ["teardrop"] * 4, dtype=object)
    rows = family_balanced_rows(y, family, seed=3)
    assert np.all(np.diff(rows) >= 0)
    assert set(rows) == set(range(len(y)))  # every row at least once
    picked = family[rows]
    # mean family = (90 + 6 + 4) / 3 = 33.3 -> 34 rows each for the small ones, the big one as it is
    assert (picked == "synflood").sum() == 90 and (picked == "c2-beacon").sum() == 34
    assert (picked == "teardrop").sum() == 34 and (y[rows] == 0).sum() == 50
    assert np.array_equal(rows, family_balanced_rows(y, family, seed=3))


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
