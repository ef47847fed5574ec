"""Training on Spark: the paper's LSTM with Elephas, and the baselines on the same split.

- LSTM: Elephas ``SparkModel`` in synchronous mode — every epoch each Spark
  partition trains one epoch from the current weights and the driver averages
  the updates — with class weights against the imbalance.
- No-context LSTM: the same network fed only the centre second (window of 1),
  to measure what the [t−1, t+1] context buys.
- Linear SVM: Spark MLlib ``LinearSVC`` on the flattened normalized windows,
  the paper's comparison.
"""

from __future__ import annotations

import contextlib
import io
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .model import build_lstm


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8
    batch_size: int = 128
    partitions: int = 2
    seed: int = 7
    svm_iterations: int = 100
    svm_reg: float = 0.01
    family_balance: bool = True  # the LSTMs train on dataset.family_balanced_rows


def class_weights(y: np.ndarray) -> dict[int, float]:
    """Weights that give both classes equal total weight: scikit-learn's 'balanced', as Keras and MLlib take them.

    ``y`` must hold both classes (``run`` refuses a one-class training split first).
    """
    from sklearn.utils.class_weight import compute_class_weight

    w = compute_class_weight("balanced", classes=np.array([0, 1]), y=y)
    return {0: float(w[0]), 1: float(w[1])}


def _quiet() -> contextlib.redirect_stdout[io.StringIO]:
    """Elephas prints to stdout on every fit; keep the trainer's own progress readable."""
    return contextlib.redirect_stdout(io.StringIO())


def _pace(t0: float, windows: int) -> str:
    """``12.3 s, 45,678 windows/s`` for an epoch over ``windows`` begun at ``t0``."""
    dt = time.perf_counter() - t0
    return f"{dt:.1f} s, {windows / max(dt, 1e-9):,.0f} windows/s"


def train_lstm(
    sc: Any,
    x: np.ndarray,
    y: np.ndarray,
    cfg: TrainConfig,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
    progress: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    label: str = "lstm",
) -> Any:
    """Train the paper's LSTM on Spark with Elephas; return the Keras model."""
    import keras
    from elephas.spark_model import SparkModel
    from elephas.utils.rdd_utils import to_simple_rdd

    keras.utils.set_random_seed(cfg.seed)
    model = build_lstm(x.shape[2], x.shape[1])
    spark_model = SparkModel(model, frequency="epoch", mode="synchronous", num_workers=cfg.partitions)
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(x))  # shuffle once so each partition sees both classes
    rdd = to_simple_rdd(sc, x[order], y[order].astype(np.float32)).repartition(cfg.partitions)
    rdd.cache()
    weights = class_weights(y)
    for epoch in range(1, cfg.epochs + 1):
        t = time.perf_counter()
        with _quiet():
            spark_model.fit(rdd, epochs=1, batch_size=cfg.batch_size, verbose=0, class_weight=weights)
        msg = f"[{label}] epoch {epoch}/{cfg.epochs} ({_pace(t, len(x))})"
        if x_val is not None and len(x_val):
            p = spark_model.master_network.predict(x_val, batch_size=4096, verbose=0).ravel()
            eps = 1e-7
            assert y_val is not None
            loss = -np.mean(y_val * np.log(p + eps) + (1 - y_val) * np.log(1 - p + eps))
            acc = np.mean((p >= 0.5) == (y_val == 1))
            msg += f" val_loss={loss:.4f} val_acc={acc:.4f}"
        progress(msg)
    rdd.unpersist()
    return spark_model.master_network


def train_normal(
    sc: Any,
    x: np.ndarray,
    cfg: TrainConfig,
    progress: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    label: str = "normal",
) -> tuple[Any, np.ndarray, float]:
    """Train the normal-behaviour LSTM on benign windows ``x`` (normalized) with Elephas.

    Returns the trained encoder-decoder, each feature's mean squared reconstruction error
    over ``x`` (floored at ``NORMAL_MSE_FLOOR``) and the error scale — the largest relative
    error of any window of ``x``, so that every benign training window scores below 1 − 1/e
    and a false-alert budget of a few in 10,000 flows puts the threshold where float32 still
    resolves scores (a 99.9th percentile put it at 1.0 exactly, and the head never fired):
    what ``normal_scorer`` takes.
    """
    import keras
    from elephas.spark_model import SparkModel
    from elephas.utils.rdd_utils import to_simple_rdd

    from .model import build_normal

    keras.utils.set_random_seed(cfg.seed)
    model = build_normal(x.shape[2], x.shape[1])
    spark_model = SparkModel(model, frequency="epoch", mode="synchronous", num_workers=cfg.partitions)
    order = np.random.default_rng(cfg.seed).permutation(len(x))
    rdd = to_simple_rdd(sc, x[order], x[order]).repartition(cfg.partitions)
    rdd.cache()
    probe = x[order[: min(len(x), 20000)]]
    for epoch in range(1, cfg.epochs + 1):
        t = time.perf_counter()
        with _quiet():
            spark_model.fit(rdd, epochs=1, batch_size=cfg.batch_size, verbose=0)
        rec = spark_model.master_network.predict(probe, batch_size=4096, verbose=0)
        mse = float(np.mean((rec - probe) ** 2))
        progress(f"[{label}] epoch {epoch}/{cfg.epochs} ({_pace(t, len(x))}) mse={mse:.4f}")
    rdd.unpersist()
    trained = spark_model.master_network
    rec = trained.predict(x, batch_size=4096, verbose=0)
    sq = (rec - x) ** 2
    mse = np.maximum(sq.mean(axis=(0, 1)), NORMAL_MSE_FLOOR).astype(np.float64)
    rel = (sq / mse).max(axis=(1, 2))
    scale = float(max(rel.max(), 1e-6))
    return trained, mse, scale


NORMAL_MSE_FLOOR = 1e-3  # a feature reproduced perfectly (constant in training) must not weigh infinitely


def predict(model: Any, x: np.ndarray) -> np.ndarray:
    out: np.ndarray = model.predict(x, batch_size=4096, verbose=0).ravel().astype(np.float32)
    return out


def train_svm(sc: Any, x: np.ndarray, y: np.ndarray, cfg: TrainConfig) -> Any:
    """MLlib LinearSVC on flattened windows, class-weighted; returns the fitted model."""
    from pyspark.ml.classification import LinearSVC
    from pyspark.ml.linalg import Vectors
    from pyspark.sql import SparkSession

    spark = SparkSession(sc)
    w = class_weights(y)
    flat = x.reshape(len(x), -1).astype(float)
    rows = [(Vectors.dense(r), float(t), float(w[int(t)])) for r, t in zip(flat, y, strict=True)]
    df = spark.createDataFrame(rows, ["features", "label", "weight"]).repartition(cfg.partitions)
    svc = LinearSVC(maxIter=cfg.svm_iterations, regParam=cfg.svm_reg, weightCol="weight", standardization=False)
    return svc.fit(df)


def svm_margins(svm: Any, x: np.ndarray) -> np.ndarray:
    """The linear SVM's decision margins on (normalized) windows."""
    coef = svm.coefficients.toArray()
    out: np.ndarray = x.reshape(len(x), -1) @ coef + svm.intercept
    return out


def squash(z: np.ndarray, temperature: float) -> np.ndarray:
    """sigmoid(z / T) in float32: logits or margins as scores in (0, 1), one threshold machinery for all."""
    out: np.ndarray = (1.0 / (1.0 + np.exp(-np.asarray(z, np.float64) / temperature))).astype(np.float32)
    return out
