"""Alert grouping: the anomalous windows of one second → one candidate per anomalous aggregate.

A flood of 10,000 spoofed sources is one event for the victim's operator, not 10,000;
a scan is one scanner.  So the windows any head fired on are grouped by what the
anomaly is about — the victim (floods, reflections: the destination), the scanner
(scans: the source), the host pair (any other anomaly) — and each group becomes one
alert candidate.  The group's heaviest member (most packets in the centre second)
names it in the alert (``src_ip``/``dest_ip``, ports, flow); the group adds its member
flow, packet and byte counts, the highest score of each head among its members, and
the prefixes its members span on either side (the longest common prefix of their
addresses: ``*`` for sources spread over the whole address space, the victim itself
on the other side).

``per="flow"`` keeps one candidate per window, as sensors without grouping do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

AGGREGATE, FLOW = "aggregate", "flow"
# What each kind of anomaly is grouped by: its destination, its source, or both.
_BY_DST, _BY_SRC, _BY_PAIR = 0, 1, 2
_GROUPED_BY = {"flood": _BY_DST, "reflection": _BY_DST, "scan": _BY_SRC}
_MAPPED_V4 = np.array([0] * 10 + [0xFF, 0xFF], np.uint8)
# Leading zero bits of each byte value.
_CLZ8 = np.array([8 - v.bit_length() for v in range(256)], dtype=np.int64)


@dataclass(frozen=True)
class Groups:
    """One row per alert candidate, in the order of their representatives."""

    rep: np.ndarray  # index of the representative among the grouped windows
    members: np.ndarray  # windows (flows) in the group
    pkts: np.ndarray  # their packets in the centre second
    bytes: np.ndarray
    scores: np.ndarray  # (G, heads): each head's highest score among the members
    fired: np.ndarray  # (G, heads): the heads that fired on some member
    src_prefix: np.ndarray  # (G, 16) masked address, IPv4-mapped for IPv4
    src_len: np.ndarray  # prefix length in bits of the address family (0..32 or 0..128)
    dst_prefix: np.ndarray
    dst_len: np.ndarray
    family: np.ndarray  # 4 or 6

    def __len__(self) -> int:
        return len(self.rep)


def group_windows(keys: np.ndarray, kinds: np.ndarray, scores: np.ndarray, fired: np.ndarray, per: str) -> Groups:
    """Group the anomalous windows of one second (``keys``: their ``KEY_DTYPE`` rows, ``kinds``:
    their anomaly kinds, ``scores``/``fired``: (N, heads)) into alert candidates."""
    n = len(keys)
    if per == FLOW:
        inv = np.arange(n)
    elif per == AGGREGATE:
        how = np.full(n, _BY_PAIR, dtype=np.uint8)
        for kind, by in _GROUPED_BY.items():
            how[kinds == kind] = by
        src = np.where((how == _BY_DST)[:, None], 0, keys["src"]).astype(np.uint8)
        dst = np.where((how == _BY_SRC)[:, None], 0, keys["dst"]).astype(np.uint8)
        # The kind is part of the key: a victim of a flood and of a reflection in the same second
        # gets one alert for each.
        kind_code = np.unique(kinds.astype(str), return_inverse=True)[1].astype(np.uint8).reshape(-1, 1)
        rows = np.ascontiguousarray(np.concatenate([kind_code, how[:, None], src, dst], axis=1))
        inv = np.unique(rows.view(f"V{rows.shape[1]}").ravel(), return_inverse=True)[1].ravel()
    else:
        raise ValueError(f"alerts are grouped per aggregate or per flow, not {per!r}")
    pkts = keys["pkts_fwd"].astype(np.int64) + keys["pkts_rev"]
    n_groups = int(inv.max()) + 1 if n else 0
    # Heaviest member first within each group, ties to the earlier window (keys are in flow_id order).
    order = np.lexsort((np.arange(n), -pkts, inv))
    starts = np.flatnonzero(np.r_[True, np.diff(inv[order]) != 0]) if n else np.zeros(0, np.int64)
    rep_of_group = order[starts]
    members = np.bincount(inv, minlength=n_groups)
    g_pkts = np.bincount(inv, weights=pkts, minlength=n_groups).astype(np.int64)
    nbytes = keys["bytes_fwd"].astype(np.float64) + keys["bytes_rev"]
    g_bytes = np.bincount(inv, weights=nbytes, minlength=n_groups).astype(np.int64)
    g_scores = np.full((n_groups, scores.shape[1]), -np.inf)
    np.maximum.at(g_scores, inv, scores)
    g_fired = np.zeros((n_groups, fired.shape[1]), dtype=bool)
    np.logical_or.at(g_fired, inv, fired)
    src_p, src_l = _common_prefix(keys["src"], inv, n_groups)
    dst_p, dst_l = _common_prefix(keys["dst"], inv, n_groups)
    v4 = (keys["src"][rep_of_group, :12] == _MAPPED_V4).all(axis=1)
    family = np.where(v4, 4, 6)
    # Alerts come out in the order of their representatives, as per-flow alerts did.
    by_rep = np.argsort(rep_of_group, kind="stable")
    return Groups(
        rep_of_group[by_rep],
        members[by_rep],
        g_pkts[by_rep],
        g_bytes[by_rep],
        g_scores[by_rep],
        g_fired[by_rep],
        src_p[by_rep],
        np.where(v4, src_l - 96, src_l)[by_rep],
        dst_p[by_rep],
        np.where(v4, dst_l - 96, dst_l)[by_rep],
        family[by_rep],
    )


def _common_prefix(addr: np.ndarray, inv: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group: the longest prefix all its (N, 16) addresses share, masked, and its length in bits."""
    if n_groups == 0:
        return np.zeros((0, 16), np.uint8), np.zeros(0, np.int64)
    # The prefix shared by a group's lowest and highest address is shared by all between.
    order = np.lexsort((*(addr[:, j] for j in range(15, -1, -1)), inv))
    first = np.flatnonzero(np.r_[True, np.diff(inv[order]) != 0])
    last = np.r_[first[1:], len(order)] - 1
    lo, hi = addr[order[first]], addr[order[last]]
    diff = lo ^ hi
    nonzero = diff != 0
    at = np.argmax(nonzero, axis=1)
    plen = np.where(nonzero.any(axis=1), at * 8 + _CLZ8[diff[np.arange(n_groups), at]], 128)
    mask = np.packbits(np.arange(128)[None, :] < plen[:, None], axis=1)
    return lo & mask, plen.astype(np.int64)
