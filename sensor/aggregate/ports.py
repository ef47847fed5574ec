"""The (source port, destination port) aguri3 files each packet under, fragments included."""

from __future__ import annotations

import numpy as np

from ..capture.records import FRAG_FRAGMENT, FRAG_MF, FRAG_NONFIRST
from ..hashing import pair_hash


def aguri_ports(ip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
