"""Aggregate stage: AGURIM-style hierarchical heavy hitters for one second.

This follows the rules of WIDE's ``aguri3`` (Kato, Cho, Fukuda, "Agurim",
2014) so that its output can be checked against the original tool: traffic is
first summarized per (source, destination) address pair, then a recursive
search over the lattice of (source prefix, destination prefix) lengths
extracts every aggregate whose *residual* volume — what is left after more
specific aggregates below it were extracted — reaches the threshold (1% of the
second's bytes or packets by default: the "combination" criterion).  The
search visits the bottom edges first (full source with every destination
prefix, then full destination), then the whole lattice, so host-level
aggregates are preferred.  IPv4 prefixes shorter than /16 move in 8-bit
steps; IPv6 never splits the interface identifier (/64../128 are searched
separately) and moves in 16-bit steps below /32.  The catch-all ``* *``
always exists.  Each aggregate's traffic is then summarized the same way over
(protocol, source port) × (protocol, destination port), with a threshold of
4% of the aggregate.  docs/aggregation.md states every rule and every known
difference from aguri3.

Counts are wire bytes (pcap ``orig_len``) and packets of IP packets only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .addresses import format_address
from .flows import address_words, mix64

BYTE, PACKET, COMBINATION = "byte", "packet", "combination"


@dataclass(frozen=True)
class AggregateConfig:
    """Thresholds in percent, as aguri3's ``-t``; protocol thresholds are 4× address ones."""

    threshold: float = 1.0
    criterion: str = COMBINATION
    protocol_factor: int = 4
    protocols: bool = True  # the per-aggregate protocol/port breakdown (not a model feature)

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 100:
            raise ValueError("aggregate threshold must be a percentage in (0, 100]")
        if self.criterion not in (BYTE, PACKET, COMBINATION):
            raise ValueError(f"aggregate criterion must be one of {BYTE}, {PACKET}, {COMBINATION}")
        if self.protocol_factor < 1:
            raise ValueError("protocol_factor must be at least 1")


@dataclass(frozen=True)
class ProtoAggregate:
    """A protocol/port sub-aggregate: proto 0 and port 0 mean '*'."""

    proto: int
    sport: int
    sport_len: int  # 16 = exact port, 0 = any
    dport: int
    dport_len: int
    bytes: int
    packets: int

    def label(self) -> str:
        def port(p: int, n: int) -> str:
            if p == 0:
                return "*"
            return str(p) if n >= 16 else f"{p}-{p + (1 << (16 - n)) - 1}"

        return f"[{self.proto or '*'}:{port(self.sport, self.sport_len)}:{port(self.dport, self.dport_len)}]"


@dataclass(frozen=True)
class Aggregate:
    """One heavy hitter: a (source prefix, destination prefix) pair of one address family."""

    family: int  # 4 or 6
    src: bytes  # 16-byte address (IPv4-mapped for IPv4), host bits zeroed
    src_len: int  # prefix length within the family: 0..32 or 0..128
    dst: bytes
    dst_len: int
    bytes: int  # residual volume: what no more specific aggregate took
    packets: int
    protocols: tuple[ProtoAggregate, ...] = ()

    def _prefix(self, addr: bytes, plen: int) -> str:
        if plen == 0:
            return "*" if self.family == 4 else "*::"
        text = format_address(addr)
        full = 32 if self.family == 4 else 128
        return text if plen == full else f"{text}/{plen}"

    @property
    def src_text(self) -> str:
        return self._prefix(self.src, self.src_len)

    @property
    def dst_text(self) -> str:
        return self._prefix(self.dst, self.dst_len)

    def spec(self) -> tuple[int, int]:
        """Prefix lengths in the 128-bit space the packet records use."""
        off = 96 if self.family == 4 else 0
        return self.src_len + off, self.dst_len + off


@dataclass(frozen=True)
class AggregateSet:
    """All aggregates of one second, ranked as aguri3 ranks them."""

    total_bytes: int
    total_packets: int
    input_flows: dict = field(default_factory=dict)  # distinct address pairs per family
    aggregates: tuple[Aggregate, ...] = ()
    # Which aggregate took each address pair: sorted pair hashes → aggregate index.
    pair_keys: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64), repr=False)
    pair_aggregate: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)

    def __len__(self) -> int:
        return len(self.aggregates)


