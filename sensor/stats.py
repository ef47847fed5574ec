"""Sensor counters, reported as Suricata EVE ``stats`` events (schema keys only).

Mapping: decoder.pkts/bytes/ipv4/ipv6/tcp/udp count what was read; decoder.invalid
counts packets whose wanted headers a snaplen or damage cut short; flow.total is
flows created, flow.active flows tracked now; detect.alert alerts written,
detect.alerts_suppressed alerts folded by thresholding; capture.kernel_* come
from libpcap on live capture.  Drops in the sensor's own capture queue have no
EVE key; they are in the daemon's STATUS line and log.
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


def stats_record(c: Counters, started: float, flows_total: int, flows_active: int, alerts: int,
                 suppressed: int, kernel: tuple[int, int, int] | None = None, host: str = "") -> dict[str, Any]:
    """One EVE ``stats`` event."""
    stats: dict[str, Any] = {
        "uptime": int(time.monotonic() - started),
        "decoder": {"pkts": c.pkts, "bytes": c.bytes, "ipv4": c.ipv4, "ipv6": c.ipv6, "tcp": c.tcp,
                    "udp": c.udp, "invalid": c.invalid},
        "flow": {"total": flows_total, "active": flows_active},
        "detect": {"alert": alerts, "alerts_suppressed": suppressed},
    }
    if kernel is not None:
        stats["capture"] = {"kernel_packets": kernel[0], "kernel_drops": kernel[1], "kernel_ifdrops": kernel[2]}
    rec = {"timestamp": eve_timestamp(time.time_ns()), "event_type": "stats", "stats": stats}
    if host:
        rec["host"] = host
    return rec
