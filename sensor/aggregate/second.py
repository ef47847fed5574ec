"""One second's packets → its ranked aggregates, each with its protocol/port breakdown.

Traffic is first summarized per (source, destination) address pair (aguri3's
input odflows), the lattice search extracts the address aggregates of each
family, and each aggregate's packets are then summarized the same way over
(protocol, source port) × (protocol, destination port).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..addresses import IPV4_MAPPED_PREFIX
from ..hashing import pair_hash
from .config import BYTE, PACKET, AggregateConfig
from .ports import aguri_ports
from .results import Aggregate, AggregateSet, ProtoAggregate
from .search import Found, hhh_addresses, hhh_protocols, odflows

_DEFAULT_CONFIG = AggregateConfig()

# Per aggregate, the columns of its packets the protocol summary reads: protocol, source
# and destination port, wire length.
_PacketCols = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def aggregate_second(packets: np.ndarray, config: AggregateConfig = _DEFAULT_CONFIG) -> AggregateSet:
    """AGURIM-style aggregates of one second's ``PACKET_DTYPE`` records."""
    is_ip = packets["l3"] != 0
    ip = packets if is_ip.all() else packets[is_ip]
    total_b = int(ip["wire_len"].sum(dtype=np.uint64))
    total_p = len(ip)
    if total_p == 0:
        return AggregateSet(0, 0, {4: 0, 6: 0})
    tb, tp = config.address_limits(total_b, total_p)
    proto = ip["proto"].astype(np.uint64)
    ports = aguri_ports(ip) if config.protocols else None

    aggs: list[Aggregate] = []
    pair_keys: list[np.ndarray] = []
    pair_agg: list[np.ndarray] = []
    inputs: dict[int, int] = {}
    for family in (4, 6):
        keys, vol, first, flow = odflows(ip, family)
        inputs[family] = len(keys)
        if len(keys) == 0:
            continue
        found = hhh_addresses(family, keys, vol, tb, tp, config.criterion)
        pair_keys.append(pair_hash(ip["src"][first], ip["dst"][first]))
        pair_agg.append(found.owner + len(aggs))
        cols: list[_PacketCols | None] = [None] * len(found)
        if ports is not None:
            # Each aggregate's packets, in arrival order, for its protocol summary.
            sport, dport = ports
            sel = np.flatnonzero(flow >= 0)
            pkt_agg = found.owner[flow[sel]]
            by_agg = np.argsort(pkt_agg, kind="stable")
            cuts = np.searchsorted(pkt_agg[by_agg], np.arange(len(found) + 1))
            for k in range(len(found)):
                rows = sel[by_agg[cuts[k] : cuts[k + 1]]]
                cols[k] = (proto[rows], sport[rows], dport[rows], ip["wire_len"][rows].astype(np.int64))
        aggs += _aggregates(family, found, cols, config)

    key = _rank_key(config.criterion, total_b, total_p)
    rank = sorted(range(len(aggs)), key=lambda i: -key(aggs[i].bytes, aggs[i].packets))
    new_index = np.empty(len(aggs), dtype=np.int64)
    new_index[rank] = np.arange(len(aggs))
    keys = np.concatenate(pair_keys)
    owner = new_index[np.concatenate(pair_agg)]
    by_key = np.argsort(keys)
    return AggregateSet(total_b, total_p, inputs, tuple(aggs[i] for i in rank), keys[by_key], owner[by_key])


def _aggregates(family: int, found: Found, cols: list[_PacketCols | None], config: AggregateConfig) -> list[Aggregate]:
    """One family's aggregates in extraction order, each with its protocol entries when ``cols`` has its packets."""
    out = []
    for c, src, dst, sl, dl, nb, npk in zip(
        cols,
        _addresses(found.src, family),
        _addresses(found.dst, family),
        found.src_len.tolist(),
        found.dst_len.tolist(),
        found.bytes.tolist(),
        found.packets.tolist(),
        strict=True,
    ):
        protos = () if c is None else _protocols(nb, npk, c, config)
        out.append(Aggregate(family, src, sl, dst, dl, nb, npk, protos))
    return out


