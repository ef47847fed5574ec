"""Sensor counters, reported as Suricata EVE ``stats`` events (schema keys only).

Mapping: decoder.pkts/bytes/ipv4/ipv6/tcp/udp count what was read; decoder.invalid
counts packets whose wanted headers a snaplen or damage cut short; flow.total is
flows created, flow.active flows tracked now, flow.mgr.flows_evicted flows ended early
to make room under the flow cap, flow.memcap flow-seconds shed because the flow cap or
the memory budget was full (their packets still count in context and aggregates);
detect.alert alerts raised, detect.alerts_suppressed alerts folded by thresholding,
detect.alert_queue_overflow alerts lost at an output that stayed full beyond its memory
limit; capture.kernel_* come from libpcap on live capture, and capture.errors counts
packets the capture thread read but dropped because scoring fell behind (its queue was
full).  So on a live link, at every stats event,
kernel_packets = decoder.pkts + capture.errors + packets still in flight (queued or in
the kernel's buffer), and a final stats event has nothing in flight.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .capture.records import HDR_TRUNC
from .eve import eve_timestamp


@dataclass
class Counters:
    pkts: int = 0
    bytes: int = 0
    ipv4: int = 0
    ipv6: int = 0
    tcp: int = 0
    udp: int = 0
    invalid: int = 0

    def add(self, batch: np.ndarray) -> None:
        """Count one ``PACKET_DTYPE`` batch (a few vectorized reductions)."""
        self.pkts += len(batch)
        self.bytes += int(batch["wire_len"].sum(dtype=np.uint64))
        l3 = batch["l3"]
        self.ipv4 += int(np.count_nonzero(l3 == 4))
        self.ipv6 += int(np.count_nonzero(l3 == 6))
        ip = l3 != 0
        self.tcp += int(np.count_nonzero(ip & (batch["proto"] == 6)))
        self.udp += int(np.count_nonzero(ip & (batch["proto"] == 17)))
        self.invalid += int(np.count_nonzero(batch["hdr"] & HDR_TRUNC))


@dataclass
class RunCounters:
    """Everything a stats event reports besides packet counts."""

    flows_total: int = 0  # flows created
    flows_active: int = 0  # tracked now
    flows_evicted: int = 0  # ended early to make room under the flow cap
    flows_shed: int = 0  # flow-seconds not tracked: the flow cap or the memory budget was full
    alerts: int = 0  # raised by detection (written, or held while the output is full)
    alerts_suppressed: int = 0  # folded by thresholding
    alerts_lost: int = 0  # dropped: held beyond the output's memory limit
    queue_dropped: int = 0  # packets captured but dropped before scoring (the capture queue was full)
    kernel: tuple[int, int, int] | None = None  # received, dropped, dropped by the interface (live capture)


def stats_record(c: Counters, started: float, r: RunCounters, host: str = "") -> dict[str, Any]:
    """One EVE ``stats`` event (Suricata's schema keys only; the mapping is the module docstring's)."""
    stats: dict[str, Any] = {
        "uptime": int(time.monotonic() - started),
        "decoder": {
            "pkts": c.pkts,
            "bytes": c.bytes,
            "ipv4": c.ipv4,
            "ipv6": c.ipv6,
            "tcp": c.tcp,
            "udp": c.udp,
            "invalid": c.invalid,
        },
        "flow": {
            "total": r.flows_total,
            "active": r.flows_active,
            "memcap": r.flows_shed,
            "mgr": {"flows_evicted": r.flows_evicted},
        },
        "detect": {"alert": r.alerts, "alerts_suppressed": r.alerts_suppressed, "alert_queue_overflow": r.alerts_lost},
    }
    if r.kernel is not None:
        stats["capture"] = {
            "kernel_packets": r.kernel[0],
            "kernel_drops": r.kernel[1],
            "kernel_ifdrops": r.kernel[2],
            "errors": r.queue_dropped,
        }
    rec = {"timestamp": eve_timestamp(time.time_ns()), "event_type": "stats", "stats": stats}
    if host:
        rec["host"] = host
    return rec
