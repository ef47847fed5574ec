"""One second's packets → its ranked aggregates, each with its protocol/port breakdown.

Traffic is first summarized per (source, destination) address pair (aguri3's
input odflows), the lattice search extracts the address aggregates of each
family, and each aggregate's packets are then summarized the same way over
(protocol, source port) × (protocol, destination port).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..addresses import IPV4_MAPPED_PREFIX, address_words
from ..hashing import pair_hash
from .config import BYTE, PACKET, AggregateConfig
from .ports import aguri_ports
from .results import Aggregate, AggregateSet, ProtoAggregate
from .search import Found, group_rows, hhh_addresses, hhh_protocols


def _words(addr: np.ndarray, family: int) -> np.ndarray:
    """(N, 16) addresses → (N, W) search keys: IPv4's 32 bits top-aligned in one word, IPv6's 128 in two."""
    hi, lo = address_words(addr)
    if family == 4:
        # The IPv4 address sits in the low 32 bits of the second word: move it to the top.
        return ((lo & np.uint64(0xFFFFFFFF)) << np.uint64(32))[:, None]
    return np.stack([hi, lo], axis=1)


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
        sel = np.flatnonzero(ip["l3"] == family)
        inputs[family] = 0
        if len(sel) == 0:
            continue
        src = _words(ip["src"][sel], family)
        dst = _words(ip["dst"][sel], family)
        # Input odflows: one per address pair.
        keys = np.concatenate([src, dst], axis=1)
        order, starts, gid = group_rows(keys)
        inputs[family] = len(starts)
        wb = ip["wire_len"][sel][order].astype(np.int64)
        fb = np.add.reduceat(wb, starts)
        fp = np.diff(np.append(starts, len(order)))
        found = hhh_addresses(family, keys[order][starts], fb, fp, tb, tp, config.criterion)
        # Which aggregate took each packet's input flow, for the protocol summaries.
        agg_of_flow = found.owner
        rep = sel[order[starts]]  # one packet per input flow
        pair_keys.append(pair_hash(ip["src"][rep], ip["dst"][rep]))
        pair_agg.append(agg_of_flow + len(aggs))
        cols: list[_PacketCols | None] = [None] * len(found)
        if ports is not None:
            sport, dport = ports
            pkt_agg = np.empty(len(sel), dtype=np.int64)
            pkt_agg[order] = agg_of_flow[gid]
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
    for k, (sl, dl, nb, npk) in enumerate(
        zip(found.src_len.tolist(), found.dst_len.tolist(), found.bytes.tolist(), found.packets.tolist(), strict=True)
    ):
        c = cols[k]
        protos = _protocols(nb, npk, *c, config) if c is not None else ()
        out.append(
            Aggregate(
                family, _addr_bytes(found.src[k], family), sl, _addr_bytes(found.dst[k], family), dl, nb, npk, protos
            )
        )
    return out


def _protocols(
    nbytes: int, npkts: int, pr: np.ndarray, sp: np.ndarray, dp: np.ndarray, wb: np.ndarray, config: AggregateConfig
) -> tuple[ProtoAggregate, ...]:
    """The protocol/port entries of one aggregate of ``nbytes`` and ``npkts`` (residual), in rank order."""
    protos: tuple[ProtoAggregate, ...] = ()
    if len(pr):
        ps = (pr << np.uint64(16) | sp) << np.uint64(40)
        pd = (pr << np.uint64(16) | dp) << np.uint64(40)
        keys = np.stack([ps, pd], axis=1)
        if np.all(keys == keys[0]):
            # A single protocol/port pair (most host-to-host aggregates): it is the answer.
            s, d = int(keys[0, 0]) >> 40, int(keys[0, 1]) >> 40
            return (_proto(s >> 16, s & 0xFFFF, 16, d & 0xFFFF, 16, int(wb.sum()), len(wb), nbytes, npkts),)
        order, starts, _ = group_rows(keys)
        fb = np.add.reduceat(wb[order], starts)
        fp = np.diff(np.append(starts, len(order)))
        tb, tp = config.protocol_limits(nbytes, npkts)
        found = hhh_protocols(keys[order][starts], fb, fp, tb, tp, config.criterion)
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


def _addr_bytes(words: np.ndarray, family: int) -> bytes:
    if family == 4:
        return IPV4_MAPPED_PREFIX + int(words[0] >> np.uint64(32)).to_bytes(4, "big")
    return int(words[0]).to_bytes(8, "big") + int(words[1]).to_bytes(8, "big")
