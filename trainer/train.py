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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .frame import Block, Scorer
from .model import build_lstm, build_normal

if TYPE_CHECKING:
    from pyspark import RDD, SparkContext


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8
    batch_size: int = 128
    partitions: int = 2
    seed: int = 7
    svm_iterations: int = 100
    svm_reg: float = 0.01
    family_balance: bool = True  # the LSTMs train on frame.balance_plan's draws
    ensemble: int = 1  # supervised LSTMs (seeds seed, seed+1, ...) whose logits are combined
    ensemble_rule: str = "mean"  # trainer.model.ENSEMBLE_RULES: their mean, or the least (each in its scale)
    ignore_features: tuple[str, ...] = ()  # features every model sees as 0 (Normalization.ignored)


def class_weights(benign: int, anomalous: int) -> dict[int, float]:
    """Weights that give both classes equal total weight: scikit-learn's 'balanced' formula
    (n / (2 n_c)), from the counts of each class, as Keras and MLlib take them.

    Both counts must be positive (``run`` refuses a one-class training split first).
    """
    n = benign + anomalous
    return {0: n / (2 * benign), 1: n / (2 * anomalous)}


def _quiet() -> contextlib.redirect_stdout[io.StringIO]:
    """Elephas prints to stdout on every fit; keep the trainer's own progress readable."""
    return contextlib.redirect_stdout(io.StringIO())


def _pace(t0: float, windows: int) -> str:
    """``12.3 s, 45,678 windows/s`` for an epoch over ``windows`` begun at ``t0``."""
    dt = time.perf_counter() - t0
    return f"{dt:.1f} s, {windows / max(dt, 1e-9):,.0f} windows/s"


def _seed(*parts: int) -> int:
    """One 31-bit seed from several numbers (run seed, epoch, partition), the same everywhere."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0]) & 0x7FFFFFFF


def _pairs(parts: RDD[Block], centre: bool, autoencode: bool, seed: int, epoch: int) -> RDD[tuple[np.ndarray, Any]]:
    """What Elephas's workers iterate: (window, target) per window, made in the executors from
    the partition's blocks (Elephas stacks them again into one array per partition).

    Elephas builds each worker's model and calls ``fit`` with no seed, so the shuffle of every
    epoch was the worker process's luck: two runs of one seed on one machine gave other
    bundles.  The worker asks for these pairs after building its model and before ``fit``,
    in the same task, so seeding Keras here, from the run's seed, the epoch and the partition,
    makes the fit reproducible wherever the partition runs (Elephas has no hook for it)."""

    def pairs(index: int, blocks: Iterator[Block]) -> Iterator[tuple[np.ndarray, Any]]:
        import keras

        keras.utils.set_random_seed(_seed(seed, epoch, index))
        for b in blocks:
            x = b.x[:, 1:2] if centre else b.x
            yield from zip(x, x, strict=True) if autoencode else zip(x, b.y.astype(np.float32), strict=True)

    return parts.mapPartitionsWithIndex(pairs)


def _seed_dropout(model: Any, seed: int) -> None:
    """Give the LSTMs' dropout a seed of its own in the model Elephas sends the workers (its
    JSON): unseeded, each worker's masks came from the process's random state."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.LSTM):
            layer.cell.seed = seed


def train_lstm(
    parts: RDD[Block],
    counts: tuple[int, int],
    n_features: int,
    cfg: TrainConfig,
    val: Block | None = None,
    progress: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    label: str = "lstm",
    *,
    centre: bool = False,
) -> Any:
    """Train the paper's LSTM on Spark with Elephas, synchronously: each epoch every partition of
    ``parts`` (``frame.scatter``'s) trains from the current weights and the driver
    averages the updates.  ``counts`` are (benign, anomalous) windows of ``parts``, for the class
    weights; ``n_features`` the features per second; ``val`` a small sample to print the loss on;
    ``centre``: the centre second alone (the no-context baseline).  Returns the Keras model."""
    import keras
    from elephas.spark_model import SparkModel

    keras.utils.set_random_seed(cfg.seed)
    model = build_lstm(n_features, 1 if centre else 3)
    # num_workers=None: Elephas would repartition (a full shuffle) on every fit call; the
    # partitions are already dealt at random, one per Elephas worker.
    spark_model = SparkModel(model, frequency="epoch", mode="synchronous", num_workers=None)
    weights = class_weights(*counts)
    n = sum(counts)
    for epoch in range(1, cfg.epochs + 1):
        t = time.perf_counter()
        rdd = _pairs(parts, centre, autoencode=False, seed=cfg.seed, epoch=epoch)
        _seed_dropout(spark_model.master_network, _seed(cfg.seed, epoch))
        with _quiet():
            spark_model.fit(rdd, epochs=1, batch_size=cfg.batch_size, verbose=0, class_weight=weights)
        msg = f"[{label}] epoch {epoch}/{cfg.epochs} ({_pace(t, n)})"
        if val is not None and len(val):
            xv = val.x[:, 1:2] if centre else val.x
            p = spark_model.master_network.predict(xv, batch_size=4096, verbose=0).ravel()
            eps = 1e-7
            loss = -np.mean(val.y * np.log(p + eps) + (1 - val.y) * np.log(1 - p + eps))
            acc = np.mean((p >= 0.5) == (val.y == 1))
            msg += f" val_loss={loss:.4f} val_acc={acc:.4f}"
        progress(msg)
    return spark_model.master_network


