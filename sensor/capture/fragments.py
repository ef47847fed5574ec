"""Which packet carries the transport header of each non-first fragment.

A non-first IP fragment has no transport header, so by its own columns it reads port 0 and
would make a flow of its own: one-way, port-less, short packets, like nothing an ordinary
stack sends.  Reassemblers (Suricata's defrag, Zeek's) give it its datagram's header; so do
we, pairing fragments as they do by (source, destination, protocol, identification), in any
arrival order (Linux, for one, has sent a datagram's last fragment first).

Pairing is within one batch (the sensor's second): a datagram split across a second's
boundary leaves its later fragments port-less, as a reassembler's timeout would.  aguri3
pairs fragments its own way, without the identification (``aggregate.ports``).
"""

from __future__ import annotations

import numpy as np

from ..hashing import mix64, pair_hash
from .records import FRAG_FRAGMENT, FRAG_NONFIRST


def first_fragments(packets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows of non-first fragments and, for each, the row of its datagram's first fragment.

    ``packets`` are time-sorted ``PACKET_DTYPE`` records.  Of several first fragments of one datagram (an
    identification reused, a retransmission) a fragment takes the latest before it, else the
    earliest after it; a fragment whose first fragment the batch lacks is left out.
    """
    frag = packets["frag"]
    isfrag = (frag & FRAG_FRAGMENT) != 0
    nonfirst = isfrag & ((frag & FRAG_NONFIRST) != 0)
    if not nonfirst.any():
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    rows = np.flatnonzero(isfrag)
    pairs = pair_hash(packets["src"][rows], packets["dst"][rows]) ^ packets["proto"][rows].astype(np.uint64)
    key = mix64(pairs, packets["frag_id"][rows].astype(np.uint64))
    order = np.lexsort((rows, key))  # by datagram, then arrival
    k, first = key[order], ~nonfirst[rows][order]
    n = len(order)
    pos = np.arange(n)
    starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    group = np.cumsum(np.r_[True, k[1:] != k[:-1]]) - 1
    start, end = starts[group], np.r_[starts[1:], n][group]
    before = np.maximum.accumulate(np.where(first, pos, -1))
    after = np.minimum.accumulate(np.where(first, pos, n)[::-1])[::-1]
    source = np.where(before >= start, before, np.where(after < end, after, -1))
    ok = ~first & (source >= 0)
    return rows[order[ok]], rows[order[source[ok]]]
