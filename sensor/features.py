"""Feature stage: one versioned schema for a flow-second.

A flow-second's feature row joins four views of the same second: the flow's
own statistics (with what it was at its first packet and whether it was ever
answered), the hosts at its two ends (how many flows, peers and ports the
initiator reached and the responder received, and how many of those were never
answered or began mid-conversation), the AGURIM aggregates it falls in (how heavy
the traffic cluster around it is), and the whole link's context — expressed as
deviations from the link's own rolling baseline, not as magnitudes, so a model
trained on one link judges another of 100x the rate against itself.  Counts
enter as log1p and bounded quantities as fractions; the trainer's normalization
(stored in the model bundle) does the rest.

A flow first seen mid-stream (the capture started during it, or routing shows
only one direction) carries ``midstream`` and ``oneway``: such a flow is common
on any link and must not look like an attack by itself; its hosts' fan-out and
fan-in say whether it is one of many.

Change ``SCHEMA.version`` whenever names, order or meaning change: model
bundles carry the version they were trained on and the sensor refuses a
mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, TypedDict

import numpy as np
import numpy.typing as npt

from .addresses import address_words, in_prefix, is_ipv4_mapped
from .capture.records import TCP_ACK, TCP_FLAG_NAMES, TCP_SYN
from .context import BASELINE_FIELDS
from .flows import ANOMALY_NAMES
from .hashing import address_hash
from .history import HISTORY_FEATURES

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
    "first_syn",  # TCP, first packet a SYN without ACK: the handshake was seen
    "midstream",  # TCP, first packet anything else: the flow began before capture, or one way
    "oneway",  # no packet from the responder in the flow's life so far
    "proto_tcp",
    "proto_udp",
    "proto_icmp",
    "proto_other",
    "sport_low",
    "dport_low",
    # Header anomalies (``sensor.flows.header_anomalies``), shares of the second's packets: a
    # malformed packet is anomalous on any network, whatever tool sent it.
    "frac_frag",
    "frac_bad_frag",
    "frac_options",
    "frac_bad_tcp",
    "dst_group",  # multicast or limited broadcast
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
# Per second, over the flows the host initiated (src_) or received (dst_)
HOST_FEATURES = (
    "src_log_flows",
    "src_log_peers",  # distinct responders
    "src_log_ports",  # distinct responder ports
    "src_peer_share",  # distinct responders / distinct destinations on the link this second
    "src_oneway",  # share of its flows never answered
    "src_midstream",
    "dst_log_flows",
    "dst_log_peers",  # distinct initiators
    "dst_log_ports",  # distinct initiator ports
    "dst_peer_share",  # distinct initiators / distinct sources on the link
    "dst_oneway",
    "dst_midstream",
)
# The link's composition as it is: it tells networks apart more than attacks from their
# network, and models are trained without it by default (trainer.jobs, docs/detection.md).
LINK_COMPOSITION = (
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
CONTEXT_FEATURES = (
    *(f"ctx_z_{name}" for name, _, _ in BASELINE_FIELDS),  # deviation from the link's baseline
    *LINK_COMPOSITION,
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


# 4: non-first fragments count in their datagram's flow (``flows.packet_ports``).
SCHEMA = FeatureSchema(
    version=4, names=FLOW_FEATURES + HOST_FEATURES + HISTORY_FEATURES + AGGREGATE_FEATURES + CONTEXT_FEATURES
)


def _log(x: npt.ArrayLike) -> np.ndarray:
    return np.log1p(np.asarray(x, dtype=np.float64))


def _distinct_per_group(group: np.ndarray, values: np.ndarray, n_groups: int) -> np.ndarray:
    """How many distinct ``values`` each group id in ``group`` has."""
    if len(group) == 0:
        return np.zeros(n_groups, dtype=np.int64)
    order = np.lexsort((values, group))
    g, v = group[order], values[order]
    first = np.r_[True, (g[1:] != g[:-1]) | (v[1:] != v[:-1])]
    return np.bincount(g[first], minlength=n_groups)


def _multicast(dst: np.ndarray) -> np.ndarray:
    """Per flow: whether its destination is a multicast group or the limited broadcast.

    Two more were tried and left out, as benign captures of networks the model had not seen
    carry them: an unspecified source (0.0.0.0 or ::: every LAN's DHCP and IPv6 duplicate-
    address detection) and land (one address at both ends: end-host captures hold a host's
    traffic to its own address).  A normal-behaviour head trained without them called them
    anomalous on held-out networks.
    """
    hi, lo = address_words(dst)
    group: np.ndarray = np.where(
        is_ipv4_mapped(hi, lo),
        in_prefix(hi, lo, (0xFFFF << 32) | (224 << 24), 100) | (lo == np.uint64(0xFFFFFFFFFFFF)),
        (hi >> np.uint64(56)) == np.uint64(0xFF),
    )
    return group


def _host_columns(
    host: np.ndarray, peer: np.ndarray, port: np.ndarray, oneway: np.ndarray, mid: np.ndarray, link_peers: int
) -> list[np.ndarray]:
    """Per-flow columns of the host at one end: its flows, peers, ports, peer share, shares one-way and mid-stream."""
    _, group, flows = np.unique(address_hash(host), return_inverse=True, return_counts=True)
    group = group.reshape(-1)
    n = len(flows)
    peers = _distinct_per_group(group, address_hash(peer), n)
    ports = _distinct_per_group(group, port.astype(np.uint64), n)
    f = flows.astype(np.float64)
    return [
        _log(flows[group]),
        _log(peers[group]),
        _log(ports[group]),
        peers[group] / max(link_peers, 1),
        (np.bincount(group, weights=oneway, minlength=n) / f)[group],
        (np.bincount(group, weights=mid, minlength=n) / f)[group],
    ]


def flow_second_features(
    fs: np.ndarray, ctx: np.ndarray, ctx_z: np.ndarray, agg_fwd: np.ndarray, agg_rev: np.ndarray, history: np.ndarray
) -> np.ndarray:
    """Feature rows (N, SCHEMA.size) float32 for one second's flow rows.

    ``fs`` is ``FLOW_SECOND_DTYPE`` rows, ``ctx`` that second's one
    ``CONTEXT_DTYPE`` record and ``ctx_z`` its deviation from the link's baseline
    (``LinkBaseline.deviation``), ``agg_fwd``/``agg_rev`` ``AGG_MATCH_DTYPE`` rows
    (one per flow) for the aggregates its two directions fall in, ``history`` the rows'
    ``HostHistory.update`` columns.
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
    first_syn = tcp & ((fs["first_flags"] & (TCP_SYN | TCP_ACK)) == TCP_SYN)
    midstream = tcp & ~first_syn
    oneway = (fs["total_pkts_rev"] == 0).astype(np.float64)
    cols += [first_syn, midstream, oneway]
    cols += [tcp, udp, icmp, ~(tcp | udp | icmp), fs["sport"] < 1024, fs["dport"] < 1024]
    cols += [fs[f"n_{name}"] / np.maximum(pk, 1) for name in ANOMALY_NAMES]
    cols.append(_multicast(fs["dst"]))
    c = ctx[0] if ctx.ndim else ctx
    mid = midstream.astype(np.float64)
    cols += _host_columns(fs["src"], fs["dst"], fs["dport"], oneway, mid, int(c["n_dst"]))
    cols += _host_columns(fs["dst"], fs["src"], fs["sport"], oneway, mid, int(c["n_src"]))
    cols += list(history.T)
    for m in (agg_fwd, agg_rev):
        cols += [m["bytes_share"], m["pkts_share"]]
        if m is agg_fwd:
            cols += [m["flow_share"], m["src_spec"], m["dst_spec"]]
    ctx_vals = [
        *(float(z) for z in ctx_z),
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
