"""Live capture with libpcap (pcapy-ng), behind the same batch API as the file reader.

The handle is nonblocking and waited on with ``select()``: a blocking libpcap
handle may never return when traffic stops, even with a read timeout, and a
sensor must keep closing seconds on an idle link.  ``next_batch`` pulls up to
``batch_size`` packets through one C call, so there are no per-packet Python
objects here either.

libpcap's batch metadata has no wire length; it is rebuilt from the headers
(link header + IP total length), which is exact for IP packets except for the
Ethernet padding of frames under 60 bytes.  With a headers-only snaplen this is
the only way to know it.
"""

from __future__ import annotations

import select
from dataclasses import dataclass

import numpy as np

from .. import settings
from ..errors import CaptureError
from .decode import decode_frames
from .linklayer import SUPPORTED_LINKTYPES, network_offsets
from .records import PACKET_DTYPE

_META = np.dtype([("sec", "=u4"), ("usec", "=u4"), ("offset", "=u4"), ("caplen", "=u4")])


@dataclass(frozen=True)
class LiveConfig:
    interface: str
    bpf: str = settings.default("capture.bpf")
    snaplen: int = settings.default("capture.snaplen")
    promiscuous: bool = settings.default("capture.promiscuous")
    buffer_mb: int = settings.default("capture.buffer-mb")
    batch_size: int = 4096
    poll_ms: int = 100  # longest wait for a packet before returning an empty batch

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.poll_ms < 1:
            raise ValueError("batch_size and poll_ms must be positive")


@dataclass
class CaptureStats:
    received: int = 0  # packets the kernel handed to libpcap
    dropped: int = 0  # dropped by the kernel: buffer full
    if_dropped: int = 0  # dropped by the interface or driver


_CAP_NET_RAW = 13  # linux/capability.h


def diagnose(interface: str, exc: Exception) -> str:
    """Why libpcap could not open ``interface``, in words.

    pcapy-ng reports a failed activation as a later ``F_GETFL: Bad file
    descriptor``, whatever the cause; the kernel's view says which it was.
    """
    import os

    if not os.path.exists(f"/sys/class/net/{interface}"):
        return "no such interface ('ip link' lists them)"
    if os.geteuid() != 0:
        try:
            eff = next(ln for ln in open("/proc/self/status") if ln.startswith("CapEff:"))
            has_raw = bool(int(eff.split()[1], 16) >> _CAP_NET_RAW & 1)
        except (OSError, StopIteration, ValueError):
            has_raw = False
        if not has_raw:
            return "permission denied: capturing needs root or CAP_NET_RAW (the systemd unit grants it)"
    try:
        with open(f"/sys/class/net/{interface}/operstate") as f:
            state = f.read().strip()
    except OSError:
        state = "unknown"
    return f"{exc} (link state: {state})" if state == "down" else str(exc)


class LiveCapture:
    """An open, activated capture on one interface."""

    def __init__(self, config: LiveConfig):
        import pcapy

        self.config = config
        try:
            h = pcapy.create(config.interface)
            h.set_snaplen(config.snaplen)
            h.set_promisc(int(config.promiscuous))
            h.set_timeout(config.poll_ms)
            h.set_buffer_size(config.buffer_mb << 20)
            h.activate()
            if config.bpf:
                h.setfilter(config.bpf)
            h.setnonblock(1)
        except pcapy.PcapError as exc:
            raise CaptureError(f"{config.interface}: cannot capture: {diagnose(config.interface, exc)}") from None
        self._h = h
        self.linktype = h.datalink()
        if self.linktype not in SUPPORTED_LINKTYPES:
            raise CaptureError(f"{config.interface}: link type {self.linktype} is not supported")
        self._fd = h.getfd()

    def read(self, timeout: float | None = None) -> np.ndarray:
        """The packets available now, waiting up to ``timeout`` s (default poll_ms) for the first.

        Returns an empty batch when the link was idle: callers keep their clock running.
        """
        import pcapy

        wait = self.config.poll_ms / 1000 if timeout is None else timeout
        try:
            data, meta = self._h.next_batch(self.config.batch_size)
            if not len(meta):
                ready, _, _ = select.select([self._fd], [], [], wait)
                if not ready:
                    return np.zeros(0, dtype=PACKET_DTYPE)
                data, meta = self._h.next_batch(self.config.batch_size)
        except pcapy.PcapError as exc:  # e.g. the link went down or the interface was removed
            raise CaptureError(f"{self.config.interface}: capture failed: {exc}") from None
        m = np.frombuffer(meta, dtype=_META)
        if len(m) == 0:
            return np.zeros(0, dtype=PACKET_DTYPE)
        buf = np.frombuffer(data, dtype=np.uint8)
        caplen = m["caplen"].astype(np.int64)
        ts = m["sec"].astype(np.int64) * 1_000_000_000 + m["usec"].astype(np.int64) * 1000
        data_off = m["offset"].astype(np.int64)
        batch = decode_frames(buf, data_off, caplen, caplen, ts, self.linktype)
        # Rebuild the wire length from the headers (see the module docstring).
        ip_end = network_offsets(buf, data_off, caplen, self.linktype) + batch["ip_len"].astype(np.int64)
        batch["wire_len"] = np.maximum(caplen, np.where(batch["l3"] > 0, ip_end, caplen))
        return batch

    def stats(self) -> CaptureStats:
        import pcapy

        try:
            recv, drop, ifdrop = self._h.stats()
        except pcapy.PcapError as exc:
            raise CaptureError(f"{self.config.interface}: no capture statistics: {exc}") from None
        return CaptureStats(recv, drop, ifdrop)

    def quiesce(self) -> None:
        """Let the kernel pass no more packets to this handle, so what it holds can be read to the end."""
        import pcapy

        try:
            self._h.setfilter("less 1")  # no frame is that short: the kernel filter drops everything new
        except pcapy.PcapError as exc:
            raise CaptureError(f"{self.config.interface}: cannot stop the capture: {exc}") from None

    def close(self) -> None:
        import pcapy

        try:
            self._h.close()
        except pcapy.PcapError:
            pass  # a handle whose interface is gone has nothing left to release cleanly

    def __enter__(self) -> LiveCapture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
