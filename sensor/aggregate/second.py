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
from .search import Node, Space, group_rows, hhh_addresses, hhh_protocols


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

    nodes: list[tuple[int, Node, _PacketCols | None]] = []  # no packet columns without config.protocols
    pair_keys: list[np.ndarray] = []
    pair_agg: list[np.ndarray] = []
    inputs: dict[int, int] = {}
    for family, bits, words in ((4, 32, 1), (6, 128, 2)):
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
        space = Space(bits, words)
        found = hhh_addresses(
            space, keys[order][starts, :words], keys[order][starts, words:], fb, fp, tb, tp, config.criterion
        )
        # Which aggregate took each packet's input flow, for the protocol summaries.
        agg_of_flow = np.full(len(starts), -1, dtype=np.int64)
        for k, node in enumerate(found):
            agg_of_flow[node.members] = k
        rep = sel[order[starts]]  # one packet per input flow
        pair_keys.append(pair_hash(ip["src"][rep], ip["dst"][rep]))
        pair_agg.append(agg_of_flow + len(nodes))
        if ports is None:
            nodes += [(family, node, None) for node in found]
            continue
        sport, dport = ports
        pkt_agg = np.empty(len(sel), dtype=np.int64)
        pkt_agg[order] = agg_of_flow[gid]
        by_agg = np.argsort(pkt_agg, kind="stable")
        cuts = np.searchsorted(pkt_agg[by_agg], np.arange(len(found) + 1))
        for k, node in enumerate(found):
            rows = sel[by_agg[cuts[k] : cuts[k + 1]]]
            nodes.append((family, node, (proto[rows], sport[rows], dport[rows], ip["wire_len"][rows].astype(np.int64))))

    aggs = [
        _with_protocols(family, node, *cols, config) if cols is not None else _aggregate(family, node, ())
        for family, node, cols in nodes
    ]
    key = _rank_key(config.criterion, total_b, total_p)
    rank = sorted(range(len(aggs)), key=lambda i: -key(aggs[i]))
    new_index = np.empty(len(aggs), dtype=np.int64)
    new_index[rank] = np.arange(len(aggs))
    keys = np.concatenate(pair_keys)
    owner = new_index[np.concatenate(pair_agg)]
    by_key = np.argsort(keys)
    return AggregateSet(total_b, total_p, inputs, tuple(aggs[i] for i in rank), keys[by_key], owner[by_key])


def _with_protocols(
    family: int, node: Node, pr: np.ndarray, sp: np.ndarray, dp: np.ndarray, wb: np.ndarray, config: AggregateConfig
) -> Aggregate:
    protos: tuple[ProtoAggregate, ...] = ()
    if len(pr):
        ps = (pr << np.uint64(16) | sp) << np.uint64(40)
        pd = (pr << np.uint64(16) | dp) << np.uint64(40)
        keys = np.stack([ps, pd], axis=1)
        if np.all(keys == keys[0]):
            # A single protocol/port pair (most host-to-host aggregates): it is the answer.
            key = int(keys[0, 0]) >> 40, int(keys[0, 1]) >> 40
            protos = (_proto(key[0] >> 16, key[0] & 0xFFFF, 16, key[1] & 0xFFFF, 16, int(wb.sum()), len(wb), node),)
            return _aggregate(family, node, protos)
        order, starts, _ = group_rows(keys)
        fb = np.add.reduceat(wb[order], starts)
        fp = np.diff(np.append(starts, len(order)))
        tb, tp = config.protocol_limits(node.bytes, node.packets)
        found = hhh_protocols(ps[order][starts, None], pd[order][starts, None], fb, fp, tb, tp, config.criterion)
        rank_key = _rank_key(config.criterion, node.bytes, node.packets)
        found.sort(key=lambda n: -rank_key(n))
        out = []
        for n in found:
            s, d = int(n.src[0]) >> 40, int(n.dst[0]) >> 40
            out.append(_proto(s >> 16, s & 0xFFFF, n.src_len - 8, d & 0xFFFF, n.dst_len - 8, n.bytes, n.packets, node))
        protos = tuple(out)
    if not protos:
        # aguri3 prints "[*:*:*] 100.00% 100.00%" for an aggregate without entries
        # (the catch-all when nothing is left over for it).
        protos = (ProtoAggregate(0, 0, 0, 0, 0, node.bytes, node.packets, 1.0, 1.0),)
    return _aggregate(family, node, protos)


def _proto(
    proto: int, sport: int, slen: int, dport: int, dlen: int, nbytes: int, npkts: int, node: Node
) -> ProtoAggregate:
    return ProtoAggregate(
        proto,
        sport,
        slen,
        dport,
        dlen,
        nbytes,
        npkts,
        nbytes / node.bytes if node.bytes else 0.0,
        npkts / node.packets if node.packets else 0.0,
    )


def _rank_key(criterion: str, total_b: int, total_p: int) -> Callable[[Aggregate | Node], int]:
    """aguri3's ranking: bytes, packets, or for "combination" the larger of the
    bytes and the packets scaled by the mean packet size (truncated to an integer)."""
    if criterion == BYTE:
        return lambda a: a.bytes
    if criterion == PACKET:
        return lambda a: a.packets
    ratio = total_b / total_p if total_p else 0.0
    return lambda a: max(a.bytes, int(ratio * a.packets))


def _aggregate(family: int, node: Node, protos: tuple[ProtoAggregate, ...]) -> Aggregate:
    return Aggregate(
        family,
        _addr_bytes(node.src, family),
        node.src_len,
        _addr_bytes(node.dst, family),
        node.dst_len,
        node.bytes,
        node.packets,
        protos,
    )


def _addr_bytes(words: np.ndarray, family: int) -> bytes:
    if family == 4:
        return IPV4_MAPPED_PREFIX + int(words[0] >> np.uint64(32)).to_bytes(4, "big")
    return int(words[0]).to_bytes(8, "big") + int(words[1]).to_bytes(8, "big")
