"""Alert signatures, one per anomaly kind: what an alert is called and how it is tracked.

Shared by the EVE writer (which names alerts) and thresholding (which tracks them
by signature id); the ids and texts can be set in the configuration.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Signature:
    sid: int
    msg: str
    category: str = "Potentially Bad Traffic"
    severity: int = 2


DEFAULT_SIGNATURES = {
    "flood": Signature(
        9330001,
        "FLOWLSTM anomalous flow: many sources to one destination (flood/DDoS pattern)",
        "Attempted Denial of Service",
        1,
    ),
    "scan": Signature(
        9330002,
        "FLOWLSTM anomalous flow: one source probing many destinations or ports (scan)",
        "Detection of a Network Scan",
        2,
    ),
    "reflection": Signature(
        9330003,
        "FLOWLSTM anomalous flow: unsolicited responses from a service port (reflection)",
        "Attempted Denial of Service",
        1,
    ),
    "anomaly": Signature(9330000, "FLOWLSTM anomalous flow", "Potentially Bad Traffic", 3),
}
