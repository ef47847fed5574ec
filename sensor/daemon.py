"""The live sensor: capture thread → feature path → model → thresholded EVE alerts.

Wires the stages; the stages know nothing of it.  Capture runs in its own
thread and hands batches over a bounded queue: it never waits on scoring, and
a batch that finds the queue full is dropped and counted.  The main loop
closes seconds by the clock when the link is idle.

Signals (fail2ban-style, documented in ``--help``):
  SIGHUP   reopen the outputs (logrotate), re-read the configuration (when the
           sensor has one) and reload the model, all or nothing: a configuration or
           bundle that fails its checks is refused and the running ones stay
  SIGTERM  stop capturing, drain pending windows, exit 0 (SIGINT likewise)

A capture that fails (link down, interface removed, tshark gone) is reopened
every few seconds while the sensor keeps running, like Suricata's AF_PACKET
source; the outage shows in STATUS=, the log and ``flowlstm_capture_up``.

systemd ``Type=notify``: READY=1 once capture is open and the model loaded,
STATUS= lines every few seconds, WATCHDOG=1 from the main loop when
``WATCHDOG_USEC`` is set, RELOADING=1 … READY=1 around a SIGHUP, STOPPING=1 on
the way out — sent on ``$NOTIFY_SOCKET`` with the plain datagram protocol.
"""
from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import threading
import time
from dataclasses import dataclass, replace
from typing import Callable

from .capture.live import CaptureStats, LiveCapture, LiveConfig
from .eve import AlertConfig, alert_records, to_lines
from .errors import CaptureError, FlowlstmError
from .model import ModelBundle
from .outputs import HoldingOutput, open_eve
from .pipeline import FeaturePipeline, PipelineConfig, PipelineOutput
from .stats import Counters, stats_record
from .threshold import Thresholder

log = logging.getLogger("flowlstm.daemon")


