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
