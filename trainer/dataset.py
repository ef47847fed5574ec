"""Labelled windows from the extraction's Parquet partitions, and the splits.

Splits never separate windows of the same second: the time split cuts each
trace at a second boundary (earlier seconds train, later ones test); the
leave-family-out split holds out every window of one attack family, so the
model is scored on a family it never saw.
"""

from __future__ import annotations

import ipaddress
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import pyarrow as pa

from sensor.addresses import address_bytes
from sensor.errors import UsageError
from sensor.hashing import endpoint_order, mix64
from sensor.model import Normalization
from sensor.parquet import read_windows

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
    flow: np.ndarray  # the flow as the network saw it (``flow_identity``): one background flow is one flow in every mix

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask: np.ndarray) -> Windows:
        return Windows(
            self.x[mask], self.y[mask], self.sec[mask], self.trace[mask], self.taxonomy[mask], self.flow[mask]
        )

    @property
    def family(self) -> np.ndarray:
        return np.array([taxonomy_family(t) if t else "" for t in self.taxonomy], dtype=object)


def flow_identity(table: pa.Table, rows: np.ndarray) -> np.ndarray:
    """A uint64 per window row naming its flow by 5-tuple and first packet time, not by the
    trace's flow id: the same background flow in the background and in each of its mixes has
    one identity (inject keeps the background's packets and times), so a false-alert budget
    counts it once, not once per mix; flows of different backgrounds never share one."""
    cols = {c: table.column(c).to_numpy(zero_copy_only=False)[rows] for c in ("src", "dst", "sport", "dport", "proto")}
    addrs = {}
    for c in ("src", "dst"):
        text, inv = np.unique(cols[c].astype(str), return_inverse=True)
        packed = np.array([list(address_bytes(ipaddress.ip_address(a))) for a in text], dtype=np.uint8).reshape(-1, 16)
        addrs[c] = packed[inv.reshape(-1)]
    h, _ = endpoint_order(addrs["src"], addrs["dst"], cols["sport"], cols["dport"], cols["proto"])
    out: np.ndarray = mix64(h, table.column("start_ts").to_numpy()[rows].astype(np.uint64))
    return out


def load_windows(
    features_dir: str | Path,
    traces: set[str] | None = None,
    max_benign: int = 0,
    max_anomalous: int = 0,
    seed: int = 0,
) -> Windows:
    """Read the ``trace=*/part-*.parquet`` partitions under ``features_dir`` (only ``traces``, if given).

    ``max_benign`` / ``max_anomalous`` (0: all) keep at most that many benign / anomalous
    windows of each trace, drawn without replacement by a generator seeded from ``seed`` and
    the trace's name, so a corpus of many busy traces fits the driver and every trace counts.
    """
    parts = sorted(Path(features_dir).glob("trace=*/part-*.parquet"))
    if not parts:
        raise FileNotFoundError(f"{features_dir}: no trace=*/part-*.parquet files; run 'flowlstm-train features' first")
    xs, ys, secs, names, taxes, flows = [], [], [], [], [], []
    for p in parts:
        name = p.parent.name.split("=", 1)[1]
        if traces is not None and name not in traces:
            continue
        wf = read_windows(str(p))
        t = wf.table
        y = t.column("label").to_numpy().astype(np.int8)
        keep = np.arange(len(y))
        if max_benign or max_anomalous:
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            kept = []
            for cls, cap in ((0, max_benign), (1, max_anomalous)):
                idx = np.flatnonzero(y == cls)
                if cap and len(idx) > cap:
                    idx = np.sort(rng.choice(idx, size=cap, replace=False))
                kept.append(idx)
            keep = np.sort(np.concatenate(kept))
        xs.append(wf.x[keep])
        ys.append(y[keep])
        secs.append(t.column("sec").to_numpy()[keep])
        names.append(np.full(len(keep), name, dtype=object))
        taxes.append(np.asarray(t.column("taxonomy").to_pylist(), dtype=object)[keep])
        flows.append(flow_identity(t, keep))
    if not xs:
        raise FileNotFoundError(f"{features_dir}: none of the traces asked for has been extracted")
    x = np.concatenate(xs)
    return Windows(
        x, np.concatenate(ys), np.concatenate(secs), np.concatenate(names), np.concatenate(taxes), np.concatenate(flows)
    )


