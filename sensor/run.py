"""Offline run: capture files → feature path → model → thresholded EVE alerts.

The same stages the daemon wires for live capture, driven as fast as the files
can be read.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .eve import AlertConfig, alert_records, to_lines
from .model import ModelBundle
from .outputs import EveFile
from .pipeline import FeaturePipeline, PipelineConfig, PipelineOutput
from .progress import FileProgress
from .stats import Counters, stats_record
from .threshold import Thresholder


@dataclass
class RunSummary:
    packets: int = 0
    windows: int = 0
    anomalous: int = 0  # windows at or above the threshold
    alerts: int = 0  # written after thresholding
    suppressed: int = 0
    late_packets: int = 0


def run_files(
    paths: list[str],
    eve: EveFile,
    bundle: ModelBundle,
    threshold: float | None = None,
    pipeline: PipelineConfig = PipelineConfig(),
    alerts: AlertConfig = AlertConfig(),
    thresholder: Thresholder | None = None,
    progress: bool = True,
    notice=None,
    realtime: bool = False,
) -> RunSummary:
    """Score every window of the files and append the alerts, then one ``stats`` event, to ``eve``
    (and the alerts to ``notice``, a Zeek notice log, if given)."""
    started = time.monotonic()
    counters = Counters()
    thr = bundle.threshold if threshold is None else threshold
    label = f"{bundle.name}@{bundle.sha256[:12]}"
    thresholder = thresholder or Thresholder()
    pipe = FeaturePipeline(pipeline)
    summary = RunSummary()

    def emit(out: PipelineOutput) -> None:
        for w in out.windows:
            scores = bundle.score(w.x)
            summary.windows += len(w)
            summary.anomalous += int(np.count_nonzero(scores >= thr))
            kept = alert_records(w, scores, thr, label, alerts, thresholder)
            eve.write(to_lines(kept))
            if notice is not None:
                notice.write_alerts(kept)
            summary.alerts += len(kept)

    with FileProgress(paths, enabled=progress) as files:
        pace = _Pacer() if realtime else None
        for _, batch in files.batches():
            summary.packets += len(batch)
            counters.add(batch)
            for part in pace.slices(batch) if pace else (batch,):
                emit(pipe.push(part))
    emit(pipe.finish())
    summary.suppressed = thresholder.suppressed
    summary.late_packets = pipe.late_packets
    eve.write(to_lines([stats_record(counters, started, pipe.flows.counters.created, len(pipe.flows),
                                     summary.alerts, summary.suppressed, host=alerts.host)]))
    return summary


class _Pacer:
    """Releases a capture's packets at their recorded pace, in 50 ms slices."""

    STEP = 50_000_000  # ns

    def __init__(self):
        self._t0: int | None = None
        self._wall0 = 0.0

    def slices(self, batch):
        if len(batch) == 0:
            return
        ts = batch["ts"]
        if self._t0 is None:
            self._t0, self._wall0 = int(ts[0]), time.monotonic()
        start = 0
        while start < len(batch):
            limit = int(ts[start]) + self.STEP
            end = start + int(np.searchsorted(ts[start:], limit))
            due = self._wall0 + (int(ts[start]) - self._t0) / 1e9
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield batch[start:end]
            start = end
