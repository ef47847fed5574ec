"""Feature extraction on Spark: each trace is one task running the sensor's own pipeline.

Nothing here computes a feature.  A task imports ``sensor.pipeline`` — the
code the sensor runs on live traffic — streams one capture file through it,
labels each window's centre flow-second from the MAWILab-format labels, and
writes ``OUT/trace=NAME/part-0.parquet`` in the sensor's window format plus
``label`` and ``taxonomy`` columns.

A long trace (a 15-minute MAWI file holds tens of millions of packets) is cut into time
ranges, each its own task writing ``part-K.parquet``: the task reads the capture from the
start (a compressed file cannot be entered in the middle) but runs the pipeline only from
a warm-up before its range, and keeps the windows centred in it
(``sensor.pipeline.run_range``).  The cut is by packet time, so a trace whose time does not
run forward is never cut.

A finished partition (every part) gets ``_SUCCESS.json``, naming what it was extracted from: the
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

from .labels import MATCHING
from .spark import stage

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
# A 15-minute MAWI trace becomes three tasks.  The warm-up is five time constants of the host
# history (60 s) and 2.5 of the link baseline (120 s): their memory of the seconds before it
# is down to e^-5 and e^-2.5 of what the uncut run has; flows longer than it are seen
# from mid-stream.  Warm-up seconds cost about 60% of an extracted one (no aggregates,
# features or windows), so a range costs about 1.6x its own length.
SPLIT_SECONDS = 300
WARM_UP_SECONDS = 300


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
        "label_matching": MATCHING,
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


class Range(TypedDict):
    """One time range of a split trace: windows centred in [start, end), state from start − warm_up."""

    part: int
    start: int
    end: int
    warm_up: int


class TraceJob(TypedDict):
    """What the planning task hands the extraction tasks for one trace."""

    trace: str
    path: str
    labels: list[str]
    inputs: dict[str, Any]
    ranges: list[Range] | None  # None: the whole trace in one task
    skipped: TraceSummary | None  # extracted before from the same inputs


def _summary(trace: str, path: str, windows: int, anomalous: int, skipped: bool) -> TraceSummary:
    return {"trace": trace, "path": path, "windows": windows, "anomalous": anomalous, "skipped": skipped}


def _part_path(part_dir: Path, k: int) -> Path:
    return part_dir / f"part-{k}.parquet"


def time_ranges(path: str, split: int, warm_up: int) -> list[Range] | None:
    """Ranges of about ``split`` seconds covering the trace's packets, or None when it fits one
    (or its time does not run forward: a stepped clock or files out of order make the
    pipeline restart its clock, which a cut by packet time could not reproduce)."""
    from sensor.capture import read_packets
    from sensor.flows import NS
    from sensor.pipeline import RESTART_AFTER

    seconds: list[np.ndarray] = []
    high = -(1 << 62)
    for batch in read_packets(path):
        ts = batch["ts"]
        if len(ts) == 0:
            continue
        if (ts < np.maximum.accumulate(np.maximum(ts, high)) - RESTART_AFTER * NS).any():
            return None
        high = max(high, int(ts.max()))
        seconds.append(np.unique(ts // NS))
    if not seconds:
        return None
    occupied = np.unique(np.concatenate(seconds))
    if int(occupied[-1]) - int(occupied[0]) < split:
        return None
    ranges: list[Range] = []
    a = int(occupied[0])
    while True:
        nxt = occupied[occupied >= a + split]
        end = int(nxt[0]) if len(nxt) else int(occupied[-1]) + 1
        ranges.append({"part": len(ranges), "start": a, "end": end, "warm_up": warm_up})
        if not len(nxt):
            return ranges
        a = end


def plan_trace(
    path: str,
    out_dir: str,
    name: str,
    label_paths: list[str],
    agurim_paths: Sequence[str],
    config: dict[str, Any],
    split: int,
    warm_up: int,
) -> TraceJob:
    """One Spark task per trace: hash its inputs, skip it if they are what its partition was
    extracted from, else clear the partition and cut the trace into time ranges (``split``
    seconds each, 0: never)."""
    part = Path(out_dir) / f"trace={name}"
    inputs = _inputs(path, label_paths, agurim_paths, config)
    try:
        before = json.loads((part / MARKER).read_text())
    except (OSError, ValueError):
        before = None
    if isinstance(before, dict) and isinstance(before.get("inputs"), dict):
        # The cut is a function of the capture and the two settings, so a trace extracted
        # before is recognised without reading its packets again; one extracted whole
        # stays whole (exact) whatever the split now.
        was = dict(before["inputs"])
        cut = was.pop("ranges", None)
        same = was == inputs or (cut is not None and was == {**inputs, "split": split, "warm_up": warm_up})
        if same and all(_part_path(part, k).is_file() for k in range(len(cut) if cut else 1)):
            got = before["summary"]
            done = _summary(name, path, got["windows"], got["anomalous"], skipped=True)
            return {
                "trace": name,
                "path": path,
                "labels": label_paths,
                "inputs": before["inputs"],
                "ranges": None,
                "skipped": done,
            }
    ranges = time_ranges(path, split, warm_up) if split else None
    if ranges is not None:
        inputs |= {"split": split, "warm_up": warm_up, "ranges": [[r["start"], r["end"]] for r in ranges]}
    job: TraceJob = {
        "trace": name,
        "path": path,
        "labels": label_paths,
        "inputs": inputs,
        "ranges": ranges,
        "skipped": None,
    }
    part.mkdir(parents=True, exist_ok=True)
    (part / MARKER).unlink(missing_ok=True)  # until the new partition is whole
    for old in part.glob("part-*.parquet"):  # an earlier cut may have had more parts
        old.unlink()
    return job


def extract_part(
    job: TraceJob, rng: Range | None, out_dir: str, config: dict[str, Any], agurim_paths: Sequence[str] = ()
) -> tuple[int, int]:
    """One Spark task: the windows of a trace (or of one of its time ranges) → one Parquet part.
    Returns (windows, anomalous)."""
    from sensor.pipeline import run_range

    from .agurim import AGURIM_FIELDS, AgurimIndex
    from .labels import load_labels

    cfg = PipelineConfig(flows=FlowConfig(**config["flows"]), slack=config["slack"])
    labels = _SecondLabels(load_labels(job["labels"]) if job["labels"] else None)
    part = Path(out_dir) / f"trace={job['trace']}"
    outputs = (
        run_files([job["path"]], cfg, labels)
        if rng is None
        else run_range(job["path"], rng["start"], rng["end"], rng["warm_up"], cfg, labels)
    )
    windows = anomalous = 0
    agurim = AgurimIndex(list(agurim_paths)) if agurim_paths else None
    fields = LABEL_FIELDS + (AGURIM_FIELDS if agurim else [])
    with WindowWriter(str(_part_path(part, rng["part"] if rng else 0)), fields) as writer:
        for out in outputs:
            for w in out.windows:
                y, tax = labels.take(w.sec, w.keys["flow_id"])
                extra: dict[str, np.ndarray] = {}
                if agurim:
                    extra["agurim_share"], extra["agurim_entries"] = agurim.join(w.sec, w.keys["src"], w.keys["dst"])
                writer.write(w, label=y, taxonomy=tax, **extra)
                windows += len(w)
                anomalous += int(y.sum())
    return windows, anomalous


def seal_trace(job: TraceJob, out_dir: str, windows: int, anomalous: int) -> TraceSummary:
    """Mark a trace's partition whole (every part written), naming what it was extracted from."""
    summary = _summary(job["trace"], job["path"], windows, anomalous, skipped=False)
    part = Path(out_dir) / f"trace={job['trace']}"
    tmp = part / (MARKER + ".tmp")
    tmp.write_text(json.dumps({"inputs": job["inputs"], "summary": summary}, indent=1))
    os.replace(tmp, part / MARKER)
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
    split: int = SPLIT_SECONDS,
    warm_up: int = WARM_UP_SECONDS,
) -> list[TraceSummary]:
    """Extract every path on Spark; return the summaries.

    Three stages: one planning task per trace (hashes, skip or clear, cut into time ranges
    of ``split`` seconds with ``warm_up`` seconds of state before each), one extraction task
    per trace or range, one task per trace marking its partition whole.  ``names``
    (partition names, one per path) and ``labels_by_trace`` (label files, one list per path)
    come from a corpus; without them names are the files' and labels are matched by name
    (``labels_for``).
    """
    names = names or [trace_name(p) for p in paths]
    if len(set(names)) != len(names):
        raise UsageError("two input traces share a name; rename one (the name is the partition key)")
    cfg = {"flows": asdict(config.flows), "slack": config.slack}
    out_dir = os.path.abspath(out_dir)
    per_trace = labels_by_trace or [labels_for(n, label_paths, names) for n in names]
    traces = [
        (os.path.abspath(p), [os.path.abspath(x) for x in lab], n)
        for p, n, lab in zip(paths, names, per_trace, strict=True)
    ]
    agurim = [os.path.abspath(p) for p in agurim_paths]
    with stage(sc, f"[features] hashing and planning {len(traces)} traces"):
        jobs: list[TraceJob] = (
            sc.parallelize(traces, max(1, len(traces)))
            .map(lambda t: plan_trace(t[0], out_dir, t[2], t[1], agurim, cfg, split, warm_up))
            .collect()
        )
    whole: list[Range | None] = [None]
    todo = [(j, r) for j in jobs if j["skipped"] is None for r in (j["ranges"] or whole)]
    counts: dict[str, list[int]] = {j["trace"]: [0, 0] for j in jobs}
    if todo:
        fresh_traces = sum(j["skipped"] is None for j in jobs)
        with stage(sc, f"[features] extracting {len(todo)} parts of {fresh_traces} traces") as st:
            done = (
                sc.parallelize(todo, len(todo))
                .map(lambda jr: (jr[0]["trace"], extract_part(jr[0], jr[1], out_dir, cfg, agurim)))
                .collect()
            )
            for trace, (w, a) in done:
                counts[trace][0] += w
                counts[trace][1] += a
            st.windows = sum(c[0] for c in counts.values())
    fresh = [(j, counts[j["trace"]]) for j in jobs if j["skipped"] is None]
    sealed = {
        s["trace"]: s
        for s in (
            sc.parallelize(fresh, max(1, len(fresh))).map(lambda jc: seal_trace(jc[0], out_dir, *jc[1])).collect()
            if fresh
            else []
        )
    }
    return [j["skipped"] or sealed[j["trace"]] for j in jobs]
