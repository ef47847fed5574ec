"""Typed descriptions of the trainer's jobs, built by the command line (light: no Spark, no TensorFlow)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainJob:
    """What ``flowlstm-train train`` does: where from, where to, and how."""

    features: str  # directory of extracted windows (Parquet, partitioned by trace)
    out: str  # run directory: report, plots, bundle/
    name: str = "flowlstm-default"  # the bundle's name
    master: str = "local[*]"
    epochs: int = 8
    batch_size: int = 128
    partitions: int = 2  # Elephas workers / RDD partitions
    seed: int = 7
    test_fraction: float = 0.3
    target_fpr: float = 0.001
    family_holdout: bool = True  # also train once without each attack family, and test on it