# ---------------------------------------------------------------------------
# The lattice search, over any address space whose keys fit in 64-bit words.


class _Space:
    """Keys of ``bits`` bits held in W uint64 words, top-aligned, most significant first."""

    def __init__(self, bits: int, words: int):
        self.bits = bits
        self.words = words
        self._masks = [self._mask(n) for n in range(bits + 1)]

    def _mask(self, plen: int) -> np.ndarray:
        out = np.zeros(self.words, dtype=np.uint64)
        for w in range(self.words):
            n = min(max(plen - 64 * w, 0), 64)
            if n:
                out[w] = np.uint64(((1 << n) - 1) << (64 - n))
        return out

    def masks(self, plen: int) -> np.ndarray:
        return self._masks[plen]


@dataclass
class _Node:
    members: np.ndarray  # indices of the input flows inside this aggregate
    src: np.ndarray  # (W,) masked words
    dst: np.ndarray
    src_len: int
    dst_len: int
    bytes: int
    packets: int
    protos: list = field(default_factory=list)


_LOWER, _LEFT, _RIGHT, _UPPER = range(4)


class _Lattice:
    """Recursive lattice search of aguri3's hhh.c, re-expressed over numpy groups."""

    def __init__(self, space, src, dst, nbytes, npkts, thresh_b, thresh_p, criterion,
                 minsize, cutoff, cutoffres):
        self.space = space
        self.src, self.dst = src, dst
        self.bytes, self.pkts = nbytes, npkts
        self.alive = np.ones(len(nbytes), dtype=bool)
        self.tb, self.tp = thresh_b, thresh_p
        self.criterion = criterion
        self.minsize, self.cutoff, self.cutoffres = minsize, cutoff, cutoffres
        self.maxsize = space.bits
        self.out: list[_Node] = []

    def heavy(self, node: _Node) -> bool:
        if self.criterion == PACKET:
            ok = node.packets >= self.tp
        elif self.criterion == BYTE:
            ok = node.bytes >= self.tb
        else:
            ok = node.packets >= self.tp or node.bytes >= self.tb
        return ok or (node.src_len == 0 and node.dst_len == 0)

    def _group(self, parent: _Node, pl0: int, pl1: int) -> list[_Node]:
        m = parent.members[self.alive[parent.members]]
        if len(m) == 0:
            return []
        if len(m) == 1:
            # One member: one group, no sorting (the common case deep in the lattice).
            i = int(m[0])
            node = _Node(m, self.src[i] & self.space.masks(pl0), self.dst[i] & self.space.masks(pl1),
                         pl0, pl1, int(self.bytes[i]), int(self.pkts[i]))
            return [node] if self.heavy(node) else []
        s = self.src[m] & self.space.masks(pl0)
        d = self.dst[m] & self.space.masks(pl1)
        keys = np.concatenate([s, d], axis=1)
        if keys.shape[1] == 2:
            # One word a side: combine for a fast 1-D sort (IPv4, protocol space).
            shift = np.uint64(self.space.bits)
            flat = (keys[:, 0] >> np.uint64(64 - self.space.bits)) << shift | (keys[:, 1] >> np.uint64(64 - self.space.bits))
            order = np.argsort(flat, kind="stable")
            fs = flat[order]
            starts = _run_starts(fs[1:] != fs[:-1])
        else:
            order = np.lexsort(keys.T[::-1])
            ks = keys[order]
            starts = _run_starts(np.any(ks[1:] != ks[:-1], axis=1))
        mo = m[order]
        b = np.add.reduceat(self.bytes[mo], starts)
        p = np.add.reduceat(self.pkts[mo], starts)
        ends = np.append(starts[1:], len(mo))
        # Residual volume only shrinks during the search, so a group below the
        # threshold now can neither recurse nor be extracted: never build it.
        if self.criterion == PACKET:
            keep = p >= self.tp
        elif self.criterion == BYTE:
            keep = b >= self.tb
        else:
            keep = (p >= self.tp) | (b >= self.tb)
        if pl0 == 0 and pl1 == 0:
            keep[:] = True
        sel = np.flatnonzero(keep)
        first = order[starts[sel]]
        return [
            _Node(mo[a:e], s[f], d[f], pl0, pl1, int(bb), int(pp))
            for a, e, f, bb, pp in zip(
                starts[sel].tolist(), ends[sel].tolist(), first.tolist(), b[sel].tolist(), p[sel].tolist()
            )
        ]

    def search(self, parent: _Node, pl0: int, pl1: int, size: int, pos: int) -> int:
        maxsize = self.maxsize
        on_edge = _LEFT if pl0 == maxsize else _RIGHT if pl1 == maxsize else 0
        do_aggregate, do_recurse = pos != _UPPER, True
        if size <= self.minsize:
            do_recurse = on_edge == _LEFT and size != 0 and pl1 + size == maxsize
        if max(pl0, pl1) < self.cutoff and size == self.cutoffres:
            do_recurse = False
        if not (do_aggregate or do_recurse):
            return 0
        if do_aggregate:
            children = self._group(parent, pl0, pl1)  # only groups at or above the threshold
            if not children:
                return 0
        else:
            children = [parent]  # recurse into sub-areas of the parent itself
        found = 0
        if do_recurse:
            if size == self.minsize:
                delta, subsize = size, 0
            else:
                delta = subsize = size // 2
            if self.space.bits == 128 and pl0 + pl1 == 192:
                delta, subsize = size, 0  # never split an IPv6 interface identifier
            for child in children:
                for subpos in (_LOWER, _LEFT, _RIGHT, _UPPER):
                    if on_edge and subpos in (_LEFT, _RIGHT):
                        continue
                    if not self.heavy(child):
                        break
                    s0, s1 = pl0, pl1
                    if subpos == _LOWER:
                        if on_edge == _LEFT:
                            s1 += delta
                        elif on_edge == _RIGHT:
                            s0 += delta
                        else:
                            s0 += delta
                            s1 += delta
                    elif subpos == _LEFT:
                        s0 += delta
                    elif subpos == _RIGHT:
                        s1 += delta
                    lo = min(s0, s1)
                    if lo < self.cutoff and lo % self.cutoffres:
                        continue
                    b, p = child.bytes, child.packets
                    n = self.search(child, s0, s1, subsize, subpos)
                    found += n
                    if n and do_aggregate:
                        parent.bytes -= b - child.bytes
                        parent.packets -= p - child.packets
        if do_aggregate and self.heavy(parent):
            for child in children:
                if not self.heavy(child):
                    continue
                parent.bytes -= child.bytes
                parent.packets -= child.packets
                child.members = child.members[self.alive[child.members]]
                self.alive[child.members] = False
                self.out.append(child)
                found += 1
        return found


