"""Feature extraction on Spark: each trace is one task running the sensor's own pipeline.

Nothing here computes a feature.  A task imports ``sensor.pipeline`` — the
code the sensor runs on live traffic — streams one capture file through it,
labels each window's centre flow-second from the MAWILab-format labels, and
writes ``OUT/trace=NAME/part-0.parquet`` in the sensor's window format plus
``label`` and ``taxonomy`` columns.

A finished partition gets ``_SUCCESS.json``, naming what it was extracted from: the
sha256 of the capture, of its label and AGURIM files, the pipeline settings and the
feature-schema version.  A task whose inputs hash the same skips the trace, so
``features`` run again over a growing set of captures (a week of traffic, a day at a
time) extracts only what is new or changed; a task that died mid-way left no marker and
runs again.  Hashing happens in the task, where the file is read anyway, not in the driver.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
import pyarrow as pa

from sensor import __version__
from sensor.errors import UsageError
from sensor.features import SCHEMA
from sensor.flows import FlowConfig
from sensor.parquet import WindowWriter
from sensor.pipeline import PipelineConfig, run_files

if TYPE_CHECKING:
    from pyspark import SparkContext

    from .labels import LabelSet

# The trace name is the partition directory (trace=NAME), not a column: readers
# that infer hive partitions would otherwise see it twice.
LABEL_FIELDS = [
    pa.field("label", pa.int8()),
    pa.field("taxonomy", pa.string()),
]


class TraceSummary(TypedDict):
    """What one extraction task reports."""

    trace: str
    path: str
    windows: int
    anomalous: int
    skipped: bool  # extracted before from the same inputs


MARKER = "_SUCCESS.json"


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _inputs(path: str, label_paths: list[str], agurim_paths: Sequence[str], config: dict[str, Any]) -> dict[str, Any]:
    """What a partition is a function of (the content of every file, not its name or time), as
    it reads back from JSON."""
    inputs = {
        "capture": _sha256(path),
        "labels": [_sha256(p) for p in label_paths],
        "agurim": [_sha256(p) for p in agurim_paths],
        "config": config,
        "schema_version": SCHEMA.version,
        "flowlstm": __version__,
    }
    back: dict[str, Any] = json.loads(json.dumps(inputs))
    return back


def trace_name(path: str) -> str:
    name = os.path.basename(path)
    for ext in (".gz", ".xz", ".bz2", ".pcapng", ".pcap"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name


class _SecondLabels:
    """Labels of flow-seconds, kept until their window has been written."""

    def __init__(self, labels: LabelSet | None) -> None:
        self.labels = labels
        self.by_sec: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __call__(self, sec: int, packets: np.ndarray, flow_rows: np.ndarray) -> None:
        from .labels import label_flow_seconds

        if self.labels is None or len(flow_rows) == 0:
            return
        is_anom, taxonomy = label_flow_seconds(self.labels, packets, flow_rows)
        self.by_sec[sec] = (flow_rows["flow_id"], np.asarray(is_anom, bool), np.asarray(taxonomy, object))

    def take(self, sec: int, flow_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Labels for the flows of second ``sec``, forgetting that second and older ones."""
        y = np.zeros(len(flow_ids), np.int8)
        tax = np.full(len(flow_ids), "", dtype=object)
        got = self.by_sec.get(sec)
        if got is not None:
            ids, is_anom, taxonomy = got
            pos = np.searchsorted(ids, flow_ids)  # flow rows are sorted by flow_id
            y[:] = is_anom[pos]
            tax[:] = np.where(is_anom[pos], taxonomy[pos], "")
        for s in [s for s in self.by_sec if s <= sec]:
            del self.by_sec[s]
        return y, tax


