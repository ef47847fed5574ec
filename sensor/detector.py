"""Detection, wired once: packet batches → feature path → model → thresholding → outputs.

Every run — capture files, files at their recorded pace, a live interface —
goes through one ``Detector``, so the same packets give the same alert lines
whatever their source.  It knows nothing of where packets come from, of
signals or of systemd; the daemon (``sensor/daemon.py``) drives it.

With ``scoring_threads=1`` the feature path (the caller's thread) and scoring,
thresholding and output (a thread of its own) overlap on two cores: LiteRT's
``invoke`` releases the GIL.  One FIFO queue between them keeps every second's
windows, and every stats event queued between them, in order, so the lines
written are the same bytes as with ``scoring_threads=0``.  The queue is short:
when scoring falls behind, the feature path waits (and a live capture's own
queue takes up the slack, counting what it drops).  With ``scoring_threads=2`` a
bundle's second head (the normal-behaviour model, three quarters of the scoring cost)
scores on one more thread while the first scores on the scoring thread: each window's
scores are the same numbers, so again the same bytes.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


# Work items between the feature path and the scoring thread: a second's windows, or a
# stats event to build once every window queued before it is scored and written.
_Work = PipelineOutput | Callable[[], None]
QUEUE_ITEMS = 8  # pipeline outputs in flight: enough to keep both threads busy


class _ScoringThread:
    """One thread that runs queued work in order; its first exception stops it and is
    raised again in the feeding thread at its next call."""

    def __init__(self, run: Callable[[PipelineOutput], None]):
        self._run = run
        self._queue: queue.Queue[_Work | None] = queue.Queue(QUEUE_ITEMS)
        self._error: BaseException | None = None
        self._raised = False
        self._thread = threading.Thread(target=self._loop, name="flowlstm-scoring", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                if self._error is None:  # after a failure, what is queued is dropped
                    item() if callable(item) else self._run(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the feeding thread, raised there
                self._error = exc
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _check(self) -> None:
        if self._error is not None and not self._raised:
            self._raised = True
            self.stop()
            raise self._error

    def put(self, item: _Work) -> None:
        self._check()
        self._queue.put(item)  # a failed thread still takes (and drops) items: this returns

    def drain(self) -> None:
        """Wait until everything queued is done; raise what failed."""
        if self._thread.is_alive():
            self._queue.join()
        self._check()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


class Detector:
    """Feeds batches through the feature path and writes the thresholded alerts."""

    def __init__(
        self,
        pipeline: PipelineConfig,
        scoring: Scoring,
        eve: Output,
        notice: Output | None = None,
        scoring_threads: int = 0,
    ):
        self.pipe = FeaturePipeline(pipeline)
        self.scoring = scoring
        self.eve = eve
        self.notice = notice
        self.counters = Counters()
        self.started = time.monotonic()
        self.windows = self.anomalous = self.alerts = 0
        self._scorer = _ScoringThread(self._score) if scoring_threads else None
        self._heads = ThreadPoolExecutor(1, "flowlstm-heads") if scoring_threads > 1 else None

    def process(self, batch: np.ndarray) -> None:
        """Count one packet batch and score every window it completes."""
        self.counters.add(batch)
        self._emit(self.pipe.push(batch))

    def tick(self, now_ns: int) -> None:
        """Close seconds by the clock while the link is idle."""
        self._emit(self.pipe.tick(now_ns))

    def finish(self) -> None:
        """End of input: score every window still pending, and wait until it is written."""
        self._emit(self.pipe.finish())
        self.drain()

    def drain(self) -> None:
        """Wait until every window so far is scored and its alerts written (before the
        outputs or the scoring are swapped, and before a final stats event)."""
        if self._scorer is not None:
            self._scorer.drain()

    def close(self) -> None:
        """Stop the scoring thread (after ``finish``, or on the way out after a failure)."""
        if self._scorer is not None:
            self._scorer.stop()
        if self._heads is not None:
            self._heads.shutdown()

    def write_stats(self, kernel: tuple[int, int, int] | None = None, queue_dropped: int = 0) -> None:
        """Write a stats event after the alerts of every window so far.

        Capture, decoder and flow counts are taken now, in the feeding thread, with the
        kernel's (so kernel = decoded + dropped + in flight holds); alert counts when the
        event is written, after the windows queued before it."""
        run = self._run_counters(kernel, queue_dropped)
        counters = dataclasses.replace(self.counters)
        host = self.scoring.alerts.host

        def write() -> None:
            r = dataclasses.replace(
                run,
                alerts=self.alerts,
                alerts_suppressed=self.scoring.thresholder.suppressed,
                alerts_lost=self.lost_alerts,
            )
            self.eve.write(to_lines([stats_record(counters, self.started, r, host)]), "stats")

        if self._scorer is None:
            write()
        else:
            self._scorer.put(write)

    def _emit(self, out: PipelineOutput) -> None:
        if self._scorer is None:
            self._score(out)
        elif out.windows:
            self._scorer.put(out)

    def _score(self, out: PipelineOutput) -> None:
        s = self.scoring
        cutoffs = s.cutoffs
        for w in out.windows:
            scores = s.bundle.score_all(w.x, self._heads, cutoffs)
            self.windows += len(w)
            self.anomalous += int(np.count_nonzero((scores >= cutoffs).any(axis=1)))
            kept = alert_records(w, scores, cutoffs, s.label, s.alerts, s.thresholder, s.bundle.head_names)
            self.eve.write(to_lines(kept), "alert")
            if self.notice is not None:
                self.notice.write(format_notices(kept, s.period))
            self.alerts += len(kept)

    def _run_counters(self, kernel: tuple[int, int, int] | None, queue_dropped: int) -> RunCounters:
        flows = self.pipe.flows
        fc = flows.counters
        return RunCounters(
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

    def stats_event(self, kernel: tuple[int, int, int] | None = None, queue_dropped: int = 0) -> bytes:
        """One EVE ``stats`` line of the counters so far (call after ``drain``)."""
        run = self._run_counters(kernel, queue_dropped)
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