def family_balanced_rows(y: np.ndarray, family: np.ndarray, seed: int) -> np.ndarray:
    """Row indices for supervised training in which no attack family is drowned by the big ones.

    A flood or a scan gives thousands of anomalous windows a capture, a beacon or a DHCP
    flood a few dozen: trained on the windows as they come, the supervised head learns
    four families and scores the others as benign (recall 0 on ten of fourteen families in
    the default model's own time split before this).  Every benign row is kept once; each
    family with fewer anomalous windows than the mean family is drawn up to that mean, with
    replacement (seeded), the bigger ones are kept as they are.  The order is ascending.
    """
    rng = np.random.default_rng(seed)
    anomalous = np.flatnonzero(y == 1)
    fams, inverse = np.unique(family[anomalous].astype(str), return_inverse=True)
    counts = np.bincount(inverse, minlength=len(fams))
    target = int(np.ceil(counts.mean())) if len(counts) else 0
    extra = [
        rng.choice(anomalous[inverse == k], size=target - n, replace=True) for k, n in enumerate(counts) if n < target
    ]
    return np.sort(np.concatenate([np.arange(len(y)), *extra]))


def time_split(w: Windows, test_fraction: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Per trace, the last ``test_fraction`` of its time span is test; returns (train, test) masks.

    By time, not by count of seconds with windows: a trace whose traffic is dense in one
    stretch (a busy capture placed inside a quiet site) would otherwise put every second
    outside that stretch, and the attacks there, on one side.
    """
    test = np.zeros(len(w), bool)
    for name in np.unique(w.trace):
        m = w.trace == name
        lo, hi = int(w.sec[m].min()), int(w.sec[m].max())
        cut = max(lo + int(np.ceil((hi - lo) * (1 - test_fraction))), lo + 1) if hi > lo else hi
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


@dataclass(frozen=True)
class CorpusSplit:
    """Which corpus traces train and which test, and the families and sources each side has."""

    train: frozenset[str]
    test: frozenset[str]
    families: tuple[str, ...]  # attack families trained on
    sources: tuple[str, ...]  # benign sources trained on
    held_out_families: tuple[str, ...]
    held_out_sources: tuple[str, ...]


def corpus_split(corpus: dict[str, Any], families: Iterable[str] = (), sources: Iterable[str] = ()) -> CorpusSplit:
    """Hold out attack ``families`` and benign ``sources`` of a corpus (``trainer/corpus.py``).

    Training gets the mixes of every other family on backgrounds of every other source, and
    the benign traces of those sources.  Testing gets the mixes of the held-out families on
    held-out backgrounds (all families, or all backgrounds, where nothing of that kind is
    held out) and the benign traces of the held-out sources.  What is neither — a held-out
    family on a training background, say — is used by neither side.
    """
    hf, hs = set(families), set(sources)
    unknown = (hf - set(corpus["families"])) | (hs - set(corpus["sources"]))
    if unknown:
        raise UsageError(f"not in the corpus: {', '.join(sorted(unknown))}")
    train: set[str] = set()
    test: set[str] = set()
    for t in corpus["traces"]:
        seen_src = t["source"] not in hs
        if t["kind"] == "benign":
            (train if seen_src else test).add(t["name"])
        elif seen_src and t["family"] not in hf:
            train.add(t["name"])
        elif (not hf or t["family"] in hf) and (not hs or not seen_src):
            test.add(t["name"])
    fams = tuple(f for f in corpus["families"] if f not in hf)
    srcs = tuple(x for x in corpus["sources"] if x not in hs)
    return CorpusSplit(frozenset(train), frozenset(test), fams, srcs, tuple(sorted(hf)), tuple(sorted(hs)))


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
