"""Global per-second context: what the whole link looked like in one second.

Collective anomalies (floods, scans, reflection) show up here before they show
in any single flow: a jump in distinct sources, a collapse of destination-port
entropy, a SYN ratio near one.
"""

from __future__ import annotations

import numpy as np

from .capture.records import FRAG_FRAGMENT, TCP_ACK, TCP_RST, TCP_SYN
from .hashing import address_hash

CONTEXT_DTYPE = np.dtype(
    [
        ("sec", "<i8"),
        ("packets", "<u8"),  # every frame, IP or not
        ("bytes", "<u8"),  # wire bytes of every frame
        ("ip_packets", "<u8"),
        ("flows", "<u4"),  # flows with a packet in this second
        ("new_flows", "<u4"),
        ("n_src", "<u4"),  # distinct source addresses
        ("n_dst", "<u4"),
        ("n_sport", "<u4"),
        ("n_dport", "<u4"),
        ("h_src", "<f4"),  # Shannon entropy (bits) of the packet distribution over sources
        ("h_dst", "<f4"),
        ("h_sport", "<f4"),
        ("h_dport", "<f4"),
        ("syn_ratio", "<f4"),  # SYN without ACK, over TCP packets
        ("rst_ratio", "<f4"),
        ("tcp_ratio", "<f4"),  # over IP packets
        ("udp_ratio", "<f4"),
        ("icmp_ratio", "<f4"),
        ("frag_ratio", "<f4"),
    ]
)


def _entropy(counts: np.ndarray) -> tuple[int, float]:
    counts = counts[counts > 0]
    if len(counts) == 0:
        return 0, 0.0
    p = counts / counts.sum()
    return len(counts), float(-(p * np.log2(p)).sum())


def _addr_counts(addr: np.ndarray) -> np.ndarray:
    """Packets per distinct address, via a 64-bit hash of the 16 bytes."""
    h = address_hash(addr)
    h.sort()
    edges = np.flatnonzero(np.r_[True, h[1:] != h[:-1], True])
    return np.diff(edges)


def second_context(packets: np.ndarray, flow_seconds: np.ndarray, sec: int, ip: np.ndarray | None = None) -> np.ndarray:
    """One ``CONTEXT_DTYPE`` record for the packets and flow rows of second ``sec``.

    ``ip``, if the caller has it, is ``packets`` restricted to IP.
    """
    out = np.zeros(1, dtype=CONTEXT_DTYPE)
    r = out[0]
    r["sec"] = sec
    r["packets"] = len(packets)
    r["bytes"] = int(packets["wire_len"].sum(dtype=np.uint64))
    if ip is None:
        ip = packets[packets["l3"] != 0]
    r["ip_packets"] = len(ip)
    r["flows"] = len(flow_seconds)
    r["new_flows"] = int(flow_seconds["new"].sum()) if len(flow_seconds) else 0
    if len(ip) == 0:
        return out
    r["n_src"], r["h_src"] = _entropy(_addr_counts(ip["src"]))
    r["n_dst"], r["h_dst"] = _entropy(_addr_counts(ip["dst"]))
    r["n_sport"], r["h_sport"] = _entropy(np.bincount(ip["sport"], minlength=1))
    r["n_dport"], r["h_dport"] = _entropy(np.bincount(ip["dport"], minlength=1))
    proto = ip["proto"]
    tcp = proto == 6
    n_tcp = int(tcp.sum())
    if n_tcp:
        fl = ip["tcp_flags"][tcp]
        r["syn_ratio"] = np.count_nonzero((fl & TCP_SYN) & ~(fl & TCP_ACK)) / n_tcp
        r["rst_ratio"] = np.count_nonzero(fl & TCP_RST) / n_tcp
    n = len(ip)
    r["tcp_ratio"] = n_tcp / n
    r["udp_ratio"] = np.count_nonzero(proto == 17) / n
    r["icmp_ratio"] = np.count_nonzero((proto == 1) | (proto == 58)) / n
    r["frag_ratio"] = np.count_nonzero(ip["frag"] & FRAG_FRAGMENT) / n
    return out


# What the link baseline follows, per second: the context's magnitudes on a log scale and its
# bounded shares as they are, each with the smallest spread it is judged against (so that a
# link as steady as a test trace does not turn rounding into large deviations).
BASELINE_FIELDS: tuple[tuple[str, bool, float], ...] = (
    ("packets", True, 0.25),
    ("bytes", True, 0.25),
    ("flows", True, 0.25),
    ("new_flows", True, 0.25),
    ("n_src", True, 0.25),
    ("n_dst", True, 0.25),
    ("n_sport", True, 0.25),
    ("n_dport", True, 0.25),
    ("syn_ratio", False, 0.05),
    ("rst_ratio", False, 0.05),
    ("tcp_ratio", False, 0.05),
    ("udp_ratio", False, 0.05),
    ("icmp_ratio", False, 0.05),
    ("frag_ratio", False, 0.05),
)
BASELINE_SECONDS = 120.0  # time constant of the rolling mean and variance
Z_LIMIT = 20.0


class LinkBaseline:
    """Rolling mean and variance of a link's per-second context (exponentially weighted).

    ``deviation(ctx)`` says how far this second lies from the seconds before it, in units of
    their spread, and then takes the second in.  A model trained on deviations instead of
    magnitudes judges a 100 Mb/s office link and a 10 Gb/s backbone alike: each against
    itself.  The state is this object's alone, kept by the feature path for its stream, so
    the sensor and the trainer's Spark tasks compute the same numbers from the same packets.

    The first second of a stream is cut short (capture began inside it): it deviates by
    nothing and is not taken in.  Until ``seconds`` seconds have been seen the weights are
    those of a plain running mean, so a young baseline is not dominated by its first values.
    """

    def __init__(self, seconds: float = BASELINE_SECONDS):
        self.alpha = 2.0 / (seconds + 1.0)
        self.floor = np.array([f for _, _, f in BASELINE_FIELDS], dtype=np.float64)
        self.mean: np.ndarray | None = None
        self.var = np.zeros(len(BASELINE_FIELDS), dtype=np.float64)
        self.seen = -1  # seconds taken in; -1 until the (partial) first one has gone by

    @staticmethod
    def values(ctx: np.ndarray) -> np.ndarray:
        """The baseline's view of one ``CONTEXT_DTYPE`` record."""
        c = ctx[0] if ctx.ndim else ctx
        return np.array(
            [np.log1p(float(c[name])) if log else float(c[name]) for name, log, _ in BASELINE_FIELDS],
            dtype=np.float64,
        )

    def deviation(self, ctx: np.ndarray) -> np.ndarray:
        """z-scores of this second against the baseline so far (clipped); then update the baseline."""
        v = self.values(ctx)
        self.seen += 1
        if self.mean is None:
            if self.seen > 0:
                self.mean = v.copy()
            return np.zeros(len(v), dtype=np.float64)
        d = v - self.mean
        z: np.ndarray = np.clip(d / np.sqrt(self.var + self.floor * self.floor), -Z_LIMIT, Z_LIMIT)
        a = max(self.alpha, 1.0 / (self.seen + 1))
        self.mean = self.mean + a * d
        self.var = (1.0 - a) * (self.var + a * d * d)
        return z
