"""Minute-scale memory of who starts flows to whom: the shapes a three-second window cannot see.

A slow scan sends one probe a second, a beacon or a brute force opens one connection to
the same host every few seconds, a DNS tunnel one query after another to its resolver.
Each second of them is ordinary; over a minute they are not.  ``HostHistory`` keeps, per
initiating host, exponentially decayed counts (time constant ``tau``) of the flows it
started, of the peers and of the services (destination port and protocol) it had not
reached within ``tau`` before, and, per host pair, the decayed count of flows started
and the mean and spread of the gaps between them (a machine's timer is regular, a
person's browsing is not).

The state is three tables of at most ``slots`` entries each (sources, pairs, services),
keyed by 64-bit hashes kept sorted, as the flow table's are: exact while they have room,
and a fixed number of vectorized operations per second.  Entries idle for five time
constants are dropped; a full table gives the least recently used entries' slots to new
keys, so under a flood of spoofed sources the memory degrades (old hosts look new), it
never grows.  The state lives in the feature path, per stream; a Spark task runs one
trace through the same code, so the trainer computes the same values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .flows import NS
from .hashing import address_hash, mix64

HISTORY_FEATURES = (
    "hist_src_flows",  # log1p of flows the initiator started, decayed over tau
    "hist_src_peers",  # ... to peers it had not reached within tau before
    "hist_src_services",  # ... to (port, protocol) services it had not reached within tau before
    "hist_pair_flows",  # log1p of flows this pair started, decayed over tau
    "hist_pair_gap",  # log1p of the mean seconds between them (0 until two)
    "hist_pair_regular",  # 1 / (1 + coefficient of variation of those gaps), 0 until three
)
TAU = 60.0  # seconds: the minute that separates a slow scan or a beacon from a burst
GAP_WEIGHT = 0.2  # of each new gap in the running mean and variance of a pair's gaps
# Per slot of the three tables: its index (key, slot, last use) 24 bytes, and columns: pair
# (last start, count, gap mean, gap variance, starts) 22, source (three counts) 12, service 0.
BYTES_PER_SLOT = 3 * 24 + 22 + 12
_REGULAR_AFTER = 3  # starts before a pair's gaps say anything about its regularity
EXPIRE_EVERY = 16  # seconds between sweeps for idle entries


FLOWS_PER_SLOT = 4  # the tables hold a quarter of the flow table's cap: hosts and pairs outnumber flows rarely
MIN_SLOTS = 1024


@dataclass(frozen=True)
class HistoryConfig:
    """``slots`` per table; ``tau`` the decay's time constant in seconds."""

    slots: int = 250_000
    tau: float = TAU

    @classmethod
    def for_flows(cls, max_flows: int) -> HistoryConfig:
        """The tables sized for a flow table of ``max_flows`` (the memory budget counts them per flow)."""
        return cls(slots=max(MIN_SLOTS, max_flows // FLOWS_PER_SLOT))


def _keys(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(source key, mixed source key for pairs and services) of (N,16) addresses and the pair key.

    ``address_hash`` of an IPv4 address is its raw bits, so it is mixed once before another
    column is folded in: two rounds, not ``pair_hash``'s four, as this runs over every flow
    row of every second.
    """
    src_h = address_hash(src)
    mixed = mix64(np.zeros_like(src_h), src_h)
    return src_h, mixed, mix64(mixed, address_hash(dst))


class _Index:
    """Sorted 64-bit keys → slots of fixed-size columns; when full, the least recently used go."""

    def __init__(self, cap: int):
        self.cap = cap
        self.keys = np.zeros(0, dtype=np.uint64)  # sorted
        self.slot_of = np.zeros(0, dtype=np.int64)
        self.used = np.zeros(cap, dtype=np.int64)  # s, last use of each slot
        self._free = np.arange(cap - 1, -1, -1, dtype=np.int64)  # a stack: the lowest slot first

    def find(self, h: np.ndarray) -> np.ndarray:
        """The slot of each key, -1 for keys not held."""
        pos = np.searchsorted(self.keys, h)
        pos_ok = np.minimum(pos, max(len(self.keys) - 1, 0))
        hit = (pos < len(self.keys)) & (self.keys[pos_ok] == h) if len(self.keys) else np.zeros(len(h), dtype=bool)
        return np.where(hit, self.slot_of[pos_ok] if len(self.keys) else -1, -1)

    def expire(self, before: int) -> None:
        """Drop the entries last used before second ``before``."""
        old = self.used[self.slot_of] < before
        if old.any():
            self._drop(np.flatnonzero(old))

    def _drop(self, pos: np.ndarray) -> None:
        self._free = np.concatenate([self._free, self.slot_of[pos][::-1]])
        keep = np.ones(len(self.keys), dtype=bool)
        keep[pos] = False
        self.keys, self.slot_of = self.keys[keep], self.slot_of[keep]

    def add(self, h: np.ndarray, now: int) -> np.ndarray:
        """Slots for distinct keys not held (sorted), making room by least recent use among the
        entries not used in second ``now``; keys beyond that room get none (-1)."""
        short = len(h) - len(self._free)
        if short > 0:
            # An eighth of the table at once: a full table under a stream of new hosts would
            # otherwise rank all its entries every second (a third of the feature path's time
            # on the overlaid MAWI copies of bench/throughput.py).
            idle = np.flatnonzero(self.used[self.slot_of] < now)
            k = min(max(short, self.cap // 8), len(idle))
            if k:
                self._drop(idle[np.argpartition(self.used[self.slot_of[idle]], k - 1)[:k]])
        out = np.full(len(h), -1, dtype=np.int64)
        n = min(len(h), len(self._free))
        slots = self._free[len(self._free) - n :][::-1].copy()
        self._free = self._free[: len(self._free) - n]
        self.used[slots] = now
        out[:n] = slots
        ins = np.searchsorted(self.keys, h[:n])
        self.keys = np.insert(self.keys, ins, h[:n])
        self.slot_of = np.insert(self.slot_of, ins, slots)
        return out


class HostHistory:
    """Decayed per-host and per-pair counts of flow starts over the last minutes."""

    def __init__(self, config: HistoryConfig = HistoryConfig()):
        self.config = config
        n = config.slots
        self._pairs, self._srcs, self._svcs = _Index(n), _Index(n), _Index(n)
        self._pair_last = np.zeros(n, dtype=np.int64)  # ns, the latest start
        self._pair_n = np.zeros(n, dtype=np.float32)
        self._pair_gap = np.zeros(n, dtype=np.float32)
        self._pair_var = np.zeros(n, dtype=np.float32)
        self._pair_starts = np.zeros(n, dtype=np.uint16)
        self._src_counts = np.zeros((n, 3), dtype=np.float32)  # flows, new peers, new services

    def _decay(self, dt: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.exp(-np.maximum(dt, 0) / self.config.tau)
        return out

    @staticmethod
    def _claim(index: _Index, keys: np.ndarray, sec: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Slots of distinct sorted ``keys`` (-1: no room), which were held before, and when
        those were last used; new keys are added, and every slot is marked used now."""
        slot = index.find(keys)
        held = slot >= 0
        last = np.where(held, index.used[np.maximum(slot, 0)], 0)
        index.used[slot[held]] = sec  # in use this second: not to be given away below
        if not held.all():
            slot[~held] = index.add(keys[~held], sec)
        return slot, held, last

    def update(self, fs: np.ndarray, sec: int) -> np.ndarray:
        """Account second ``sec``'s flow rows; return ``HISTORY_FEATURES`` (N, 6) float64 per row."""
        if sec % EXPIRE_EVERY == 0:  # entries live five time constants: a coarse sweep is enough
            for index in (self._pairs, self._srcs, self._svcs):
                index.expire(sec - int(5 * self.config.tau))
        new = fs[fs["new"] != 0]
        if len(new):
            self._account(new, sec)
        return self._read(fs, sec)

    def _account(self, new: np.ndarray, sec: int) -> None:
        tau_ns = int(self.config.tau * NS)
        src_h, mixed, pair_h = _keys(new["src"], new["dst"])
        svc_h = mix64(mixed, (new["dport"].astype(np.uint64) << np.uint64(8)) | new["proto"].astype(np.uint64))
        start = new["start_ts"]

        # Pairs: one update per distinct pair, from its first start this second.
        order = np.lexsort((start, pair_h))
        uniq, first, counts = np.unique(pair_h[order], return_index=True, return_counts=True)
        first_ts = start[order][first]
        last_ts = start[order][np.r_[first[1:], len(order)] - 1]
        slot, known, _ = self._claim(self._pairs, uniq, sec)
        ok = slot >= 0
        slot, known = np.where(ok, slot, 0), known & ok
        before = np.where(known, self._pair_last[slot], 0)
        new_peer = ~known | (first_ts - before > tau_ns)
        gap = np.where(known, (first_ts - before) / NS, 0.0)
        starts = np.where(known, self._pair_starts[slot], 0).astype(np.int64)
        mean = np.where(known, self._pair_gap[slot], 0.0)
        var = np.where(known, self._pair_var[slot], 0.0)
        # Counts decay in whole seconds, the feature path's clock (gaps keep the starts' ns).
        n_old = np.where(known, self._pair_n[slot] * self._decay(sec - before // NS), 0.0)
        first_gap = known & (starts == 1)
        later = known & (starts >= 2)
        d = gap - mean
        mean = np.where(first_gap, gap, np.where(later, mean + GAP_WEIGHT * d, mean))
        var = np.where(later, (1 - GAP_WEIGHT) * (var + GAP_WEIGHT * d * d), var)
        s = slot[ok]
        self._pair_last[s] = last_ts[ok]
        self._pair_n[s] = (n_old + counts)[ok]
        self._pair_gap[s] = mean[ok]
        self._pair_var[s] = var[ok]
        self._pair_starts[s] = np.minimum(starts + counts, np.iinfo(np.uint16).max)[ok]

        # Services: a (source, port, protocol) not seen within tau is a new one.
        s_uniq, s_first = np.unique(svc_h, return_index=True)
        _, s_known, seen = self._claim(self._svcs, s_uniq, sec)
        new_svc = ~(s_known & (sec - seen <= self.config.tau))

        # Sources: their flows, new peers and new services this second, added to the decayed counts.
        add = np.zeros((len(new), 3))
        add[:, 0] = 1
        add[order[first], 1] = new_peer
        add[s_first, 2] = new_svc
        h_uniq, h_inv = np.unique(src_h, return_inverse=True)
        h_inv = h_inv.reshape(-1)
        sums = np.stack([np.bincount(h_inv, weights=add[:, k], minlength=len(h_uniq)) for k in range(3)], axis=1)
        h_slot, h_known, h_last = self._claim(self._srcs, h_uniq, sec)
        ok = h_slot >= 0
        h_slot, h_known = h_slot[ok], h_known[ok]
        decay = self._decay(sec - h_last[ok])[:, None]
        old = np.where(h_known[:, None], self._src_counts[h_slot] * decay, 0.0)
        self._src_counts[h_slot] = old + sums[ok]

    def _read(self, fs: np.ndarray, sec: int) -> np.ndarray:
        n = len(fs)
        out = np.zeros((n, len(HISTORY_FEATURES)))
        if n == 0:
            return out
        src_h, _, pair_h = _keys(fs["src"], fs["dst"])
        slot = self._srcs.find(src_h)
        known = slot >= 0
        slot = np.maximum(slot, 0)
        counts = self._src_counts[slot] * self._decay(sec - self._srcs.used[slot])[:, None]
        out[:, 0:3] = np.where(known[:, None], np.log1p(counts), 0.0)
        slot = self._pairs.find(pair_h)
        known = slot >= 0
        slot = np.maximum(slot, 0)
        starts = self._pair_starts[slot].astype(np.int64)
        mean = self._pair_gap[slot].astype(np.float64)
        cv = np.sqrt(self._pair_var[slot].astype(np.float64)) / np.maximum(mean, 1e-3)
        age = sec - self._pair_last[slot] // NS
        out[:, 3] = np.where(known, np.log1p(self._pair_n[slot] * self._decay(age)), 0.0)
        out[:, 4] = np.where(known & (starts >= 2), np.log1p(mean), 0.0)
        out[:, 5] = np.where(known & (starts >= _REGULAR_AFTER), 1.0 / (1.0 + cv), 0.0)
        return out
