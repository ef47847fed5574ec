"""Alert stage: scored windows → Suricata EVE-JSON ``alert`` records.

Records use only keys Suricata's EVE schema allows (``tests/data/suricata/
schema.json``), so Filebeat's Suricata module, Logstash, Wazuh, EveBox and
Splunk take them like Suricata's own:

- ``timestamp``: end of the window's centre second t (the moment the sensor
  could know), in Suricata's form ``2019-11-21T05:00:01.000000+0000``;
- ``flow_id``: a 51-bit integer derived from the flow key and start time, so
  every alert of one flow carries the same id (Suricata's ids are 51-bit too);
- ``src``/``dest``: the flow's initiator and responder; ``flow`` counts are
  those of the centre second (``pkts_toserver`` = initiator → responder) and
  ``flow.start`` the flow's first packet;
- ``community_id``: Community ID v1; ICMP flows carry ``icmp_type`` and
  ``icmp_code`` (their first packet's) instead of ports, as Suricata writes them;
- ``alert``: gid 9330 (flowlstm's own generator id, clear of Suricata's 1 and
  the preprocessor range), one signature per anomaly kind; ``metadata`` carries
  the model's score, the model, the window, the anomalous aggregate the alert
  stands for (member flows, packets, bytes, source and destination prefixes) and
  any alerts folded into this one by thresholding, each as an array of strings
  like ET rule metadata.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import communityid
import numpy as np

from .addresses import format_addresses
from .aggregate.render import render_prefix
from .features import SCHEMA
from .grouping import AGGREGATE, group_windows
from .hashing import endpoint_order, mix64
from .signatures import DEFAULT_SIGNATURES, Signature
from .threshold import Thresholder
from .windows import WindowBatch

GID = 9330
_PROTO_NAMES = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "IPv6-ICMP", 132: "SCTP", 47: "GRE", 50: "ESP"}
# Bad fragments (sensor.flows.header_anomalies): a lone flow of them is evidence by itself, and
# an attack of one malformed exchange (a teardrop) is over within its second.  Impossible TCP
# flags are not: one stray SYN-RST probe from the Internet's background scanners is in the
# MAWI excerpt, and alerting on each one is noise.
_BAD_FRAGMENTS = SCHEMA.index("frac_bad_frag")
_PRESENT = SCHEMA.index("present")
_CID = communityid.CommunityID()
_MAPPED_V4 = np.array([0] * 10 + [0xFF, 0xFF], np.uint8)


@dataclass(frozen=True)
class AlertConfig:
    """How alerts are named and attributed."""

    host: str = ""
    in_iface: str = ""
    signatures: dict[str, Signature] = field(default_factory=lambda: dict(DEFAULT_SIGNATURES))
    rev: int = 1
    per: str = AGGREGATE  # one alert per anomalous aggregate, or "flow": one per window


def classify(x_center: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """A coarse anomaly kind per window, from its centre-second features.

    The model says *whether* a window is anomalous; the kind only picks the
    signature, from the shape of the aggregate the flow fell in: a destination
    host reached from a spread of sources is a flood; a source host reaching a
    spread of destinations is a scan; a one-way flow from a well-known port is
    a reflection.
    """
    idx = SCHEMA.index
    src_spec = x_center[:, idx("agg_fwd_src_spec")]
    dst_spec = x_center[:, idx("agg_fwd_dst_spec")]
    one_way = x_center[:, idx("log_pkts_rev")] == 0
    syn_ack = (x_center[:, idx("frac_syn")] > 0) & (x_center[:, idx("frac_ack")] > 0)
    service_reply = (keys["sport"] > 0) & (keys["sport"] < 1024) & (keys["dport"] >= 1024)
    udp = keys["proto"] == 17
    kinds = np.full(len(keys), "anomaly", dtype=object)
    kinds[(dst_spec >= 0.75) & (src_spec < 0.5)] = "flood"
    kinds[(src_spec >= 0.75) & (dst_spec < 0.75)] = "scan"
    # Answers nobody asked for: SYN-ACKs or UDP replies from a service port.
    kinds[one_way & service_reply & (syn_ack | udp)] = "reflection"
    return kinds


def eve_timestamp(ns: int) -> str:
    """Suricata's EVE timestamp: local-time-free UTC with microseconds and +0000."""
    sec, rem = divmod(int(ns), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{rem // 1000:06d}+0000"


def flow_id(keys: np.ndarray) -> np.ndarray:
    """Stable 51-bit ids from (flow key, start time)."""
    h, _ = endpoint_order(keys["src"], keys["dst"], keys["sport"], keys["dport"], keys["proto"])
    h = mix64(h, keys["start_ts"].astype(np.uint64))
    return (h & np.uint64((1 << 51) - 1)).astype(np.int64)


def community_ids(keys: np.ndarray) -> list[str]:
    """Community ID v1 of each flow in ``keys`` (``KEY_DTYPE``), computed by the communityid package.

    ICMP and ICMPv6 flows carry type and code in the port fields.  A flow whose
    transport header was never captured (``l4`` 0: cut short, a non-first
    fragment) hashes addresses and protocol only, as tshark does.
    """
    # The package takes network-order bytes as they are; 4-byte addresses for IPv4, not our IPv4-mapped form.
    src, dst = keys["src"].tobytes(), keys["dst"].tobytes()
    src_at = np.arange(len(keys)) * 16 + np.where((keys["src"][:, :12] == _MAPPED_V4).all(axis=1), 12, 0)
    dst_at = np.arange(len(keys)) * 16 + np.where((keys["dst"][:, :12] == _MAPPED_V4).all(axis=1), 12, 0)
    sport, dport = keys["sport"].astype(">u2").tobytes(), keys["dport"].astype(">u2").tobytes()
    out = []
    for i, (a, b, proto, known) in enumerate(
        zip(src_at.tolist(), dst_at.tolist(), keys["proto"].tolist(), keys["l4"].tolist(), strict=True)
    ):
        s, d = src[a : (i + 1) * 16], dst[b : (i + 1) * 16]
        if known and proto in communityid.PORT_PROTOS:
            tpl = communityid.FlowTuple(proto, s, d, sport[2 * i : 2 * i + 2], dport[2 * i : 2 * i + 2]).in_order()
        else:
            # The package insists on ports for a port protocol; tshark's dissector, which we
            # match, hashes a flow without its transport header on addresses and protocol alone.
            tpl = communityid.FlowTuple(0, s, d).in_order()
            tpl.proto = proto
        # calc() less its log line, which formats the tuple on every call whatever the log
        # level; the tuple is in network order already, as calc() would first make it.
        out.append(_CID.render(_CID.hash(tpl)))
    return out


def alert_records(
    batch: WindowBatch,
    scores: np.ndarray,
    threshold: float | np.ndarray,
    model_label: str,
    config: AlertConfig = AlertConfig(),
    thresholder: Thresholder | None = None,
    heads: Sequence[str] = ("supervised",),
) -> list[dict[str, Any]]:
    """EVE alert dicts for the windows of ``batch`` that any head scores at or above its threshold.

    ``scores`` is (N,) for one head or (N, heads) and ``threshold`` one number or one per
    head.  The anomalous windows are grouped into one candidate per anomalous aggregate
    (``sensor.grouping``; ``config.per``), named by its heaviest member.  Each alert's
    metadata has every head's highest score among the members (``flowlstm_score``, in the
    order of ``heads``), the heads that fired (``flowlstm_head``), the members' flow, packet
    and byte counts and the prefixes they span.  With a ``thresholder``, only the candidates
    it lets through become records (the rest are counted there), so the cost follows the
    alerts written, not the anomalies.
    """
    per_head = scores.reshape(len(scores), -1)
    cut = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (per_head.shape[1],))
    fired = per_head >= cut
    hit = np.flatnonzero(fired.any(axis=1))
    if len(hit) == 0:
        return []
    kinds_hit = classify(batch.x[hit, 1], batch.keys[hit])
    g = group_windows(batch.keys[hit], kinds_hit, per_head[hit], fired[hit], config.per)
    keys, kinds = batch.keys[hit[g.rep]], kinds_hit[g.rep]
    chosen = np.arange(len(g))
    folded = np.zeros(len(g), dtype=np.int64)
    if thresholder is not None:
        sids = np.empty(len(g), dtype=np.int64)
        for kind in set(kinds.tolist()):
            sids[kinds == kind] = (config.signatures.get(kind) or config.signatures["anomaly"]).sid
        rep_x = batch.x[hit[g.rep]]
        malformed = rep_x[:, 1, _BAD_FRAGMENTS] > 0
        # the second of the newest packets each candidate's window shows (t+1, t or t-1)
        present = rep_x[:, :, _PRESENT] > 0
        seen = batch.sec + 1 - np.argmax(present[:, ::-1], axis=1)
        lone = (g.members == 1) & ~malformed
        keep, folded = thresholder.decide(batch.sec, sids, keys["src"], keys["dst"], lone, seen)
        chosen, keys, kinds, folded = chosen[keep], keys[keep], kinds[keep], folded[keep]
        if len(chosen) == 0:
            return []
    src = format_addresses(keys["src"])
    dst = format_addresses(keys["dst"])
    fids = flow_id(keys)
    stamp = eve_timestamp((batch.sec + 1) * 1_000_000_000)
    window = f"{batch.sec - 1}..{batch.sec + 1}"
    cids = community_ids(keys)
    out = []
    for i, gi in enumerate(chosen.tolist()):
        k = keys[i]
        proto = int(k["proto"])
        sig = config.signatures.get(kinds[i]) or config.signatures["anomaly"]
        fam = int(g.family[gi])
        rec = {
            "timestamp": stamp,
            "flow_id": int(fids[i]),
            "in_iface": config.in_iface,
            "event_type": "alert",
            "src_ip": src[i],
            "src_port": int(k["sport"]),
            "dest_ip": dst[i],
            "dest_port": int(k["dport"]),
            "proto": _PROTO_NAMES.get(proto, str(proto)),
            "alert": {
                "action": "allowed",
                "gid": GID,
                "signature_id": sig.sid,
                "rev": config.rev,
                "signature": sig.msg,
                "category": sig.category,
                "severity": sig.severity,
                "metadata": {
                    "flowlstm_score": [f"{float(v):.4f}" for v in g.scores[gi]],
                    "flowlstm_head": [h for h, f in zip(heads, g.fired[gi], strict=True) if f],
                    "flowlstm_model": [model_label],
                    "flowlstm_window": [window],
                    "flowlstm_kind": [str(kinds[i])],
                    "flowlstm_flows": [str(int(g.members[gi]))],
                    "flowlstm_pkts": [str(int(g.pkts[gi]))],
                    "flowlstm_bytes": [str(int(g.bytes[gi]))],
                    "flowlstm_src_prefix": [render_prefix(g.src_prefix[gi].tobytes(), int(g.src_len[gi]), fam)],
                    "flowlstm_dest_prefix": [render_prefix(g.dst_prefix[gi].tobytes(), int(g.dst_len[gi]), fam)],
                },
            },
            "flow": {
                "pkts_toserver": int(k["pkts_fwd"]),
                "pkts_toclient": int(k["pkts_rev"]),
                "bytes_toserver": int(k["bytes_fwd"]),
                "bytes_toclient": int(k["bytes_rev"]),
                "start": eve_timestamp(int(k["start_ts"])),
            },
        }
        if folded[i]:
            rec["alert"]["metadata"]["flowlstm_suppressed"] = [str(int(folded[i]))]
        if config.host:
            rec["host"] = config.host
        if not config.in_iface:
            del rec["in_iface"]
        known = bool(k["l4"])
        if not known:  # never captured: say nothing rather than 0
            del rec["src_port"], rec["dest_port"]
        elif proto in (1, 58):  # as Suricata writes ICMP: type and code, no ports
            rec["icmp_type"] = rec.pop("src_port")
            rec["icmp_code"] = rec.pop("dest_port")
        rec["community_id"] = cids[i]
        out.append(rec)
    return out


def to_lines(records: list[dict[str, Any]]) -> bytes:
    """Records → one blob of complete JSON lines."""
    return "".join(json.dumps(r, separators=(",", ":"), ensure_ascii=True) + "\n" for r in records).encode()