def sd_notify(message: str) -> bool:
    """Send one notification to systemd (or whoever owns $NOTIFY_SOCKET)."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            # Never block the sensor on a slow reader of the socket.
            s.sendto(message.encode(), socket.MSG_DONTWAIT, path)
        except OSError as exc:
            log.warning("sd_notify failed: %s", exc)
            return False
    return True


@dataclass
class DaemonConfig:
    capture: LiveConfig
    eve_path: str
    model_path: str
    threshold: float | None = None
    pipeline: PipelineConfig = PipelineConfig()
    alerts: AlertConfig = AlertConfig()
    queue_batches: int = 256
    status_every: float = 5.0
    stats_every: float = 8.0  # EVE stats events, as often as Suricata's default
    metrics_port: int = 0  # Prometheus endpoint on 127.0.0.1; 0 = off
    notice_path: str = ""  # also write alerts as a Zeek notice log
    announce: bool = True  # zeroconf _flowlstm._tcp.local.
    backend: str = "libpcap"  # or "pyshark" (tshark/dumpcap; slower, lag-bounded)


# Settings a running sensor cannot change (its capture handle, flow table, listening socket
# and announcement are built from them), with the configuration keys that set them.
# The Prometheus endpoint's metrics: name → (type, help).  docs/daemon.md lists them too.
METRICS = {
    "flowlstm_packets_total": ("counter", "Packets read from the capture."),
    "flowlstm_bytes_total": ("counter", "Wire bytes read from the capture."),
    "flowlstm_windows_scored_total": ("counter", "Windows scored by the model."),
    "flowlstm_alerts_total": ("counter", "Alerts written."),
    "flowlstm_alerts_suppressed_total": ("counter", "Alerts folded by thresholding."),
    "flowlstm_queue_dropped_packets_total": ("counter", "Packets dropped: scoring fell behind capture."),
    "flowlstm_kernel_dropped_packets_total": ("counter", "Packets the kernel dropped."),
    "flowlstm_flows_active": ("gauge", "Flows tracked now."),
    "flowlstm_late_packets_total": ("counter", "Packets later than the slack."),
    "flowlstm_clock_restarts_total": ("counter", "Times packet time went back over a minute (clock steps)."),
    "flowlstm_capture_lag_seconds": ("gauge", "Capture time to processing (pyshark backend)."),
    "flowlstm_capture_up": ("gauge", "1 while the capture is open, 0 while it is being reopened."),
    "flowlstm_output_held_bytes": ("gauge", "EVE bytes held in memory while the output cannot take them."),
    "flowlstm_output_lost_events_total": ("counter", "EVE events dropped: held beyond the memory limit."),
}

REOPEN_EVERY = 2.0  # seconds between attempts to reopen a failed capture

_RESTART_ONLY = {"capture": "capture.*", "pipeline": "features.*", "backend": "capture.backend",
                 "metrics_port": "metrics.port", "announce": "announce"}


class Sensor:
    """``reconfigure``, when given, builds a fresh configuration on SIGHUP (re-reading the
    configuration file); it raises ``FlowlstmError`` when the new one is invalid."""

    def __init__(self, cfg: DaemonConfig, thresholder: Thresholder | None = None,
                 reconfigure: Callable[[], tuple[DaemonConfig, Thresholder]] | None = None):
        self.cfg = cfg
        self._reconfigure = reconfigure
        self.announcer = None
        self.bundle = ModelBundle(cfg.model_path)
        # Held, not lost, while the disk is full; see HoldingOutput.
        self.eve = HoldingOutput(open_eve(cfg.eve_path))
        self.notice = None
        if cfg.notice_path:
            from .zeeklog import ZeekNoticeLog

            self.notice = HoldingOutput(ZeekNoticeLog(cfg.notice_path))
        self.capture = self._open_capture()
        # The capture thread swaps handles after a failure while the main thread reads counters.
        self._capture_lock = threading.Lock()
        self._kernel_base = self._kernel_now = CaptureStats()  # closed handles' totals; the open one's
        self._down_since: float | None = None
        self.pipe = FeaturePipeline(cfg.pipeline)
        self.thresholder = thresholder or Thresholder()
        self.queue: queue.Queue = queue.Queue(maxsize=cfg.queue_batches)
        self.dropped_batches = self.dropped_packets = 0
        self.packets = self.windows = self.alerts = 0
        self.counters = Counters()
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.metrics = None
        if cfg.metrics_port:
            from .metrics import MetricsServer

            try:
                self.metrics = MetricsServer(self.collect, cfg.metrics_port)
            except OSError as exc:
                raise FlowlstmError(f"metrics port {cfg.metrics_port}: cannot listen: {exc.strerror}") from None
        wd = os.environ.get("WATCHDOG_USEC")
        self._watchdog = int(wd) / 2e6 if wd and wd.isdigit() else None

    # -- capture thread ----------------------------------------------------

    def _open_capture(self):
        if self.cfg.backend == "pyshark":
            from .capture.shark import SharkCapture

            return SharkCapture(self.cfg.capture)
        return LiveCapture(self.cfg.capture)

    def _capture_loop(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self.capture.read()
            except CaptureError as exc:
                self._reopen(exc)
                continue
            if self._down_since is not None:
                log.warning("capture on %s is back after %.0f s", self.cfg.capture.interface,
                            time.monotonic() - self._down_since)
                self._down_since = None
            if len(batch):
                try:
                    self.queue.put_nowait(batch)
                except queue.Full:
                    self.dropped_batches += 1
                    self.dropped_packets += len(batch)

    def _reopen(self, exc: CaptureError) -> None:
        """Close the failed handle and retry until a new one opens (or the sensor stops)."""
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.error("%s; reopening every %g s", exc, REOPEN_EVERY)
        else:
            log.debug("%s", exc)  # still down: said once already
        with self._capture_lock:
            self._kernel_base, self._kernel_now = self._kernel_stats(), CaptureStats()
            self.capture.close()
            self.capture = None
        while not self._stop.wait(REOPEN_EVERY):
            try:
                capture = self._open_capture()
            except CaptureError as again:
                log.debug("%s", again)
                continue
            with self._capture_lock:
                self.capture = capture
            return

    def _kernel_stats(self) -> CaptureStats:
        """Kernel counters summed over every capture handle this sensor has had."""
        if self.capture is not None:
            try:
                self._kernel_now = self.capture.stats()
            except CaptureError:
                pass  # a failing handle: keep its last good counters
        return CaptureStats(*(a + b for a, b in zip(vars(self._kernel_base).values(),
                                                    vars(self._kernel_now).values())))

    def kernel_stats(self) -> CaptureStats:
        with self._capture_lock:
            return self._kernel_stats()

    # -- main loop -----------------------------------------------------------

    def _emit(self, out: PipelineOutput) -> None:
        thr = self.bundle.threshold if self.cfg.threshold is None else self.cfg.threshold
        label = f"{self.bundle.name}@{self.bundle.sha256[:12]}"
        for w in out.windows:
            kept = alert_records(w, self.bundle.score(w.x), thr, label, self.cfg.alerts, self.thresholder)
            self.eve.write(to_lines(kept))
            if self.notice is not None:
                self.notice.write(self.notice.out.format(kept))
            self.windows += len(w)
            self.alerts += len(kept)

    def _process(self, batch) -> None:
        self.packets += len(batch)
        self.counters.add(batch)
        self._emit(self.pipe.push(batch))

    def _do_reload(self) -> None:
        self._reload.clear()
        # systemd shows "reloading" until READY=1 follows (the notify-reload protocol).
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")
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
        try:
            cfg, thresholder = self._reconfigure() if self._reconfigure else (self.cfg, self.thresholder)
        except FlowlstmError as exc:
            log.error("new configuration refused, the running one stays: %s", exc)
            cfg, thresholder = self.cfg, self.thresholder
        for name, key in _RESTART_ONLY.items():
            if getattr(cfg, name) != getattr(self.cfg, name):
                log.warning("%s changed; restart the sensor to apply it (the rest is reloaded)", key)
                cfg = replace(cfg, **{name: getattr(self.cfg, name)})
        cfg = replace(cfg, alerts=replace(cfg.alerts, in_iface=self.cfg.alerts.in_iface))  # bound to the capture
        # Build everything new before swapping anything, so a refusal leaves the sensor as it was.
        opened = []
        try:
            bundle = ModelBundle(cfg.model_path)
            eve = self.eve
            if cfg.eve_path != self.cfg.eve_path:
                eve = HoldingOutput(open_eve(cfg.eve_path))
                opened.append(eve)
            notice = self.notice
            if cfg.notice_path != self.cfg.notice_path:
                from .zeeklog import ZeekNoticeLog

                notice = HoldingOutput(ZeekNoticeLog(cfg.notice_path)) if cfg.notice_path else None
                opened += [notice] if notice else []
        except FlowlstmError as exc:
            for out in opened:
                out.close()
            log.error("reload refused, the loaded model and configuration keep running: %s", exc)
            return
        for old, new in ((self.eve, eve), (self.notice, notice)):
            if old is not None and old is not new:
                old.close()
                if new is not None:
                    new.lost_lines += old.lost_lines  # counters never go backwards
        if thresholder is not self.thresholder and (thresholder.rules, thresholder.max_per_second) == (
                self.thresholder.rules, self.thresholder.max_per_second):
            thresholder = self.thresholder  # unchanged rules: keep their running state
        elif thresholder is not self.thresholder:
            thresholder.suppressed, thresholder.emitted = self.thresholder.suppressed, self.thresholder.emitted
            log.info("thresholding rules changed; their counts start afresh")
        self.cfg, self.thresholder, self.bundle, self.eve, self.notice = cfg, thresholder, bundle, eve, notice
        if self.announcer is not None:
            try:
                self.announcer.update({"model_sha256": bundle.sha256})
            except Exception as exc:  # noqa: BLE001 - announcing is optional; sensing is not
                log.warning("zeroconf update failed: %s", exc)
        log.info("reloaded: model %s (%s), threshold %.4f", bundle.name, bundle.sha256[:12],
                 bundle.threshold if cfg.threshold is None else cfg.threshold)

    def _write_stats(self) -> None:
        rec = stats_record(self.counters, self._started, self.pipe.flows.counters.created, len(self.pipe.flows),
                           self.alerts, self.thresholder.suppressed, tuple(vars(self.kernel_stats()).values()),
                           self.cfg.alerts.host)
        self.eve.write(to_lines([rec]))

    def collect(self) -> dict:
        """Counters for the Prometheus endpoint: name → (type, help, value), as METRICS lists them."""
        c = self.counters
        k = self.kernel_stats()
        values = {
            "flowlstm_packets_total": c.pkts,
            "flowlstm_bytes_total": c.bytes,
            "flowlstm_windows_scored_total": self.windows,
            "flowlstm_alerts_total": self.alerts,
            "flowlstm_alerts_suppressed_total": self.thresholder.suppressed,
            "flowlstm_queue_dropped_packets_total": self.dropped_packets,
            "flowlstm_kernel_dropped_packets_total": k.dropped,
            "flowlstm_flows_active": len(self.pipe.flows),
            "flowlstm_late_packets_total": self.pipe.late_packets,
            "flowlstm_clock_restarts_total": self.pipe.clock_restarts,
            "flowlstm_capture_lag_seconds": getattr(self.capture, "lag", 0.0),
            "flowlstm_capture_up": int(self._down_since is None),
            "flowlstm_output_held_bytes": self.eve.held_bytes,
            "flowlstm_output_lost_events_total": self.eve.lost_lines,
        }
        return {name: (*METRICS[name], values[name]) for name in METRICS}

    def status(self) -> str:
        down = self._down_since
        return ((f"capture on {self.cfg.capture.interface} down for {time.monotonic() - down:.0f} s, reopening; "
                 if down is not None else "")
                + f"{self.packets} packets, {self.windows} windows, {self.alerts} alerts, "
                f"{self.dropped_packets} packets dropped (queue)")

    def run(self) -> int:
        signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())
        reader = threading.Thread(target=self._capture_loop, name="capture", daemon=True)
        reader.start()
        if self.cfg.announce:
            from . import __version__
            from .announce import Announcer

            name = self.cfg.alerts.host or socket.gethostname()
            try:
                self.announcer = Announcer(f"{name}-{self.cfg.capture.interface}", self.cfg.metrics_port, {
                    "version": __version__, "interface": self.cfg.capture.interface,
                    "model_sha256": self.bundle.sha256, "metrics_port": str(self.cfg.metrics_port)})
            except Exception as exc:  # noqa: BLE001 - announcing is optional; sensing is not
                log.warning("zeroconf announcement failed: %s", exc)
        sd_notify(f"READY=1\nSTATUS=capturing on {self.cfg.capture.interface}, model {self.bundle.name}")
        log.info("capturing on %s", self.cfg.capture.interface)
        next_status = next_dog = time.monotonic()
        next_stats = next_status + self.cfg.stats_every
        while not self._stop.is_set():
            if self._reload.is_set():
                self._do_reload()
            try:
                self._process(self.queue.get(timeout=0.2))
            except queue.Empty:
                self._emit(self.pipe.tick(time.time_ns()))
            now = time.monotonic()
            if self._watchdog and now >= next_dog:
                sd_notify("WATCHDOG=1")
                next_dog = now + self._watchdog
            if now >= next_status:
                sd_notify(f"STATUS={self.status()}")
                next_status = now + self.cfg.status_every
            if now >= next_stats:
                self._write_stats()
                next_stats = now + self.cfg.stats_every
        sd_notify("STOPPING=1")
        if self.announcer is not None:
            self.announcer.close()
        reader.join(timeout=2)
        while not self.queue.empty():
            self._process(self.queue.get_nowait())
        if not reader.is_alive() and self.capture is not None and self._down_since is None:
            # What the kernel already holds was counted in its statistics: read it too, so the
            # final stats event adds up.  Bounded, for a link that never goes quiet.
            end = time.monotonic() + 1.0
            try:
                while time.monotonic() < end and len(batch := self.capture.read(timeout=0)):
                    self._process(batch)
            except CaptureError:
                pass  # failed while draining: the rest is lost with the handle, as counted
        self._emit(self.pipe.finish())
        self._write_stats()
        if self.capture is not None:
            self.capture.close()
        self.eve.close()
        if self.notice is not None:
            self.notice.close()
        if self.metrics:
            self.metrics.close()
        log.info("stopped: %s", self.status())
        return 0