def _root(n: int, nbytes: np.ndarray, npkts: np.ndarray, words: int) -> _Node:
    z = np.zeros(words, dtype=np.uint64)
    return _Node(np.arange(n), z, z, 0, 0, int(nbytes.sum()), int(npkts.sum()))


def _hhh_addresses(space, src, dst, nbytes, npkts, tb, tp, criterion) -> list[_Node]:
    if len(nbytes) == 0:
        return []
    if space.bits == 32:
        lat = _Lattice(space, src, dst, nbytes, npkts, tb, tp, criterion, 1, 16, 8)
        root = _root(len(nbytes), nbytes, npkts, space.words)
        lat.search(root, 32, 0, 32, _LOWER)
        lat.search(root, 0, 32, 32, _LOWER)
        lat.search(root, 0, 0, 32, _LOWER)
    else:
        lat = _Lattice(space, src, dst, nbytes, npkts, tb, tp, criterion, 1, 32, 16)
        root = _root(len(nbytes), nbytes, npkts, space.words)
        lat.search(root, 128, 0, 128, _LOWER)
        lat.search(root, 0, 128, 128, _LOWER)
        lat.maxsize = 64
        lat.search(root, 64, 0, 64, _LOWER)
        lat.search(root, 0, 64, 64, _LOWER)
        lat.search(root, 0, 0, 64, _LOWER)
    return lat.out


_PROTO_SPACE = _Space(24, 1)


def _hhh_protocols(proto_src, proto_dst, nbytes, npkts, tb, tp, criterion) -> list[_Node]:
    """Protocol/port aggregation: keys are proto<<16|port, 24 bits each side."""
    lat = _Lattice(_PROTO_SPACE, proto_src, proto_dst, nbytes, npkts, tb, tp, criterion, 16, 0, 1)
    root = _root(len(nbytes), nbytes, npkts, 1)
    lat.search(root, 24, 8, 16, _LOWER)
    lat.search(root, 8, 24, 16, _LOWER)
    lat.search(root, 8, 8, 16, _LOWER)
    return lat.out