def _protocols(nbytes: int, npkts: int, cols: _PacketCols, config: AggregateConfig) -> tuple[ProtoAggregate, ...]:
    """The protocol/port entries of one aggregate of ``nbytes`` and ``npkts`` (residual), in rank order."""
    pr, sp, dp, wb = cols
    protos: tuple[ProtoAggregate, ...] = ()
    if len(pr):
        # (proto, sport) above (proto, dport), 24 bits each: sorting this sorts the pairs.
        flat = (pr << np.uint64(16) | sp) << np.uint64(24) | (pr << np.uint64(16) | dp)
        if np.all(flat == flat[0]):
            # A single protocol/port pair (most host-to-host aggregates): it is the answer.
            s, d = int(flat[0]) >> 24, int(flat[0]) & 0xFFFFFF
            return (_proto(s >> 16, s & 0xFFFF, 16, d & 0xFFFF, 16, int(wb.sum()), len(wb), nbytes, npkts),)
        order = np.argsort(flat, kind="stable")
        fs = flat[order]
        new = np.empty(len(fs), dtype=bool)
        new[0] = True
        np.not_equal(fs[1:], fs[:-1], out=new[1:])
        starts = np.flatnonzero(new)
        pairs = fs[starts]
        keys = np.stack([pairs >> np.uint64(24) << np.uint64(40), pairs << np.uint64(40)], axis=1)
        vol = np.stack([np.add.reduceat(wb[order], starts), np.diff(np.append(starts, len(order)))], axis=1)
        tb, tp = config.protocol_limits(nbytes, npkts)
        found = hhh_protocols(keys, vol, tb, tp, config.criterion)
        rank_key = _rank_key(config.criterion, nbytes, npkts)
        entries = zip(
            (found.src[:, 0] >> np.uint64(40)).tolist(),
            (found.dst[:, 0] >> np.uint64(40)).tolist(),
            found.src_len.tolist(),
            found.dst_len.tolist(),
            found.bytes.tolist(),
            found.packets.tolist(),
            strict=True,
        )
        ranked = sorted(entries, key=lambda e: -rank_key(e[4], e[5]))
        protos = tuple(
            _proto(s >> 16, s & 0xFFFF, sl - 8, d & 0xFFFF, dl - 8, b, p, nbytes, npkts)
            for s, d, sl, dl, b, p in ranked
        )
    if not protos:
        # aguri3 prints "[*:*:*] 100.00% 100.00%" for an aggregate without entries
        # (the catch-all when nothing is left over for it).
        protos = (ProtoAggregate(0, 0, 0, 0, 0, nbytes, npkts, 1.0, 1.0),)
    return protos


def _proto(
    proto: int, sport: int, slen: int, dport: int, dlen: int, nbytes: int, npkts: int, agg_b: int, agg_p: int
) -> ProtoAggregate:
    return ProtoAggregate(
        proto,
        sport,
        slen,
        dport,
        dlen,
        nbytes,
        npkts,
        nbytes / agg_b if agg_b else 0.0,
        npkts / agg_p if agg_p else 0.0,
    )


def _rank_key(criterion: str, total_b: int, total_p: int) -> Callable[[int, int], int]:
    """aguri3's ranking of (bytes, packets): bytes, packets, or for "combination" the larger of
    the bytes and the packets scaled by the mean packet size (truncated to an integer)."""
    if criterion == BYTE:
        return lambda b, p: b
    if criterion == PACKET:
        return lambda b, p: p
    ratio = total_b / total_p if total_p else 0.0
    return lambda b, p: max(b, int(ratio * p))


def _addresses(words: np.ndarray, family: int) -> list[bytes]:
    """(M, W) search words → each one's 16-byte address (IPv4 mapped into ::ffff:0:0/96)."""
    if family == 4:
        out = np.empty((len(words), 16), dtype=np.uint8)
        out[:, :12] = np.frombuffer(IPV4_MAPPED_PREFIX, dtype=np.uint8)
        out[:, 12:] = (words[:, 0] >> np.uint64(32)).astype(">u4").view(np.uint8).reshape(-1, 4)
    else:
        out = words.astype(">u8").view(np.uint8).reshape(-1, 16)
    raw = out.tobytes()
    return [raw[i : i + 16] for i in range(0, len(raw), 16)]
