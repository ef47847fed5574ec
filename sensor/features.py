"""Feature stage: one versioned schema for a flow-second.

A flow-second's feature row joins three views of the same second: the flow's
own statistics, the AGURIM aggregates it falls in (how heavy the traffic
cluster around it is), and the whole link's context.  Counts enter as
log1p and bounded quantities as fractions, so the same model transfers between
a 1 Gb/s office uplink and a 10 Gb/s backbone; the trainer's normalization
(stored in the model bundle) does the rest.

Change ``SCHEMA.version`` whenever names, order or meaning change: model
bundles carry the version they were trained on and the sensor refuses a
mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import numpy.typing as npt

from .capture.records import TCP_FLAG_NAMES

if TYPE_CHECKING:
    from .aggregate import AggregateSet

FLOW_FEATURES = (
    "present",  # 1 for a second the flow was active in; windows zero-fill the rest
    "log_pkts_fwd",
    "log_pkts_rev",
    "log_bytes_fwd",
    "log_bytes_rev",
    "rev_pkt_ratio",
    "len_mean",
    "len_std",
    "len_min",
    "len_max",
    "ttl_mean",
    "ttl_range",
    "win_mean",
    "win_min",
    *(f"frac_{name}" for name in TCP_FLAG_NAMES),
    "log_iat_mean_ms",
    "log_iat_std_ms",
    "log_iat_min_ms",
    "new_flow",
    "log_duration",
    "log_total_pkts",
    "proto_tcp",
    "proto_udp",
    "proto_icmp",
    "proto_other",
    "sport_low",
    "dport_low",
)
AGGREGATE_FEATURES = (
    "agg_fwd_bytes_share",  # the forward direction's aggregate, share of the second's bytes
    "agg_fwd_pkts_share",
    "agg_fwd_flow_share",  # this flow's part of that aggregate's bytes
    "agg_fwd_src_spec",  # prefix length of its source / address length: 0 = '*', 1 = host
    "agg_fwd_dst_spec",
    "agg_rev_bytes_share",
    "agg_rev_pkts_share",
)
CONTEXT_FEATURES = (
    "ctx_log_packets",
    "ctx_log_bytes",
    "ctx_log_flows",
    "ctx_log_new_flows",
    "ctx_log_n_src",
    "ctx_log_n_dst",
    "ctx_log_n_sport",
    "ctx_log_n_dport",
    "ctx_hn_src",  # entropy normalized by its maximum, log2(distinct)
    "ctx_hn_dst",
    "ctx_hn_sport",
    "ctx_hn_dport",
    "ctx_syn_ratio",
    "ctx_rst_ratio",
    "ctx_tcp_ratio",
    "ctx_udp_ratio",
    "ctx_icmp_ratio",
    "ctx_frag_ratio",
)

AGG_MATCH_DTYPE = np.dtype(
    [
        ("bytes_share", "<f4"),
        ("pkts_share", "<f4"),
        ("flow_share", "<f4"),
        ("src_spec", "<f4"),
        ("dst_spec", "<f4"),
    ]
)


class SchemaDict(TypedDict):
    """A ``FeatureSchema`` as it travels in window files and model bundles."""

    version: int
    names: list[str]
    dtype: str


@dataclass(frozen=True)
class FeatureSchema:
    """Names, order, dtype and version of the model's input features."""

    version: int
    names: tuple[str, ...]
    dtype: str = "float32"

    @property
    def size(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def to_dict(self) -> SchemaDict:
        return {"version": self.version, "names": list(self.names), "dtype": self.dtype}


SCHEMA = FeatureSchema(version=1, names=FLOW_FEATURES + AGGREGATE_FEATURES + CONTEXT_FEATURES)


def _log(x: npt.ArrayLike) -> np.ndarray:
    return np.log1p(np.asarray(x, dtype=np.float64))


def flow_second_features(fs: np.ndarray, ctx: np.ndarray, agg_fwd: np.ndarray, agg_rev: np.ndarray) -> np.ndarray:
    """Feature rows (N, SCHEMA.size) float32 for one second's flow rows.

    ``fs`` is ``FLOW_SECOND_DTYPE`` rows, ``ctx`` that second's one
    ``CONTEXT_DTYPE`` record, ``agg_fwd``/``agg_rev`` ``AGG_MATCH_DTYPE`` rows
    (one per flow) for the aggregates its two directions fall in.
    """
    n = len(fs)
    cols: list[np.ndarray] = []
    pk = fs["pkts_fwd"].astype(np.float64) + fs["pkts_rev"]
    cols += [
        np.ones(n),
        _log(fs["pkts_fwd"]),
        _log(fs["pkts_rev"]),
        _log(fs["bytes_fwd"]),
        _log(fs["bytes_rev"]),
        fs["pkts_rev"] / np.maximum(pk, 1),
        fs["len_mean"] / 1500.0,
        fs["len_std"] / 1500.0,
        fs["len_min"] / 1500.0,
        fs["len_max"] / 1500.0,
        fs["ttl_mean"] / 255.0,
        (fs["ttl_max"].astype(np.float64) - fs["ttl_min"]) / 255.0,
        fs["win_mean"] / 65535.0,
        fs["win_min"] / 65535.0,
    ]
    cols += [fs[f"n_{name}"] / np.maximum(pk, 1) for name in TCP_FLAG_NAMES]
    cols += [
        _log(fs["iat_mean"].astype(np.float64) * 1000),
        _log(fs["iat_std"].astype(np.float64) * 1000),
        _log(fs["iat_min"].astype(np.float64) * 1000),
        fs["new"].astype(np.float64),
        _log(fs["duration"]),
        _log(fs["total_pkts"]),
    ]
    proto = fs["proto"]
    tcp, udp, icmp = proto == 6, proto == 17, (proto == 1) | (proto == 58)
    cols += [tcp, udp, icmp, ~(tcp | udp | icmp), fs["sport"] < 1024, fs["dport"] < 1024]
    for m in (agg_fwd, agg_rev):
        cols += [m["bytes_share"], m["pkts_share"]]
        if m is agg_fwd:
            cols += [m["flow_share"], m["src_spec"], m["dst_spec"]]
    c = ctx[0] if ctx.ndim else ctx
    ctx_vals = [
        np.log1p(float(c["packets"])),
        np.log1p(float(c["bytes"])),
        np.log1p(float(c["flows"])),
        np.log1p(float(c["new_flows"])),
        *(np.log1p(float(c[k])) for k in ("n_src", "n_dst", "n_sport", "n_dport")),
        *(float(c[f"h_{k}"]) / np.log2(max(int(c[f"n_{k}"]), 2)) for k in ("src", "dst", "sport", "dport")),
        *(float(c[k]) for k in ("syn_ratio", "rst_ratio", "tcp_ratio", "udp_ratio", "icmp_ratio", "frag_ratio")),
    ]
    cols += ctx_vals
    if len(cols) != SCHEMA.size:
        raise AssertionError(f"built {len(cols)} features, schema has {SCHEMA.size}")
    # Feature-major first (each column one contiguous write), then one blocked transpose.
    xt = np.empty((SCHEMA.size, n), dtype=np.float32)
    for j, col in enumerate(cols):
        xt[j] = col
    return np.ascontiguousarray(xt.T)


def aggregate_match(agg: AggregateSet, fs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``AGG_MATCH_DTYPE`` rows for each flow's forward and reverse address pair.

    The aggregate is the one that took the pair's traffic in this second (see
    ``sensor.aggregate.match_aggregates``); a direction that sent nothing gets zeros.
    """
    from .aggregate import match_aggregates

    out = []
    total_b = max(agg.total_bytes, 1)
    total_p = max(agg.total_packets, 1)
    if agg.aggregates:
        a_bytes = np.array([a.bytes for a in agg.aggregates], dtype=np.float64)
        a_pkts = np.array([a.packets for a in agg.aggregates], dtype=np.float64)
        full = np.array([32.0 if a.family == 4 else 128.0 for a in agg.aggregates])
        a_src = np.array([a.src_len for a in agg.aggregates]) / full
        a_dst = np.array([a.dst_len for a in agg.aggregates]) / full
    for src, dst, own in (("src", "dst", "bytes_fwd"), ("dst", "src", "bytes_rev")):
        m = np.zeros(len(fs), dtype=AGG_MATCH_DTYPE)
        idx = match_aggregates(agg, fs[src], fs[dst]) if len(fs) else np.zeros(0, np.int64)
        hit = idx >= 0
        if hit.any():
            i = idx[hit]
            m["bytes_share"][hit] = a_bytes[i] / total_b
            m["pkts_share"][hit] = a_pkts[i] / total_p
            m["flow_share"][hit] = np.minimum(fs[own][hit] / np.maximum(a_bytes[i], 1), 1.0)
            m["src_spec"][hit] = a_src[i]
            m["dst_spec"][hit] = a_dst[i]
        out.append(m)
    return out[0], out[1]
