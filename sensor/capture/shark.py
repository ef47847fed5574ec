"""The compatibility capture backend: tshark/dumpcap through pyshark.

For what libpcap cannot open directly (remote capture, dumpcap's own
interfaces) at the cost of speed: pyshark tops out near 10k packets/s and
never drops — dumpcap spools the backlog to disk — so overload shows up as
growing delay.  This backend measures that lag (capture time to now) and
bounds it: packets older than ``max_lag`` seconds when they reach us are
dropped and counted, so the sensor's alerts stay timely.  Raw frames are
decoded by the same vectorized decoder as every other backend.

pyshark's JSON reader hands a packet over only once the next one begins, so
on a link that goes idle the last packet waits for more traffic.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from ..errors import CaptureError
from .decode import decode_frames
from .linklayer import LINKTYPE_ETHERNET
from .live import CaptureStats, LiveConfig
from .records import PACKET_DTYPE


class SharkCapture:
    """pyshark live capture behind the batch API of ``LiveCapture``."""

    def __init__(self, config: LiveConfig, max_lag: float = 10.0, linktype: int = LINKTYPE_ETHERNET):
        import pyshark

        self.config = config
        self.max_lag = max_lag
        self.linktype = linktype
        self.received = self.lag_dropped = 0
        self.lag = 0.0  # seconds, last packet
        self._items: deque[tuple[int, int, bytes]] = deque()  # (ts ns, wire length, raw frame)
        self._ready = threading.Event()
        self._stop = threading.Event()
        try:
            self._cap = pyshark.LiveCapture(
                config.interface, bpf_filter=config.bpf or None, use_json=True, include_raw=True
            )
        except Exception as exc:  # noqa: BLE001 - pyshark raises assorted types for a bad interface
            raise CaptureError(f"{config.interface}: cannot capture with tshark: {exc}") from None
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name="pyshark", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for pkt in self._cap.sniff_continuously():
                if self._stop.is_set():
                    break
                ts = float(pkt.sniff_timestamp)
                self.received += 1
                self.lag = time.time() - ts
                if self.lag > self.max_lag:
                    self.lag_dropped += 1
                    continue
                self._items.append((int(ts * 1e9), int(pkt.length), pkt.get_raw_packet()))
                self._ready.set()
        except Exception as exc:  # noqa: BLE001 - reported to the reader, not lost in a thread
            if not self._stop.is_set():
                self._error = str(exc)
                self._ready.set()

    def read(self, timeout: float | None = None) -> np.ndarray:
        wait = self.config.poll_ms / 1000 if timeout is None else timeout
        if not self._items:
            self._ready.wait(wait)
        self._ready.clear()
        if self._error:
            raise CaptureError(f"{self.config.interface}: tshark capture failed: {self._error}")
        items = [self._items.popleft() for _ in range(min(len(self._items), self.config.batch_size))]
        if not items:
            return np.zeros(0, dtype=PACKET_DTYPE)
        raw = [r[: self.config.snaplen] for _, _, r in items]
        caplen = np.array([len(r) for r in raw], dtype=np.int64)
        data = np.concatenate([[0], np.cumsum(caplen)[:-1]])
        buf = np.frombuffer(b"".join(raw), dtype=np.uint8)
        ts = np.array([t for t, _, _ in items], dtype=np.int64)
        wire = np.array([w for _, w, _ in items], dtype=np.int64)
        return decode_frames(buf, data, caplen, wire, ts, self.linktype)

    def stats(self) -> CaptureStats:
        return CaptureStats(self.received, self.lag_dropped, 0)

    def quiesce(self) -> None:
        """Nothing to do: dumpcap spools to tshark, which is read to its end on close."""

    def close(self) -> None:
        self._stop.set()
        try:
            self._cap.close()
        except Exception:  # noqa: BLE001 - closing a dead tshark is not an error worth raising
            pass
