"""Flows → aggregates: which of a second's aggregates each (source, destination) pair falls in."""

from __future__ import annotations

import numpy as np

from ..addresses import address_words, in_prefix, is_ipv4_mapped
from ..hashing import pair_hash
from .results import AggregateSet


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
    v4 = is_ipv4_mapped(s_hi, s_lo)
    best = np.full(len(src), -1, dtype=np.int64)
    best_spec = np.full(len(src), -1, dtype=np.int64)
    for k, a in enumerate(agg.aggregates):  # tens per second
        m = v4.copy() if a.family == 4 else ~v4
        for net, plen, hi, lo in ((a.src, a.src_len128, s_hi, s_lo), (a.dst, a.dst_len128, d_hi, d_lo)):
            m &= in_prefix(hi, lo, int.from_bytes(net, "big"), plen)
        spec = a.src_len + a.dst_len
        better = m & (spec > best_spec)
        best[better] = k
        best_spec[better] = spec
    return best
