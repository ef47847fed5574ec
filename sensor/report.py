"""Per-second summaries for people (a table) and for programs (JSON lines)."""

from __future__ import annotations

import time
from typing import Any, TextIO

from .aggregate import to_json_dict
from .pipeline import SecondReport


def second_json(rep: SecondReport) -> dict[str, Any]:
    """The stable ``inspect --json`` object for one second."""
    c = rep.context[0]
    return {
        "ts": rep.sec,
        "packets": int(c["packets"]),
        "bytes": int(c["bytes"]),
        "ip_packets": int(c["ip_packets"]),
        "flows": int(c["flows"]),
        "new_flows": int(c["new_flows"]),
        "distinct": {k: int(c[f"n_{k}"]) for k in ("src", "dst", "sport", "dport")},
        "entropy": {k: round(float(c[f"h_{k}"]), 4) for k in ("src", "dst", "sport", "dport")},
        "syn_ratio": round(float(c["syn_ratio"]), 4),
        "rst_ratio": round(float(c["rst_ratio"]), 4),
        "aggregates": to_json_dict(rep.aggregates),
    }


class SecondTable:
    """A fixed-width table, one row per second, with the top aggregates."""

    HEADER = (
        f"{'time (UTC)':19} {'packets':>8} {'bytes':>10} {'Mbit/s':>8} {'flows':>7} {'new':>6} "
        f"{'srcs':>6} {'dsts':>6} {'syn%':>5}  top aggregate (bytes share)"
    )

    def __init__(self, out: TextIO, top: int = 1):
        self.out = out
        self.top = top
        self.seconds = 0
        self.packets = 0
        self.bytes = 0
        out.write(self.HEADER + "\n")

    def row(self, rep: SecondReport) -> None:
        c = rep.context[0]
        aggs = to_json_dict(rep.aggregates)
        total = max(int(c["bytes"]), 1)
        tops = [f"{a['src']} -> {a['dst']} ({100 * a['bytes'] / total:.1f}%)" for a in aggs[: self.top]]
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(rep.sec))
        self.out.write(
            f"{stamp:19} {int(c['packets']):8d} {int(c['bytes']):10d} {int(c['bytes']) * 8 / 1e6:8.2f} "
            f"{int(c['flows']):7d} {int(c['new_flows']):6d} {int(c['n_src']):6d} {int(c['n_dst']):6d} "
            f"{100 * float(c['syn_ratio']):5.1f}  {'; '.join(tops) or '-'}\n"
        )
        self.seconds += 1
        self.packets += int(c["packets"])
        self.bytes += int(c["bytes"])

    def close(self) -> None:
        self.out.write(f"{self.seconds} seconds, {self.packets} packets, {self.bytes} bytes\n")
