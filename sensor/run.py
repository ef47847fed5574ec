"""Offline run: capture files → feature path → model → thresholded EVE alerts.

The same stages the daemon wires for live capture, driven as fast as the files
can be read.
"""
from __future__ import annotations

from dataclasses import dataclass

import time

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
            recs = alert_records(w, scores, thr, label, alerts)
            summary.windows += len(w)
            summary.anomalous += len(recs)
            kept = thresholder.filter(recs, w.sec)
            eve.write(to_lines(kept))
            if notice is not None:
                notice.write_alerts(kept)
            summary.alerts += len(kept)

    with FileProgress(paths, enabled=progress) as files:
        for _, batch in files.batches():
            summary.packets += len(batch)
            counters.add(batch)
            emit(pipe.push(batch))
    emit(pipe.finish())
    summary.suppressed = thresholder.suppressed
    summary.late_packets = pipe.late_packets
    eve.write(to_lines([stats_record(counters, started, pipe.flows.counters.created, len(pipe.flows),
                                     summary.alerts, summary.suppressed, host=alerts.host)]))
    return summary