def train_normal(
    sc: SparkContext,
    parts: RDD[Block],
    windows: int,
    cfg: TrainConfig,
    probe: Block,
    progress: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    label: str = "normal",
) -> tuple[Any, np.ndarray, float]:
    """Train the normal-behaviour LSTM on the benign windows of ``parts`` (normalized, dealt
    over partitions; ``windows`` of them) with Elephas; ``probe``, a small sample, shows the loss.

    Returns the trained encoder-decoder, each feature's mean squared reconstruction error
    over ``parts`` (floored at ``NORMAL_MSE_FLOOR``) and the error scale — the largest relative
    error of any window of ``parts``, so that every benign training window scores below 1 − 1/e
    and a false-alert budget of a few in 10,000 flows puts the threshold where float32 still
    resolves scores (a 99.9th percentile put it at 1.0 exactly, and the head never fired):
    what ``normal_scorer`` takes.  Both come from passes over ``parts`` in the executors.
    """
    import keras
    from elephas.spark_model import SparkModel

    keras.utils.set_random_seed(cfg.seed)
    model = build_normal(probe.x.shape[2], probe.x.shape[1])
    spark_model = SparkModel(model, frequency="epoch", mode="synchronous", num_workers=None)
    for epoch in range(1, cfg.epochs + 1):
        t = time.perf_counter()
        rdd = _pairs(parts, centre=False, autoencode=True, seed=cfg.seed, epoch=epoch)
        with _quiet():
            spark_model.fit(rdd, epochs=1, batch_size=cfg.batch_size, verbose=0)
        rec = spark_model.master_network.predict(probe.x, batch_size=4096, verbose=0)
        mse = float(np.mean((rec - probe.x) ** 2))
        progress(f"[{label}] epoch {epoch}/{cfg.epochs} ({_pace(t, windows)}) mse={mse:.4f}")
    trained = spark_model.master_network
    ae = sc.broadcast(Scorer.keras("reconstruction", trained))

    def sums(blocks: Iterator[Block]) -> Iterator[tuple[np.ndarray, int]]:
        for b in blocks:
            sq = (ae.value.output(b.x) - b.x).astype(np.float64) ** 2
            yield sq.sum(axis=(0, 1)), sq.shape[0] * sq.shape[1]

    total, n = parts.mapPartitions(sums).reduce(lambda a, c: (a[0] + c[0], a[1] + c[1]))
    ae.destroy()
    mse_f = np.maximum(total / max(n, 1), NORMAL_MSE_FLOOR)
    return trained, mse_f, error_scale(sc, trained, mse_f, parts)


def error_scale(sc: SparkContext, trained: Any, mse_f: np.ndarray, parts: RDD[Block]) -> float:
    """The largest relative reconstruction error of any window of ``parts`` (normalized):
    ``normal_scorer``'s scale, under which every one of them scores below 1 − 1/e."""
    ae = sc.broadcast(Scorer.keras("reconstruction", trained))

    def worst(blocks: Iterator[Block]) -> Iterator[float]:
        for b in blocks:
            sq = (ae.value.output(b.x) - b.x).astype(np.float64) ** 2
            yield float((sq / mse_f).max()) if len(b) else 0.0

    scale = float(max(parts.mapPartitions(worst).max(), 1e-6))
    ae.destroy()
    return scale


NORMAL_MSE_FLOOR = 1e-3  # a feature reproduced perfectly (constant in training) must not weigh infinitely


def train_svm(sc: SparkContext, blocks: RDD[Block], counts: tuple[int, int], cfg: TrainConfig) -> Any:
    """MLlib LinearSVC on the flattened (normalized) windows of ``blocks``, class-weighted by
    ``counts`` (benign, anomalous); the DataFrame is built in the executors. Returns the model."""
    from pyspark.ml.classification import LinearSVC
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import SparkSession

    spark = SparkSession(sc)
    w = class_weights(*counts)

    def rows(b: Block) -> Iterator[tuple[list[float], float, float]]:
        flat = b.x.reshape(len(b), -1).astype(np.float64)
        for r, t in zip(flat, b.y.tolist(), strict=True):
            yield r.tolist(), float(t), w[int(t)]

    df = spark.createDataFrame(blocks.flatMap(rows), "x array<double>, label double, weight double")
    df = df.select(array_to_vector("x").alias("features"), "label", "weight").repartition(cfg.partitions)
    svc = LinearSVC(maxIter=cfg.svm_iterations, regParam=cfg.svm_reg, weightCol="weight", standardization=False)
    return svc.fit(df)


def squash(z: np.ndarray, temperature: float) -> np.ndarray:
    """sigmoid(z / T) in float32: logits or margins as scores in (0, 1), one threshold machinery for all."""
    out: np.ndarray = (1.0 / (1.0 + np.exp(-np.asarray(z, np.float64) / temperature))).astype(np.float32)
    return out
