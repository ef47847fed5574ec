"""The lattice search of aguri3's ``hhh.c``, over any key space that fits in 64-bit words.

Keys are (source, destination) pairs of W uint64 words each, top-aligned. The
search walks the lattice of (source prefix length, destination prefix length)
from the most specific corner up, extracting every group whose residual
volume — what more specific groups extracted below it left — reaches the
threshold. The same search serves addresses (IPv4: 32 bits in one word, IPv6:
128 bits in two) and the (protocol, port) pairs of one aggregate (24 bits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import BYTE, PACKET


class Space:
    """Keys of ``bits`` bits held in W uint64 words, top-aligned, most significant first."""

    def __init__(self, bits: int, words: int) -> None:
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
        """The (W,) words that keep the first ``plen`` bits of a key."""
        return self._masks[plen]


@dataclass
class Node:
    """A group of input flows under one (source prefix, destination prefix); its volume is residual."""

    members: np.ndarray  # indices of the input flows inside this aggregate
    src: np.ndarray  # (W,) masked words
    dst: np.ndarray
    src_len: int
    dst_len: int
    bytes: int
    packets: int


_LOWER, _LEFT, _RIGHT, _UPPER = range(4)


class _Lattice:
    """Recursive lattice search of aguri3's hhh.c, re-expressed over numpy groups."""

    def __init__(
        self,
        space: Space,
        src: np.ndarray,
        dst: np.ndarray,
        nbytes: np.ndarray,
        npkts: np.ndarray,
        thresh_b: int,
        thresh_p: int,
        criterion: str,
        minsize: int,
        cutoff: int,
        cutoffres: int,
    ) -> None:
        self.space = space
        self.src, self.dst = src, dst
        self.bytes, self.pkts = nbytes, npkts
        self.alive = np.ones(len(nbytes), dtype=bool)
        self.tb, self.tp = thresh_b, thresh_p
        self.criterion = criterion
        self.minsize, self.cutoff, self.cutoffres = minsize, cutoff, cutoffres
        self.maxsize = space.bits
        self.out: list[Node] = []

    def heavy(self, node: Node) -> bool:
        if self.criterion == PACKET:
            ok = node.packets >= self.tp
        elif self.criterion == BYTE:
            ok = node.bytes >= self.tb
        else:
            ok = node.packets >= self.tp or node.bytes >= self.tb
        return ok or (node.src_len == 0 and node.dst_len == 0)

    def _group(self, parent: Node, pl0: int, pl1: int) -> list[Node]:
        m = parent.members[self.alive[parent.members]]
        if len(m) == 0:
            return []
        if len(m) == 1:
            # One member: one group, no sorting (the common case deep in the lattice).
            i = int(m[0])
            node = Node(
                m,
                self.src[i] & self.space.masks(pl0),
                self.dst[i] & self.space.masks(pl1),
                pl0,
                pl1,
                int(self.bytes[i]),
                int(self.pkts[i]),
            )
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
            Node(mo[a:e], s[f], d[f], pl0, pl1, int(bb), int(pp))
            for a, e, f, bb, pp in zip(
                starts[sel].tolist(),
                ends[sel].tolist(),
                first.tolist(),
                b[sel].tolist(),
                p[sel].tolist(),
                strict=True,
            )
        ]

    def search(self, parent: Node, pl0: int, pl1: int, size: int, pos: int) -> int:
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


def _root(n: int, nbytes: np.ndarray, npkts: np.ndarray, words: int) -> Node:
    z = np.zeros(words, dtype=np.uint64)
    return Node(np.arange(n), z, z, 0, 0, int(nbytes.sum()), int(npkts.sum()))


def hhh_addresses(
    space: Space,
    src: np.ndarray,
    dst: np.ndarray,
    nbytes: np.ndarray,
    npkts: np.ndarray,
    tb: int,
    tp: int,
    criterion: str,
) -> list[Node]:
    """Address aggregates of one family's input flows, in the order aguri3 extracts them.

    The bottom edges first (full source with every destination prefix, then full
    destination), then the whole lattice. IPv4 prefixes shorter than /16 move in
    8-bit steps; IPv6 ones shorter than /32 in 16-bit steps, and IPv6 searches
    /64../128 apart from the rest so an interface identifier is never split.
    """
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


_PROTO_SPACE = Space(24, 1)


def hhh_protocols(
    proto_src: np.ndarray,
    proto_dst: np.ndarray,
    nbytes: np.ndarray,
    npkts: np.ndarray,
    tb: int,
    tp: int,
    criterion: str,
) -> list[Node]:
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


def group_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort rows of keys; return (order, group starts, group id per sorted row)."""
    order = np.lexsort(keys.T[::-1])
    ks = keys[order]
    new = np.empty(len(ks), dtype=bool)
    new[0] = True
    new[1:] = np.any(ks[1:] != ks[:-1], axis=1)
    return order, np.flatnonzero(new), np.cumsum(new) - 1
