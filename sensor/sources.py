"""Where packets come from: capture files or a live interface, behind one interface.

A source yields packet batches (``PACKET_DTYPE``) in arrival order and, while
nothing arrives, ``None`` — a tick, on which the sensor closes seconds by the
source's clock.  ``FileSource`` reads capture files (optionally at their
recorded pace) and never ticks: packet time is the only clock.
``LiveSource`` captures in a thread of its own and hands batches over a bounded
queue, so capture never waits on scoring; a batch that finds the queue full is
dropped and counted.  A capture that fails (link down, interface removed,
tshark gone) is reopened every ``REOPEN_EVERY`` seconds while the sensor keeps
running, like Suricata's AF_PACKET source.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import numpy as np

from .capture.live import CaptureStats, LiveCapture, LiveConfig
from .errors import CaptureError
from .progress import FileProgress

log = logging.getLogger("flowlstm.daemon")

REOPEN_EVERY = 2.0  # seconds between attempts to reopen a failed capture
# At stop, at most this long scoring what the queue holds (the rest is dropped and counted), so
# stopping stays well inside systemd's TimeoutStopSec (30 s in the shipped unit), and at most
# KERNEL_DRAIN_SECONDS reading what the kernel already holds.
DRAIN_SECONDS = 10.0
KERNEL_DRAIN_SECONDS = 1.0
QUEUE_BATCHES = 256  # batches of up to 4096 packets between capture and scoring


class CaptureHandle(Protocol):
    """An open capture: libpcap, tshark, or anything else that reads batches."""

    def read(self, timeout: float | None = None) -> np.ndarray: ...

    def stats(self) -> CaptureStats: ...

    def quiesce(self) -> None: ...

    def close(self) -> None: ...


class FileSource:
    """Capture files read in order as one stream, with a progress bar; ``realtime`` paces them."""

    name = "file"
    live = False

    def __init__(self, paths: list[str] | tuple[str, ...], progress: bool = True, realtime: bool = False):
        self.paths = list(paths)
        self.progress = progress
        self.realtime = realtime

    def batches(self, stop: threading.Event) -> Iterator[np.ndarray | None]:
        pace = Pacer() if self.realtime else None
        with FileProgress(self.paths, enabled=self.progress) as files:
            for _, batch in files.batches():
                yield from pace.slices(batch) if pace else (batch,)
                if stop.is_set():
                    return

    def clock(self) -> int | None:
        return None

    def kernel_stats(self) -> CaptureStats | None:
        return None

    def status(self) -> str:
        return ""

    def close(self) -> None:
        pass


class Pacer:
    """Releases a capture's packets at their recorded pace, in 50 ms slices."""

    STEP = 50_000_000  # ns

    def __init__(self) -> None:
        self._t0: int | None = None
        self._wall0 = 0.0

    def slices(self, batch: np.ndarray) -> Iterator[np.ndarray]:
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


def open_capture(config: LiveConfig, backend: str) -> CaptureHandle:
    """An open capture handle on ``config.interface`` with ``backend`` (libpcap or pyshark)."""
    if backend == "pyshark":
        from .capture.shark import SharkCapture

        return SharkCapture(config)
    return LiveCapture(config)


