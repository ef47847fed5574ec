"""Detection, wired once: packet batches → feature path → model → thresholding → outputs.

Every run — capture files, files at their recorded pace, a live interface —
goes through one ``Detector``, so the same packets give the same alert lines
whatever their source.  It knows nothing of where packets come from, of
signals or of systemd; the daemon (``sensor/daemon.py``) drives it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .eve import AlertConfig, alert_records, to_lines
from .model import ModelBundle
from .pipeline import FeaturePipeline, PipelineConfig, PipelineOutput
from .stats import Counters, RunCounters, stats_record
from .threshold import Thresholder
from .zeeklog import format_notices


class Output(Protocol):
    """Where whole lines go: an EVE file or socket, a Zeek log, or one held while the disk is full."""

    def write(self, blob: bytes, kind: str = "event") -> None: ...


@dataclass
class Scoring:
    """What scores windows and decides alerts; swapped whole on reload."""

    bundle: ModelBundle
    threshold: float | None  # None: the bundle's own
    alerts: AlertConfig
    thresholder: Thresholder
    period: float = 60.0  # the thresholding period, written as the Zeek notices' suppress_for

    @property
    def cutoff(self) -> float:
        """The primary head's threshold."""
        return self.bundle.threshold if self.threshold is None else self.threshold

    @property
    def cutoffs(self) -> np.ndarray:
        """Every head's threshold: the bundle's, or the configured one for all of them."""
        if self.threshold is None:
            return self.bundle.thresholds
        return np.full(len(self.bundle.heads), self.threshold)

    @property
    def label(self) -> str:
        return f"{self.bundle.name}@{self.bundle.sha256[:12]}"


class Detector:
    """Feeds batches through the feature path and writes the thresholded alerts."""

    def __init__(self, pipeline: PipelineConfig, scoring: Scoring, eve: Output, notice: Output | None = None):
        self.pipe = FeaturePipeline(pipeline)
        self.scoring = scoring
        self.eve = eve
        self.notice = notice
        self.counters = Counters()
        self.started = time.monotonic()
        self.windows = self.anomalous = self.alerts = 0

    def process(self, batch: np.ndarray) -> None:
        """Count one packet batch and score every window it completes."""
        self.counters.add(batch)
        self._emit(self.pipe.push(batch))

    def tick(self, now_ns: int) -> None:
        """Close seconds by the clock while the link is idle."""
        self._emit(self.pipe.tick(now_ns))

    def finish(self) -> None:
        """End of input: score every window still pending."""
        self._emit(self.pipe.finish())

    def _emit(self, out: PipelineOutput) -> None:
        s = self.scoring
        cutoffs = s.cutoffs
        for w in out.windows:
            scores = s.bundle.score_all(w.x)
            self.windows += len(w)
            self.anomalous += int(np.count_nonzero((scores >= cutoffs).any(axis=1)))
            kept = alert_records(w, scores, cutoffs, s.label, s.alerts, s.thresholder, s.bundle.head_names)
            self.eve.write(to_lines(kept), "alert")
            if self.notice is not None:
                self.notice.write(format_notices(kept, s.period))
            self.alerts += len(kept)

    def stats_event(self, kernel: tuple[int, int, int] | None = None, queue_dropped: int = 0) -> bytes:
        """One EVE ``stats`` line of the counters so far."""
        flows = self.pipe.flows
        fc = flows.counters
        run = RunCounters(
            fc.created,
            len(flows),
            fc.evicted,
            fc.shed,
            self.alerts,
            self.scoring.thresholder.suppressed,
            self.lost_alerts,
            queue_dropped,
            kernel,
        )
        return to_lines([stats_record(self.counters, self.started, run, self.scoring.alerts.host)])

    @property
    def lost_alerts(self) -> int:
        """Alerts an output dropped (held beyond its memory limit)."""
        lost = getattr(self.eve, "lost", None)
        return int(lost["alert"]) if lost is not None else 0

    @property
    def written_alerts(self) -> int:
        """Alerts that reached the EVE output (held ones are not yet, lost ones never)."""
        written = getattr(self.eve, "written", None)
        return int(written["alert"]) if written is not None else self.alerts
