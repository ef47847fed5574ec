"""Labelled windows from the extraction's Parquet partitions, and the splits.

Splits never separate windows of the same second: the time split cuts each
trace at a second boundary (earlier seconds train, later ones test); the
leave-family-out split holds out every window of one attack family, so the
model is scored on a family it never saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np

from sensor.features import SCHEMA
from sensor.model import Normalization
from sensor.parquet import read_windows
from sensor.windows import WINDOW_SECONDS

from .labels import taxonomy_family


class Counts(TypedDict):
    """Windows, and how many of them are anomalous."""

    windows: int
    anomalous: int


class DatasetSummary(Counts):
    """``write_summary``'s counts: in all, per trace, and anomalous windows per family."""

    traces: dict[str, Counts]
    families: dict[str, int]


@dataclass
class Windows:
    """Windows with labels: x (N, 3, F), y (N,), and what to split and report by."""

    x: np.ndarray
    y: np.ndarray
    sec: np.ndarray
    trace: np.ndarray
    taxonomy: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask: np.ndarray) -> Windows:
        return Windows(self.x[mask], self.y[mask], self.sec[mask], self.trace[mask], self.taxonomy[mask])

    @property
    def family(self) -> np.ndarray:
        return np.array([taxonomy_family(t) if t else "" for t in self.taxonomy], dtype=object)


def load_windows(features_dir: str | Path) -> Windows:
    """Read every ``trace=*/part-*.parquet`` under ``features_dir``."""
    parts = sorted(Path(features_dir).glob("trace=*/part-*.parquet"))
    if not parts:
        raise FileNotFoundError(f"{features_dir}: no trace=*/part-*.parquet files; run 'flowlstm-train features' first")
    xs, ys, secs, traces, taxes = [], [], [], [], []
    for p in parts:
        wf = read_windows(str(p))
        t = wf.table
        xs.append(wf.x)
        ys.append(t.column("label").to_numpy().astype(np.int8))
        secs.append(t.column("sec").to_numpy())
        traces.append(np.full(t.num_rows, p.parent.name.split("=", 1)[1], dtype=object))
        taxes.append(np.asarray(t.column("taxonomy").to_pylist(), dtype=object))
    x = np.concatenate(xs) if xs else np.zeros((0, WINDOW_SECONDS, SCHEMA.size), np.float32)
    return Windows(x, np.concatenate(ys), np.concatenate(secs), np.concatenate(traces), np.concatenate(taxes))


def time_split(w: Windows, test_fraction: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Per trace, the last ``test_fraction`` of its seconds is test; returns (train, test) masks."""
    test = np.zeros(len(w), bool)
    for name in np.unique(w.trace):
        m = w.trace == name
        secs = np.unique(w.sec[m])
        cut = secs[min(len(secs) - 1, int(np.floor(len(secs) * (1 - test_fraction))))]
        test |= m & (w.sec >= cut)
    return ~test, test


def family_split(w: Windows, family: str) -> tuple[np.ndarray, np.ndarray]:
    """Train on everything but ``family``'s anomalies and their seconds; test on the held-out seconds.

    Benign windows of the held-out seconds go to test too, so FPR is measured
    where the unseen attack runs.
    """
    fam = w.family
    held = fam == family
    held_secs = set(zip(w.trace[held].tolist(), w.sec[held].tolist(), strict=True))
    in_held = np.array([(t, s) in held_secs for t, s in zip(w.trace.tolist(), w.sec.tolist(), strict=True)], bool)
    return ~in_held, in_held


def fit_normalization(x_train: np.ndarray) -> Normalization:
    """Mean and scale per feature over the present rows of the training windows only."""
    rows = x_train.reshape(-1, x_train.shape[-1])
    rows = rows[rows[:, 0] > 0]
    mean = rows.mean(axis=0)
    scale = rows.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    mean[0], scale[0] = 0.0, 1.0  # 'present' stays 0/1
    return Normalization(mean.astype(np.float32), scale.astype(np.float32))


def write_summary(w: Windows) -> DatasetSummary:
    """Counts for the report: windows, anomalies, per trace and per family."""
    out: DatasetSummary = {"windows": int(len(w)), "anomalous": int(w.y.sum()), "traces": {}, "families": {}}
    for name in np.unique(w.trace):
        m = w.trace == name
        out["traces"][str(name)] = {"windows": int(m.sum()), "anomalous": int(w.y[m].sum())}
    fam = w.family
    for f in np.unique(fam[w.y == 1]):
        out["families"][str(f)] = int(((fam == f) & (w.y == 1)).sum())
    return out
