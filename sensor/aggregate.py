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
appears whenever traffic is left after the host-level passes.  Each
aggregate's traffic is then summarized the same way over (protocol, source
port) × (protocol, destination port), with a threshold of 4% of the aggregate.  docs/aggregation.md states every rule and every known
difference from aguri3.

Counts are wire bytes (pcap ``orig_len``) and packets of IP packets only.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .capture.records import FRAG_FRAGMENT, FRAG_MF, FRAG_NONFIRST
from .flows import address_words, mix64

BYTE, PACKET, COMBINATION = "byte", "packet", "combination"


@dataclass(frozen=True)
class AggregateConfig:
    """Thresholds as fractions of the second's volume (aguri3's ``-t 1`` is 0.01).

    ``address_threshold``: an address aggregate is kept when its residual
    bytes or packets (see ``criterion``) reach this fraction of the second's.
    ``protocol_threshold``: a protocol/port sub-entry is kept when it reaches
    this fraction of its aggregate; aguri3 uses 4 × the address threshold.
    ``criterion``: "combination" (bytes or packets), "byte" or "packet"
    (aguri3's ``-p``/``-b``-style modes; they also decide the ranking).
    ``protocols``: compute the per-aggregate protocol/port breakdown (only
    ``inspect`` shows it; the model does not use it).
    """

    address_threshold: float = 0.01
    protocol_threshold: float = 0.04
    criterion: str = COMBINATION
    protocols: bool = True

    def __post_init__(self) -> None:
        for name in ("address_threshold", "protocol_threshold"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
                raise ValueError(f"AggregateConfig.{name} must be a fraction in (0, 1], got {v!r}")
        if self.criterion not in (BYTE, PACKET, COMBINATION):
            raise ValueError(
                f"AggregateConfig.criterion must be one of {BYTE!r}, {PACKET!r}, {COMBINATION!r}, "
                f"got {self.criterion!r}"
            )
        if not isinstance(self.protocols, bool):
            raise ValueError(f"AggregateConfig.protocols must be true or false, got {self.protocols!r}")

    def address_limits(self, nbytes: int, npackets: int) -> tuple[int, int]:
        """Integer (bytes, packets) thresholds: ceil(volume × fraction), as aguri3 rounds."""
        f = _fraction(self.address_threshold)
        return _ceil_mul(nbytes, f), _ceil_mul(npackets, f)

    def protocol_limits(self, nbytes: int, npackets: int) -> tuple[int, int]:
        """Thresholds for one aggregate's protocol/port entries.

        aguri3 rounds the address percentage first and then multiplies by 4;
        when the protocol threshold is a whole multiple of the address one (the
        default 0.04 = 4 × 0.01) we round the same way, otherwise ceil(volume × fraction).
        """
        a, q = _fraction(self.address_threshold), _fraction(self.protocol_threshold)
        k = q / a
        if k.denominator == 1:
            return _ceil_mul(nbytes, a) * k.numerator, _ceil_mul(npackets, a) * k.numerator
        return _ceil_mul(nbytes, q), _ceil_mul(npackets, q)


def _fraction(x: float) -> Fraction:
    # 0.01 is not exactly representable; read it as the decimal the user meant.
    return Fraction(x).limit_denominator(10**9)


def _ceil_mul(n: int, f: Fraction) -> int:
    return -((-n * f.numerator) // f.denominator)


@dataclass(frozen=True)
class ProtoAggregate:
    """A protocol/port sub-entry of one aggregate.

    ``sport``/``dport`` are the first port of a range of ``2**(16 - len)``
    ports (len 16 = one port, 0 = any). proto 0 with both lengths 0 is
    aguri3's ``[*:*:*]`` placeholder for an aggregate without any entry.
    Shares are fractions of the aggregate's own bytes and packets.
    """

    proto: int
    sport: int
    sport_len: int
    dport: int
    dport_len: int
    bytes: int
    packets: int
    byte_share: float = 0.0
    packet_share: float = 0.0

    @property
    def sport_range(self) -> tuple[int, int]:
        return self.sport, self.sport + (1 << (16 - self.sport_len)) - 1

    @property
    def dport_range(self) -> tuple[int, int]:
        return self.dport, self.dport + (1 << (16 - self.dport_len)) - 1

    def label(self) -> str:
        """``[6:443:*]``, ``[17:1024-2047:53]``: aguri3's notation (port 0 reads ``*``)."""

        def port(p: int, n: int) -> str:
            if p == 0:
                return "*"
            return str(p) if n >= 16 else f"{p}-{p + (1 << (16 - n)) - 1}"

        return f"[{self.proto or '*'}:{port(self.sport, self.sport_len)}:{port(self.dport, self.dport_len)}]"


@dataclass(frozen=True)
class Aggregate:
    """One heavy hitter: a (source prefix, destination prefix) pair of one address family."""

    family: int  # 4 or 6
    src: bytes  # 16-byte network address (IPv4-mapped ::ffff:a.b.c.d for IPv4), host bits zeroed
    src_len: int  # prefix length within the family: 0..32 or 0..128
    dst: bytes
    dst_len: int
    bytes: int  # residual volume: what no more specific aggregate took
    packets: int
    protocols: tuple[ProtoAggregate, ...] = ()

    @property
    def src_len128(self) -> int:
        """Source prefix length in the 128-bit space of the packet records."""
        return self.src_len + (96 if self.family == 4 else 0)

    @property
    def dst_len128(self) -> int:
        return self.dst_len + (96 if self.family == 4 else 0)

    def spec(self) -> tuple[int, int]:
        """(src, dst) prefix lengths in the 128-bit space the packet records use."""
        return self.src_len128, self.dst_len128

    @property
    def src_text(self) -> str:
        return render_prefix(self.src, self.src_len, self.family)

    @property
    def dst_text(self) -> str:
        return render_prefix(self.dst, self.dst_len, self.family)

    def label(self) -> str:
        """``src dst`` as aguri3 writes an entry."""
        return f"{self.src_text} {self.dst_text}"


def render_prefix(addr: bytes, plen: int, family: int) -> str:
    """A prefix as aguri3 prints it: ``*`` / ``*::`` for length 0, the bare
    address at full length, ``address/len`` otherwise (IPv6 as glibc's inet_ntop)."""
    if plen == 0:
        return "*" if family == 4 else "*::"
    addr = bytes(addr)
    if family == 4:
        text = ".".join(str(x) for x in addr[12:16])
        return text if plen == 32 else f"{text}/{plen}"
    text = _ntop6(addr)
    return text if plen == 128 else f"{text}/{plen}"


def _ntop6(addr: bytes) -> str:
    """glibc ``inet_ntop(AF_INET6)``: the first longest run of two or more zero
    words becomes ``::``; ``::a.b.c.d`` and ``::ffff:a.b.c.d`` keep a dotted tail."""
    words = [int.from_bytes(addr[i : i + 2], "big") for i in range(0, 16, 2)]
    best_base, best_len, cur_base, cur_len = -1, 0, -1, 0
    for i, w in enumerate(words + [1]):  # a sentinel closes a trailing run
        if w == 0:
            if cur_base < 0:
                cur_base, cur_len = i, 0
            cur_len += 1
        elif cur_base >= 0:
            if cur_len > best_len:
                best_base, best_len = cur_base, cur_len
            cur_base = -1
    if best_len < 2:
        best_base = -1
    out = ""
    for i, w in enumerate(words):
        if best_base >= 0 and best_base <= i < best_base + best_len:
            if i == best_base:
                out += ":"
            continue
        if i:
            out += ":"
        if i == 6 and best_base == 0 and (best_len == 6 or (best_len == 5 and words[5] == 0xFFFF)):
            out += ".".join(str(x) for x in addr[12:16])
            return out
        out += f"{w:x}"
    if best_base >= 0 and best_base + best_len == 8:
        out += ":"
    return out


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
            low = np.uint64(64 - self.space.bits)
            flat = (keys[:, 0] >> low) << shift | (keys[:, 1] >> low)
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
    tb, tp = config.address_limits(total_b, total_p)
    proto = ip["proto"].astype(np.uint64)
    sport, dport = _aguri_ports(ip) if config.protocols else (None, None)

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
    key = _rank_key(config.criterion, total_b, total_p)
    rank = sorted(range(len(aggs)), key=lambda i: -key(aggs[i]))
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
            protos = (_proto(key[0] >> 16, key[0] & 0xFFFF, 16, key[1] & 0xFFFF, 16, int(wb.sum()), len(wb), node),)
            return _aggregate(family, node, protos)
        order, starts, _ = _group_rows(keys)
        fb = np.add.reduceat(wb[order], starts)
        fp = np.diff(np.append(starts, len(order)))
        tb, tp = config.protocol_limits(node.bytes, node.packets)
        found = _hhh_protocols(ps[order][starts, None], pd[order][starts, None], fb, fp, tb, tp, config.criterion)
        key = _rank_key(config.criterion, node.bytes, node.packets)
        found.sort(key=lambda n: -key(n))
        out = []
        for n in found:
            s, d = int(n.src[0]) >> 40, int(n.dst[0]) >> 40
            out.append(_proto(s >> 16, s & 0xFFFF, n.src_len - 8, d & 0xFFFF, n.dst_len - 8,
                              n.bytes, n.packets, node))
        protos = tuple(out)
    if not protos:
        # aguri3 prints "[*:*:*] 100.00% 100.00%" for an aggregate without entries
        # (the catch-all when nothing is left over for it).
        protos = (ProtoAggregate(0, 0, 0, 0, 0, node.bytes, node.packets, 1.0, 1.0),)
    return _aggregate(family, node, protos)


def _proto(proto, sport, slen, dport, dlen, nbytes, npkts, node: _Node) -> ProtoAggregate:
    return ProtoAggregate(proto, sport, slen, dport, dlen, nbytes, npkts,
                          nbytes / node.bytes if node.bytes else 0.0,
                          npkts / node.packets if node.packets else 0.0)


def _rank_key(criterion: str, total_b: int, total_p: int):
    """aguri3's ranking: bytes, packets, or for "combination" the larger of the
    bytes and the packets scaled by the mean packet size (truncated to an integer)."""
    if criterion == BYTE:
        return lambda a: a.bytes
    if criterion == PACKET:
        return lambda a: a.packets
    ratio = total_b / total_p if total_p else 0.0
    return lambda a: max(a.bytes, int(ratio * a.packets))


def _aguri_ports(ip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (sport, dport) aguri3 files each packet under.

    TCP and UDP: their ports. ICMP and ICMPv6: the (type << 8 | code) word as both
    ports. Any other protocol: 0 (aguri3 reads no ports for SCTP, DCCP, ...).
    IPv4 non-first TCP/UDP fragments: the ports of the datagram's first fragment,
    which aguri3 remembers; we take the latest first fragment of the same
    (src, dst, proto) earlier in this second, until that datagram's last fragment.
    """
    proto = ip["proto"]
    l3 = ip["l3"]
    tcpudp = (proto == 6) | (proto == 17)
    icmp = ((proto == 1) & (l3 == 4)) | ((proto == 58) & (l3 == 6))
    code = (ip["icmp_type"].astype(np.uint64) << np.uint64(8)) | ip["icmp_code"]
    sport = np.where(icmp, code, np.where(tcpudp, ip["sport"], 0)).astype(np.uint64)
    dport = np.where(icmp, code, np.where(tcpudp, ip["dport"], 0)).astype(np.uint64)
    frag = ip["frag"]
    v4frag = tcpudp & (l3 == 4) & ((frag & FRAG_FRAGMENT) != 0)
    nonfirst = v4frag & ((frag & FRAG_NONFIRST) != 0)
    if not nonfirst.any():
        return sport, dport
    rows = np.flatnonzero(v4frag)
    first = ~nonfirst[rows] & ((frag[rows] & FRAG_MF) != 0)
    last = nonfirst[rows] & ((frag[rows] & FRAG_MF) == 0)
    key = pair_hash(ip["src"][rows], ip["dst"][rows]) ^ proto[rows].astype(np.uint64)
    order = np.lexsort((rows, key))  # by key, then arrival
    k, f, la = key[order], first[order], last[order]
    n = len(order)
    pos = np.arange(n)
    start = np.maximum.accumulate(np.where(np.r_[True, k[1:] != k[:-1]], pos, 0))
    src_pos = np.maximum.accumulate(np.where(f, pos, -1))
    # a last fragment closes its datagram: later fragments need a new first fragment
    closed = np.maximum.accumulate(np.where(la, pos, -1))
    closed_before = np.r_[-1, closed[:-1]]
    ok = ~f & (src_pos >= start) & (src_pos > closed_before)
    tgt = rows[order[ok]]
    srow = rows[order[src_pos[ok]]]
    sport[tgt] = sport[srow]
    dport[tgt] = dport[srow]
    return sport, dport


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


def match_aggregates(agg: AggregateSet, src: np.ndarray, dst: np.ndarray, containing: bool = False) -> np.ndarray:
    """Per (src, dst) row of 16-byte addresses, the index into ``agg.aggregates``
    of the aggregate the pair falls in, or -1.

    A pair that sent traffic in this second maps to the aggregate that took that
    traffic: the one whose counts include it (with aguri3's residual counting
    this is unique, and it is the pair's most specific containing aggregate in
    the order aguri3 extracts them). A pair that sent nothing this second maps
    to -1, or with ``containing=True`` to the most specific aggregate of its
    family whose prefixes contain it (longest src + dst prefix; ties: better
    rank), which is -1 only when no traffic of that family was seen.
    """
    n = len(src)
    out = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return out
    if len(agg.pair_keys):
        h = pair_hash(src, dst)
        pos = np.minimum(np.searchsorted(agg.pair_keys, h), len(agg.pair_keys) - 1)
        hit = agg.pair_keys[pos] == h
        out[hit] = agg.pair_aggregate[pos[hit]]
    if containing and (out < 0).any():
        rest = np.flatnonzero(out < 0)
        out[rest] = _most_specific(agg, src[rest], dst[rest])
    return out


def _most_specific(agg: AggregateSet, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    s_hi, s_lo = address_words(src)
    d_hi, d_lo = address_words(dst)
    v4 = (s_hi == 0) & ((s_lo >> np.uint64(32)) == np.uint64(0xFFFF))
    best = np.full(len(src), -1, dtype=np.int64)
    best_spec = np.full(len(src), -1, dtype=np.int64)
    for k, a in enumerate(agg.aggregates):  # tens per second
        m = v4.copy() if a.family == 4 else ~v4
        for net, plen, hi, lo in ((a.src, a.src_len128, s_hi, s_lo), (a.dst, a.dst_len128, d_hi, d_lo)):
            mask = ((1 << 128) - 1) ^ ((1 << (128 - plen)) - 1)
            net_i = int.from_bytes(net, "big") & mask
            m &= (hi & np.uint64(mask >> 64)) == np.uint64(net_i >> 64)
            m &= (lo & np.uint64(mask & 0xFFFFFFFFFFFFFFFF)) == np.uint64(net_i & 0xFFFFFFFFFFFFFFFF)
        spec = a.src_len + a.dst_len
        better = m & (spec > best_spec)
        best[better] = k
        best_spec[better] = spec
    return best
