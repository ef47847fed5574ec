"""Class weights against the imbalance, as the LSTM and the SVM are trained with them."""

from __future__ import annotations

import numpy as np

from trainer.train import class_weights


def test_each_class_weighs_half_of_the_training_split():
    y = np.zeros(100_003, np.float32)  # run.py hands the labels over as float32
    y[np.random.default_rng(7).choice(len(y), 1_234, replace=False)] = 1
    w = class_weights(y)
    assert set(w) == {0, 1} and all(type(v) is float for v in w.values())
    assert w == {0: len(y) / (2 * 98_769), 1: len(y) / (2 * 1_234)}
    total = np.where(y == 1, w[1], w[0])
    assert np.isclose(total[y == 0].sum(), len(y) / 2) and np.isclose(total[y == 1].sum(), len(y) / 2)
