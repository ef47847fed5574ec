"""Typed descriptions of the trainer's jobs, built by the command line (light: no Spark, no TensorFlow)."""

from __future__ import annotations

from dataclasses import dataclass

from sensor.features import LINK_COMPOSITION


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
    false_alert_budget: float = 1.0  # false alerts per 10,000 benign flows the thresholds allow (training data)
    family_holdout: bool = True  # also train once without each attack family, and test on it
    corpus: str | None = None  # a corpus directory: split by its traces instead of by time
    hold_out_families: tuple[str, ...] = ()  # with corpus: attack families never trained on
    hold_out_sources: tuple[str, ...] = ()  # with corpus: benign sources never trained on
    calibration_sources: tuple[str, ...] = ()  # with corpus: benign sources that only set the thresholds
    calibrate_last: float = 0.0  # the last fraction of each training trace's span only sets the thresholds
    max_benign_per_trace: int = 0  # windows kept per trace (0: all): no busy trace outweighs the quiet ones
    max_anomalous_per_trace: int = 0
    min_benign_per_kind: int = 0  # benign windows a trace keeps of each kind (protocol, group destination) at least
    family_balance: bool = True  # supervised LSTMs: small attack families drawn up to the mean family
    baselines: bool = True  # also the no-context LSTM and the linear SVM, for the report and side-by-side bundles
    ensemble: int = 1  # supervised LSTMs combined into the supervised head
    # Features every model is trained (and scored) without.  The link's composition as it is
    # tells networks apart: measured on a network the models never saw (fold B's training side
    # with iot-sentinel held out, docs/model/folds/README.md), trained without it, 2 false
    # alerts on its 7,959 benign flows instead of 11 at 21 instead of 24 of 60 instances (seed
    # 1), 1 and 1 at 15 and 15 (seed 2).
    ignore_features: tuple[str, ...] = LINK_COMPOSITION
    ensemble_rule: str = "mean"  # how the members combine: their logits' mean, or "all" must call it an attack