def extract_trace(
    path: str,
    out_dir: str,
    label_paths: list[str],
    config: dict[str, Any],
    agurim_paths: Sequence[str] = (),
    name: str | None = None,
) -> TraceSummary:
    """One Spark task: features of one trace → its Parquet partition (``trace=NAME``, by default
    the file's name).  Returns a summary."""
    from .agurim import AGURIM_FIELDS, AgurimIndex
    from .labels import load_labels

    cfg = PipelineConfig(flows=FlowConfig(**config["flows"]), slack=config["slack"])
    labels = _SecondLabels(load_labels(label_paths) if label_paths else None)
    name = name or trace_name(path)
    part = Path(out_dir) / f"trace={name}"
    part.mkdir(parents=True, exist_ok=True)
    inputs = _inputs(path, label_paths, agurim_paths, config)
    marker = part / MARKER
    try:
        before = json.loads(marker.read_text())
    except (OSError, ValueError):
        before = None
    if isinstance(before, dict) and before.get("inputs") == inputs and (part / "part-0.parquet").is_file():
        got = before["summary"]
        return {"trace": name, "path": path, "windows": got["windows"], "anomalous": got["anomalous"], "skipped": True}
    marker.unlink(missing_ok=True)  # until the new partition is whole
    windows = anomalous = 0
    agurim = AgurimIndex(list(agurim_paths)) if agurim_paths else None
    fields = LABEL_FIELDS + (AGURIM_FIELDS if agurim else [])
    with WindowWriter(str(part / "part-0.parquet"), fields) as writer:
        for out in run_files([path], cfg, labels):
            for w in out.windows:
                y, tax = labels.take(w.sec, w.keys["flow_id"])
                extra: dict[str, np.ndarray] = {}
                if agurim:
                    extra["agurim_share"], extra["agurim_entries"] = agurim.join(w.sec, w.keys["src"], w.keys["dst"])
                writer.write(w, label=y, taxonomy=tax, **extra)
                windows += len(w)
                anomalous += int(y.sum())
    summary: TraceSummary = {"trace": name, "path": path, "windows": windows, "anomalous": anomalous, "skipped": False}
    tmp = part / (MARKER + ".tmp")
    tmp.write_text(json.dumps({"inputs": inputs, "summary": summary}, indent=1))
    os.replace(tmp, marker)
    return summary


def labels_for(trace: str, label_paths: list[str], traces: list[str]) -> list[str]:
    """Label files named after the trace (mix1.pcap ↔ mix1.xml) if there are any, else the
    files named after no trace at all (e.g. a MAWILab day's CSV for all its traces)."""
    own = [p for p in label_paths if Path(p).stem == trace]
    return own or [p for p in label_paths if Path(p).stem not in traces]


def extract(
    sc: SparkContext,
    paths: list[str],
    out_dir: str,
    label_paths: list[str],
    config: PipelineConfig,
    agurim_paths: Sequence[str] = (),
    names: list[str] | None = None,
    labels_by_trace: list[list[str]] | None = None,
) -> list[TraceSummary]:
    """Run ``extract_trace`` for every path as its own Spark task; return the summaries.

    ``names`` (partition names, one per path) and ``labels_by_trace`` (label files, one list
    per path) come from a corpus; without them names are the files' and labels are matched
    by name (``labels_for``).
    """
    names = names or [trace_name(p) for p in paths]
    if len(set(names)) != len(names):
        raise UsageError("two input traces share a name; rename one (the name is the partition key)")
    cfg = {"flows": asdict(config.flows), "slack": config.slack}
    out_dir = os.path.abspath(out_dir)
    per_trace = labels_by_trace or [labels_for(n, label_paths, names) for n in names]
    jobs = [
        (os.path.abspath(p), [os.path.abspath(x) for x in lab], n)
        for p, n, lab in zip(paths, names, per_trace, strict=True)
    ]
    agurim = [os.path.abspath(p) for p in agurim_paths]
    rdd = sc.parallelize(jobs, max(1, len(jobs)))
    summaries: list[TraceSummary] = rdd.map(
        lambda job: extract_trace(job[0], out_dir, job[1], cfg, agurim, job[2])
    ).collect()
    return summaries
