"""The 64-bit hashes the sensor keys its tables by: flows, address pairs, addresses.

Every hash here is part of the sensor's behaviour (flow ids in EVE output derive
from ``endpoint_order``), so changing one changes the output.
"""

from __future__ import annotations

import numpy as np

from .addresses import address_words

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def mix64(h: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Fold a uint64 column into a running hash (vectorized)."""
    # splitmix64 finalizer over (h + w): cheap, vectorized, well distributed.
    z = h ^ (w + _GOLDEN + (h << np.uint64(6)) + (h >> np.uint64(2)))
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    out: np.ndarray = z ^ (z >> np.uint64(31))
    return out


def address_hash(addr: np.ndarray) -> np.ndarray:
    """A cheap 64-bit hash of (N,16) uint8 addresses, for counting distinct ones."""
    w = np.ascontiguousarray(addr).view("<u8")
    h: np.ndarray = w[:, 0] * _GOLDEN ^ w[:, 1]
    return h


def pair_hash(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """64-bit hash of (src, dst) 16-byte address pairs, directional."""
    s_hi, s_lo = address_words(src)
    d_hi, d_lo = address_words(dst)
    h = np.zeros(len(src), dtype=np.uint64)
    for w in (s_hi, s_lo, d_hi, d_lo):
        h = mix64(h, w)
    return h


def endpoint_order(
    src: np.ndarray, dst: np.ndarray, sport: np.ndarray, dport: np.ndarray, proto: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per 5-tuple: the canonical (direction-free) flow-key hash and whether ``src`` is the 'low' endpoint.

    Takes the key columns of any record type (packets, flow rows, window keys), so
    both directions of a flow, and every record of it, hash alike.
    """
    s_hi, s_lo = address_words(src)
    d_hi, d_lo = address_words(dst)
    sp = sport.astype(np.uint64)
    dp = dport.astype(np.uint64)
    src_low = (s_hi < d_hi) | ((s_hi == d_hi) & ((s_lo < d_lo) | ((s_lo == d_lo) & (sp <= dp))))
    a_hi, a_lo, a_p = (np.where(src_low, x, y) for x, y in ((s_hi, d_hi), (s_lo, d_lo), (sp, dp)))
    b_hi, b_lo, b_p = (np.where(src_low, y, x) for x, y in ((s_hi, d_hi), (s_lo, d_lo), (sp, dp)))
    h = np.zeros(len(src), dtype=np.uint64)
    tail = (a_p << np.uint64(32)) | (b_p << np.uint64(16)) | proto.astype(np.uint64)
    for w in (a_hi, a_lo, b_hi, b_lo, tail):
        h = mix64(h, w)
    return h, src_low
