"""The sensor's lifecycle: open → run → reload → drain, for files and live interfaces alike.

One ``Sensor`` runs every ``flowlstm-sensor run``: a source (``sensor/sources.py``)
feeds one ``Detector`` (``sensor/detector.py``), so ``--pcap``, ``--pcap --realtime``
and ``--interface`` write the same alert lines for the same packets.  Everything
the run holds open — model, outputs, capture, metrics endpoint, announcement — is
opened in ``_open`` on one ``ExitStack`` and closed on every way out.

Signals (documented in ``--help``):
  SIGHUP   reopen the outputs (logrotate), re-read the configuration (when the
           sensor has one) and reload the model, all or nothing: a configuration or
           bundle that fails its checks is refused and the running ones stay
  SIGTERM  stop reading, drain pending windows, final stats event (SIGINT likewise)

A live sensor speaks systemd ``Type=notify`` (``sensor/systemd.py``): READY=1 once
capture is open and the model loaded, STATUS= every few seconds, WATCHDOG=1 from
the main loop, RELOADING=1 … READY=1 around a SIGHUP, STOPPING=1 on the way out.
On a live link the outputs hold events in memory while the disk is full
(``HoldingOutput``); a file run stops instead (it can be run again).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from . import settings
from .config import SensorConfig, sensor_config
from .detector import Detector, Output, Scoring
from .errors import FlowlstmError
from .model import ModelBundle
from .outputs import HoldingOutput, open_eve
from .sources import FileSource, LiveSource, open_capture
from .systemd import reloading, sd_notify, watchdog_interval
from .zeeklog import ZeekNoticeLog

log = logging.getLogger("flowlstm.daemon")

# The Prometheus endpoint's metrics: name → (type, help).  docs/daemon.md lists them too.
METRICS = {
    "flowlstm_packets_total": ("counter", "Packets read from the capture."),
    "flowlstm_bytes_total": ("counter", "Wire bytes read from the capture."),
    "flowlstm_windows_scored_total": ("counter", "Windows scored by the model."),
    "flowlstm_alerts_total": ("counter", "Alerts written to the EVE output (not those held or lost)."),
    "flowlstm_alerts_lost_total": ("counter", "Alerts dropped: held beyond the output's memory limit."),
    "flowlstm_alerts_suppressed_total": ("counter", "Alerts folded by thresholding."),
    "flowlstm_queue_dropped_packets_total": ("counter", "Packets dropped: scoring fell behind capture."),
    "flowlstm_kernel_dropped_packets_total": ("counter", "Packets the kernel dropped."),
    "flowlstm_capture_lost_packets_total": (
        "counter",
        "Packets the kernel received that were never read (in a failed handle's buffer, or unread at stop).",
    ),
    "flowlstm_flows_active": ("gauge", "Flows tracked now."),
    "flowlstm_flows_evicted_total": ("counter", "Flows ended early, longest idle first, under the flow cap."),
    "flowlstm_flows_shed_total": ("counter", "Flow-seconds not tracked: the flow cap or memory budget was full."),
    "flowlstm_late_packets_total": ("counter", "Packets later than the slack."),
    "flowlstm_clock_restarts_total": ("counter", "Times packet time went back over a minute (clock steps)."),
    "flowlstm_capture_lag_seconds": ("gauge", "Capture time to processing (pyshark backend)."),
    "flowlstm_capture_up": ("gauge", "1 while the capture is open, 0 while it is being reopened."),
    "flowlstm_output_held_bytes": ("gauge", "EVE bytes held in memory while the output cannot take them."),
    "flowlstm_output_lost_events_total": ("counter", "EVE events dropped: held beyond the memory limit."),
}

STATUS_EVERY = 5.0  # seconds between STATUS= lines
STATS_EVERY = 8.0  # seconds between EVE stats events on a live link, as often as Suricata's default


@dataclass
class RunSummary:
    packets: int
    windows: int
    anomalous: int  # windows at or above the threshold
    alerts: int  # written after thresholding
    suppressed: int
    late_packets: int
    interrupted: bool  # a file run stopped by a signal before its end
    model: str  # the bundle scoring at the end, and its threshold
    threshold: float


Source = FileSource | LiveSource


class OpenedOutput(Output, Protocol):
    """An output the sensor opened itself: reopened on SIGHUP (logrotate), closed on the way out."""

    def reopen(self) -> None: ...

    def close(self) -> None: ...


class Sensor:
    """One run of the sensor.

    ``reconfigure``, when given, builds a fresh configuration on SIGHUP (re-reading
    the configuration file); ``source`` replaces the one the configuration names
    (tests feed the live path from a file this way).
    """

    def __init__(
        self,
        cfg: SensorConfig,
        reconfigure: Callable[[], SensorConfig] | None = None,
        source: Source | None = None,
        progress: bool = True,
    ):
        self.cfg = cfg
        self._reconfigure = reconfigure
        self._given_source = source
        self._progress = progress
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.announcer: Any = None
        self.metrics: Any = None

    # -- open ---------------------------------------------------------------------------------------------

    @staticmethod
    def _open_output(kind: Callable[[str], OpenedOutput], path: str, live: bool) -> OpenedOutput:
        out = kind(path)
        return HoldingOutput(out) if live else out  # live: held, not lost, while the disk is full

    def _open_outputs(self, cfg: SensorConfig, live: bool) -> tuple[OpenedOutput, OpenedOutput | None]:
        """The EVE output and Zeek notice log of ``cfg``; nothing stays open if either fails."""
        eve = self._open_output(open_eve, cfg.eve_path, live)
        try:
            notice = self._open_output(ZeekNoticeLog, cfg.notice_path, live) if cfg.notice_path else None
        except BaseException:
            eve.close()
            raise
        return eve, notice

    def _close_outputs(self) -> None:
        # Held outputs write (or count as lost) what they hold, after the final stats event.
        for out in (self.eve, self.notice):
            if out is not None:
                out.close()

    def _open(self, stack: contextlib.ExitStack) -> None:
        cfg = self.cfg
        bundle = ModelBundle(cfg.model_path)
        if self._given_source is not None:
            self.source = self._given_source
        elif cfg.capture is None:
            self.source = FileSource(cfg.pcaps, self._progress, bool(cfg.values["realtime"]))
        else:
            capture, backend = cfg.capture, cfg.values["capture.backend"]
            self.source = LiveSource(capture.interface, lambda: open_capture(capture, backend))
        stack.callback(self.source.close)
        self.eve, self.notice = self._open_outputs(cfg, self.source.live)
        stack.callback(self._close_outputs)
        scoring = Scoring(bundle, cfg.threshold, cfg.alerts, cfg.thresholder(), cfg.period)
        self.detector = Detector(cfg.pipeline, scoring, self.eve, self.notice, cfg.values["model.scoring-threads"])
        stack.callback(self.detector.close)  # before the outputs close
        if not self.source.live:
            return
        port = cfg.values["metrics.port"]
        if port:
            from .metrics import MetricsServer

            try:
                self.metrics = stack.enter_context(contextlib.closing(MetricsServer(self.collect, port)))
            except OSError as exc:
                raise FlowlstmError(f"metrics port {port}: cannot listen: {exc.strerror}") from None
        if cfg.values["announce"]:
            self._announce(stack)

    def _announce(self, stack: contextlib.ExitStack) -> None:
        from . import __version__
        from .announce import Announcer

        iface = self.source.name
        port = self.cfg.values["metrics.port"]
        name = self.cfg.alerts.host or socket.gethostname()
        try:
            self.announcer = Announcer(
                f"{name}-{iface}",
                port,
                {
                    "version": __version__,
                    "interface": iface,
                    "model_sha256": self.detector.scoring.bundle.sha256,
                    "metrics_port": str(port),
                },
            )
        except Exception as exc:  # noqa: BLE001 - announcing is optional; sensing is not
            log.warning("zeroconf announcement failed: %s", exc)
            return
        stack.callback(self.announcer.close)

    # -- run ----------------------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        """Run until the source ends (files) or a signal stops it (live); then drain and close."""
        with contextlib.ExitStack() as stack:
            self._open(stack)
            stack.enter_context(self._signals())
            self._loop()
            d = self.detector
            d.finish()
            if isinstance(self.eve, HoldingOutput):
                # What the output still cannot take is lost now: count it before the last stats
                # event, so that event (if anything can be written) reports the losses.
                self.eve.flush()
                self.eve.discard()
            self.eve.write(self._stats_event(), "stats")
            log.info("stopped: %s", self.status())
        s = d.scoring.thresholder
        return RunSummary(
            d.counters.pkts,
            d.windows,
            d.anomalous,
            d.alerts,
            s.suppressed,
            d.pipe.late_packets,
            self._stop.is_set() and not self.source.live,
            d.scoring.bundle.name,
            d.scoring.cutoff,
        )

    @contextlib.contextmanager
    def _signals(self):  # type: ignore[no-untyped-def]
        handlers = {
            signal.SIGTERM: lambda *_: self._stop.set(),
            signal.SIGINT: lambda *_: self._stop.set(),
            signal.SIGHUP: lambda *_: self._reload.set(),
        }
        before = {sig: signal.signal(sig, h) for sig, h in handlers.items()}
        try:
            yield
        finally:
            for sig, h in before.items():
                signal.signal(sig, h)

    def _loop(self) -> None:
        live = self.source.live
        if live:
            sd_notify(f"READY=1\nSTATUS=capturing on {self.source.name}, model {self.detector.scoring.bundle.name}")
            log.info("capturing on %s", self.source.name)
        dog = watchdog_interval() if live else None
        next_status = next_dog = time.monotonic()
        next_stats = next_status + STATS_EVERY
        for batch in self.source.batches(self._stop):
            if self._reload.is_set():
                self._do_reload()
            if batch is None:
                now_ns = self.source.clock()
                if now_ns is not None:
                    self.detector.tick(now_ns)
            else:
                self.detector.process(batch)
            if not live:
                continue
            now = time.monotonic()
            if dog and now >= next_dog:
                sd_notify("WATCHDOG=1")
                next_dog = now + dog
            if now >= next_status:
                sd_notify(f"STATUS={self.status()}")
                next_status = now + STATUS_EVERY
            if now >= next_stats:
                self.detector.write_stats(*self._capture_counts())
                next_stats = now + STATS_EVERY
        if live:
            sd_notify("STOPPING=1")

    def _capture_counts(self) -> tuple[tuple[int, int, int] | None, int]:
        """(the kernel's received, dropped, dropped by the interface; packets the source dropped)."""
        k = self.source.kernel_stats()
        kernel = None if k is None else (k.received, k.dropped, k.if_dropped)
        src = self.source
        return kernel, getattr(src, "dropped_packets", 0) + getattr(src, "lost_packets", 0)

    def _stats_event(self) -> bytes:
        return self.detector.stats_event(*self._capture_counts())

    # -- reload -------------------------------------------------------------------------------------------

    def _do_reload(self) -> None:
        self._reload.clear()
        reloading()
        self.detector.drain()  # outputs and scoring are swapped only between seconds
        try:
            self._reload_all()
        finally:
            sd_notify(f"READY=1\nSTATUS={self.status()}")

    def _reload_all(self) -> None:
        for out in (self.eve, self.notice):
            try:
                if out is not None:
                    out.reopen()
            except FlowlstmError as exc:  # the old handle stays open: nothing is lost
                log.error("%s; still writing to the file as it was opened", exc)
        cfg = self.cfg
        if self._reconfigure is not None:
            try:
                cfg = self._reconfigure()
            except Exception as exc:  # noqa: BLE001 - a bad file on SIGHUP must never stop the sensor
                log.error("new configuration refused, the running one stays: %s", _one_line(exc))
        stay = settings.restart_only(self.cfg.values, cfg.values)
        for name in stay:
            log.warning("%s changed; restart the sensor to apply it (the rest is reloaded)", name)
        if stay:
            cfg = sensor_config({**cfg.values, **{k: self.cfg.values[k] for k in stay}})
        # Build everything new before swapping anything, so a refusal leaves the sensor as it was.
        try:
            bundle = ModelBundle(cfg.model_path)
            eve, notice = self.eve, self.notice
            live = self.source.live
            if cfg.eve_path != self.cfg.eve_path:
                eve = self._open_output(open_eve, cfg.eve_path, live)
            if cfg.notice_path != self.cfg.notice_path:
                notice = self._open_output(ZeekNoticeLog, cfg.notice_path, live) if cfg.notice_path else None
        except Exception as exc:  # noqa: BLE001 - whatever a new bundle or output does, the running ones stay
            log.error("reload refused, the loaded model and configuration keep running: %s", _one_line(exc))
            return
        for old, new in ((self.eve, eve), (self.notice, notice)):
            if old is not None and old is not new:
                old.close()
                if isinstance(new, HoldingOutput) and isinstance(old, HoldingOutput):
                    new.continue_counts(old)  # counters never go backwards
        current = self.detector.scoring.thresholder
        thresholder = cfg.thresholder()
        same = [(t.rules, t.max_per_second, t.corroborate) for t in (thresholder, current)]
        if same[0] == same[1]:
            thresholder = current  # unchanged rules: keep their running state
        else:
            thresholder.suppressed, thresholder.emitted = current.suppressed, current.emitted
            log.info("thresholding rules changed; their counts start afresh")
        self.cfg, self.eve, self.notice = cfg, eve, notice
        self.detector.eve, self.detector.notice = eve, notice
        self.detector.scoring = Scoring(bundle, cfg.threshold, cfg.alerts, thresholder, cfg.period)
        if self.announcer is not None:
            try:
                self.announcer.update({"model_sha256": bundle.sha256})
            except Exception as exc:  # noqa: BLE001 - announcing is optional; sensing is not
                log.warning("zeroconf update failed: %s", exc)
        log.info(
            "reloaded: model %s (%s), threshold %.4f", bundle.name, bundle.sha256[:12], self.detector.scoring.cutoff
        )

    # -- reporting ----------------------------------------------------------------------------------------

    def collect(self) -> dict[str, tuple[str, str, float]]:
        """Counters for the Prometheus endpoint: name → (type, help, value), as METRICS lists them."""
        d, src = self.detector, self.source
        k = src.kernel_stats()
        values = {
            "flowlstm_packets_total": d.counters.pkts,
            "flowlstm_bytes_total": d.counters.bytes,
            "flowlstm_windows_scored_total": d.windows,
            "flowlstm_alerts_total": d.written_alerts,
            "flowlstm_alerts_lost_total": d.lost_alerts,
            "flowlstm_alerts_suppressed_total": d.scoring.thresholder.suppressed,
            "flowlstm_queue_dropped_packets_total": getattr(src, "dropped_packets", 0),
            "flowlstm_kernel_dropped_packets_total": k.dropped if k else 0,
            "flowlstm_capture_lost_packets_total": getattr(src, "lost_packets", 0),
            "flowlstm_flows_active": len(d.pipe.flows),
            "flowlstm_flows_evicted_total": d.pipe.flows.counters.evicted,
            "flowlstm_flows_shed_total": d.pipe.flows.counters.shed,
            "flowlstm_late_packets_total": d.pipe.late_packets,
            "flowlstm_clock_restarts_total": d.pipe.clock_restarts,
            "flowlstm_capture_lag_seconds": getattr(src, "lag", 0.0),
            "flowlstm_capture_up": int(getattr(src, "down_since", None) is None),
            "flowlstm_output_held_bytes": getattr(self.eve, "held_bytes", 0),
            "flowlstm_output_lost_events_total": getattr(self.eve, "lost_lines", 0),
        }
        return {name: (*METRICS[name], values[name]) for name in METRICS}

    def status(self) -> str:
        d = self.detector
        return (
            self.source.status() + f"{d.counters.pkts} packets, {d.windows} windows, {d.alerts} alerts, "
            f"{getattr(self.source, 'dropped_packets', 0)} packets dropped (queue)"
        )


def _one_line(exc: BaseException) -> str:
    """An exception as one bounded log line, whatever it holds."""
    text = str(exc) if isinstance(exc, FlowlstmError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."