def _run_starts(changed: np.ndarray) -> np.ndarray:
    """Start index of each run, given ``changed[i]`` = row i+1 differs from row i."""
    out = np.empty(len(changed) + 1, dtype=bool)
    out[0] = True
    out[1:] = changed
    return np.flatnonzero(out)


def _group_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort rows of keys; return (order, group starts, group id per sorted row)."""
    order = np.lexsort(keys.T[::-1])
    ks = keys[order]
    new = np.empty(len(ks), dtype=bool)
    new[0] = True
    new[1:] = np.any(ks[1:] != ks[:-1], axis=1)
    return order, np.flatnonzero(new), np.cumsum(new) - 1


def _words(addr: np.ndarray, family: int) -> np.ndarray:
    w = np.ascontiguousarray(addr).view(">u8").astype(np.uint64)
    if family == 4:
        # The IPv4 address sits in the low 32 bits of the second word: move it to the top.
        return (w[:, 1:2] & np.uint64(0xFFFFFFFF)) << np.uint64(32)
    return w


def aggregate_second(packets: np.ndarray, config: AggregateConfig = AggregateConfig()) -> AggregateSet:
    """AGURIM-style aggregates of one second's ``PACKET_DTYPE`` records."""
    is_ip = packets["l3"] != 0
    ip = packets if is_ip.all() else packets[is_ip]
    total_b = int(ip["wire_len"].sum(dtype=np.uint64))
    total_p = len(ip)
    if total_p == 0:
        return AggregateSet(0, 0, {4: 0, 6: 0})
    tb = (total_b * config.threshold + 99) // 100
    tp = (total_p * config.threshold + 99) // 100
    # aguri3 takes ICMP type and code as both ports; every other protocol its ports.
    icmp = ip["proto"] == 1
    code = (ip["icmp_type"].astype(np.uint64) << np.uint64(8)) | ip["icmp_code"]
    sport = np.where(icmp, code, ip["sport"]).astype(np.uint64)
    dport = np.where(icmp, code, ip["dport"]).astype(np.uint64)
    proto = ip["proto"].astype(np.uint64)

    nodes: list[tuple[int, _Node, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    pair_keys: list[np.ndarray] = []
    pair_agg: list[np.ndarray] = []
    inputs = {}
    for family, bits, words in ((4, 32, 1), (6, 128, 2)):
        sel = np.flatnonzero(ip["l3"] == family)
        inputs[family] = 0
        if len(sel) == 0:
            continue
        src = _words(ip["src"][sel], family)
        dst = _words(ip["dst"][sel], family)
        # Input odflows: one per address pair.
        keys = np.concatenate([src, dst], axis=1)
        order, starts, gid = _group_rows(keys)
        inputs[family] = len(starts)
        wb = ip["wire_len"][sel][order].astype(np.int64)
        fb = np.add.reduceat(wb, starts)
        fp = np.diff(np.append(starts, len(order)))
        space = _Space(bits, words)
        found = _hhh_addresses(space, keys[order][starts, :words], keys[order][starts, words:], fb, fp, tb, tp,
                               config.criterion)
        # Which aggregate took each packet's input flow, for the protocol summaries.
        agg_of_flow = np.full(len(starts), -1, dtype=np.int64)
        for k, node in enumerate(found):
            agg_of_flow[node.members] = k
        rep = sel[order[starts]]  # one packet per input flow
        pair_keys.append(pair_hash(ip["src"][rep], ip["dst"][rep]))
        pair_agg.append(agg_of_flow + len(nodes))
        if not config.protocols:
            nodes += [(family, node, None, None, None, None) for node in found]
            continue
        pkt_agg = np.empty(len(sel), dtype=np.int64)
        pkt_agg[order] = agg_of_flow[gid]
        by_agg = np.argsort(pkt_agg, kind="stable")
        cuts = np.searchsorted(pkt_agg[by_agg], np.arange(len(found) + 1))
        for k, node in enumerate(found):
            rows = sel[by_agg[cuts[k] : cuts[k + 1]]]
            nodes.append((family, node, proto[rows], sport[rows], dport[rows], ip["wire_len"][rows].astype(np.int64)))

    aggs = [
        _with_protocols(family, node, pr, sp, dp, wb, config) if config.protocols else _aggregate(family, node, ())
        for family, node, pr, sp, dp, wb in nodes
    ]
    ratio = total_b / total_p
    rank = sorted(range(len(aggs)), key=lambda i: -max(aggs[i].bytes, int(ratio * aggs[i].packets)))
    new_index = np.empty(len(aggs), dtype=np.int64)
    new_index[rank] = np.arange(len(aggs))
    keys = np.concatenate(pair_keys)
    owner = new_index[np.concatenate(pair_agg)]
    by_key = np.argsort(keys)
    return AggregateSet(total_b, total_p, inputs, tuple(aggs[i] for i in rank), keys[by_key], owner[by_key])


def pair_hash(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """64-bit hash of (src, dst) 16-byte address pairs, directional."""
    s_hi, s_lo = address_words(src)
    d_hi, d_lo = address_words(dst)
    h = np.zeros(len(src), dtype=np.uint64)
    for w in (s_hi, s_lo, d_hi, d_lo):
        h = mix64(h, w)
    return h


def _with_protocols(family, node: _Node, pr, sp, dp, wb, config) -> Aggregate:
    protos: tuple[ProtoAggregate, ...] = ()
    if len(pr):
        ps = (pr << np.uint64(16) | sp) << np.uint64(40)
        pd = (pr << np.uint64(16) | dp) << np.uint64(40)
        keys = np.stack([ps, pd], axis=1)
        if np.all(keys == keys[0]):
            # A single protocol/port pair (most host-to-host aggregates): it is the answer.
            key = int(keys[0, 0]) >> 40, int(keys[0, 1]) >> 40
            protos = (ProtoAggregate(key[0] >> 16, key[0] & 0xFFFF, 16, key[1] & 0xFFFF, 16,
                                     int(wb.sum()), len(wb)),)
            return _aggregate(family, node, protos)
        order, starts, _ = _group_rows(keys)
        fb = np.add.reduceat(wb[order], starts)
        fp = np.diff(np.append(starts, len(order)))
        f = config.protocol_factor
        tb = (node.bytes * config.threshold + 99) // 100 * f
        tp = (node.packets * config.threshold + 99) // 100 * f
        found = _hhh_protocols(ps[order][starts, None], pd[order][starts, None], fb, fp, tb, tp, config.criterion)
        ratio = node.bytes / max(node.packets, 1)
        found.sort(key=lambda n: -max(n.bytes, int(ratio * n.packets)))
        out = []
        for n in found:
            s, d = int(n.src[0]) >> 40, int(n.dst[0]) >> 40
            out.append(ProtoAggregate(s >> 16, s & 0xFFFF, n.src_len - 8, d & 0xFFFF, n.dst_len - 8,
                                      n.bytes, n.packets))
        protos = tuple(out)
    return _aggregate(family, node, protos)


def _aggregate(family: int, node: _Node, protos: tuple[ProtoAggregate, ...]) -> Aggregate:
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
        return bytes(10) + b"\xff\xff" + int(words[0] >> np.uint64(32)).to_bytes(4, "big")
    return int(words[0]).to_bytes(8, "big") + int(words[1]).to_bytes(8, "big")


def to_json_dict(agg: AggregateSet) -> list[dict]:
    """Aggregates as ``inspect --json`` writes them, in rank order."""
    return [
        {
            "src": a.src_text,
            "dst": a.dst_text,
            "bytes": a.bytes,
            "packets": a.packets,
            "protocols": [
                {"label": p.label(), "bytes": p.bytes, "packets": p.packets} for p in a.protocols
            ],
        }
        for a in agg.aggregates
    ]


def match_aggregates(agg: AggregateSet, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Per (src, dst) row, the index of the aggregate that took that address pair's
    traffic in this second, or -1 if the pair sent nothing in this second."""
    out = np.full(len(src), -1, dtype=np.int64)
    if len(src) == 0 or len(agg.pair_keys) == 0:
        return out
    h = pair_hash(src, dst)
    pos = np.minimum(np.searchsorted(agg.pair_keys, h), len(agg.pair_keys) - 1)
    hit = agg.pair_keys[pos] == h
    out[hit] = agg.pair_aggregate[pos[hit]]
    return out