class LiveSource:
    """A live interface: a capture thread, a bounded queue, reopening after failures.

    ``opener`` makes a new handle (first and after each failure); ``clock`` is the
    time that closes seconds on an idle link (wall clock by default).
    """

    live = True

    def __init__(
        self,
        name: str,
        opener: Callable[[], CaptureHandle],
        clock: Callable[[], int] = time.time_ns,
        queue_batches: int = QUEUE_BATCHES,
        poll: float = 0.2,
    ):
        self.name = name
        self._opener = opener
        self._clock = clock
        self._poll = poll
        self.queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=queue_batches)
        self.dropped_batches = self.dropped_packets = 0  # read, then dropped: the queue was full
        # Counted by the kernel, never read: in a handle's buffer when it failed, or at stop.
        # With them, at the final stats event: kernel received = decoded + dropped + lost + kernel drops.
        self.lost_packets = 0
        self._read_on_handle = 0
        self.down_since: float | None = None
        # The capture thread swaps handles after a failure while the main thread reads counters.
        self._lock = threading.Lock()
        self._kernel_base = self._kernel_now = CaptureStats()  # closed handles' totals; the open one's
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.capture: CaptureHandle | None = opener()  # fails here, before the sensor reports ready

    @property
    def lag(self) -> float:
        return float(getattr(self.capture, "lag", 0.0))

    def batches(self, stop: threading.Event) -> Iterator[np.ndarray | None]:
        self._stop = stop
        self._thread = threading.Thread(target=self._capture_loop, name="capture", daemon=True)
        self._thread.start()
        while not stop.is_set():
            try:
                yield self.queue.get(timeout=self._poll)
            except queue.Empty:
                yield None
        yield from self._drain()

    def _drain(self) -> Iterator[np.ndarray]:
        """After stop: what the queue holds, then what the kernel already holds.

        The kernel counted those packets in its statistics; reading them makes the
        final stats event add up.  Bounded, for a link that never goes quiet.
        """
        if self._thread is not None:
            self._thread.join(timeout=2)
        end = time.monotonic() + DRAIN_SECONDS
        while not self.queue.empty():
            batch = self.queue.get_nowait()
            if time.monotonic() < end:
                yield batch
            else:
                self.dropped_batches += 1
                self.dropped_packets += len(batch)
        thread_done = self._thread is None or not self._thread.is_alive()
        if thread_done and self.capture is not None and self.down_since is None:
            capture = self.capture
            try:
                capture.quiesce()  # the kernel takes no more: what it holds can be read to the end
                end = time.monotonic() + KERNEL_DRAIN_SECONDS
                while time.monotonic() < end and len(batch := capture.read(timeout=0)):
                    self._read_on_handle += len(batch)
                    yield batch
            except CaptureError:
                pass  # failed while draining: the rest is lost with the handle, counted below
            self._settle(capture)

    def _settle(self, capture: CaptureHandle) -> None:
        """Count what ``capture``'s kernel buffer received but was never read as lost."""
        try:
            k = capture.stats()
        except CaptureError:
            k = self._kernel_now
        self._kernel_now = k
        self.lost_packets += max(0, k.received - k.dropped - self._read_on_handle)
        self._read_on_handle = k.received - k.dropped  # counted once

    def clock(self) -> int | None:
        return self._clock()

    def _capture_loop(self) -> None:
        while not self._stop.is_set():
            capture = self.capture
            if capture is None:
                return
            try:
                batch = capture.read()
            except CaptureError as exc:
                self._reopen(exc)
                continue
            self._read_on_handle += len(batch)
            if self.down_since is not None:
                log.warning("capture on %s is back after %.0f s", self.name, time.monotonic() - self.down_since)
                self.down_since = None
            if len(batch):
                try:
                    self.queue.put_nowait(batch)
                except queue.Full:
                    self.dropped_batches += 1
                    self.dropped_packets += len(batch)

    def _reopen(self, exc: CaptureError) -> None:
        """Close the failed handle and retry until a new one opens (or the sensor stops)."""
        if self.down_since is None:
            self.down_since = time.monotonic()
            log.error("%s; reopening every %g s", exc, REOPEN_EVERY)
        else:
            log.debug("%s", exc)  # still down: said once already
        with self._lock:
            if self.capture is not None:
                self._settle(self.capture)  # what its buffer held is lost with it
            self._kernel_base, self._kernel_now = self._kernel_stats(), CaptureStats()
            self._read_on_handle = 0
            if self.capture is not None:
                self.capture.close()
            self.capture = None
        while not self._stop.wait(REOPEN_EVERY):
            try:
                capture = self._opener()
            except CaptureError as again:
                log.debug("%s", again)
                continue
            with self._lock:
                self.capture = capture
            return

    def _kernel_stats(self) -> CaptureStats:
        if self.capture is not None:
            try:
                self._kernel_now = self.capture.stats()
            except CaptureError:
                pass  # a failing handle: keep its last good counters
        return CaptureStats(
            *(a + b for a, b in zip(vars(self._kernel_base).values(), vars(self._kernel_now).values(), strict=True))
        )

    def kernel_stats(self) -> CaptureStats:
        """Kernel counters summed over every capture handle this source has had."""
        with self._lock:
            return self._kernel_stats()

    def status(self) -> str:
        down = self.down_since
        return (
            f"capture on {self.name} down for {time.monotonic() - down:.0f} s, reopening; " if down is not None else ""
        )

    def close(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            if self.capture is not None:
                self.capture.close()
                self.capture = None
